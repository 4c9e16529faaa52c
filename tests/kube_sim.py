"""A simulated Kubernetes cluster FOR TESTS: a stateful API server, a Deployment controller, a
scheduler and a "kubelet" that runs each pod's container as a real local process.

This is a simulator, not a Kubernetes. It exists so that liveml's Kubernetes mode (the official
``kubernetes`` client driven by ``liveml_ext.backends.kubernetes.KubernetesCluster``) can be tested
end to end on a machine without a cluster or Docker: real HTTP between the client and an API
server, real replica processes (``python -m liveml_runtime serve``) behind real probes, real logs,
real signals.

``KubeSim`` serves the Kubernetes REST API (JSON, camelCase) on 127.0.0.1, on a free port, one
thread per connection. Point the client at it with ``kubernetes.client.Configuration(host=sim.url)``
(or ``sim.api_client()``). One background thread runs the controllers every ``tick`` seconds; each
scheduled pod gets a kubelet thread. One lock guards all state. Use it as a context manager or call
``start()`` / ``stop()``; ``stop()`` kills every process group it started.

Modelled faithfully (what a client of the API can observe):

- Objects: Deployments, Services, Secrets, PodDisruptionBudgets, HorizontalPodAutoscalers (get,
  list, create, delete, server-side apply, merge and JSON patches), Pods (get, list, delete, log),
  Events (list), the one Node (list, get), ``metrics.k8s.io`` pod and node metrics. Metadata has
  uid, an increasing resourceVersion, creationTimestamp, generation (bumped when the spec changes)
  and managedFields. Unknown paths answer a 404 ``Status``; errors are ``Status`` objects.
- Server-side apply: per field manager, the applied fields are remembered; an apply replaces what
  that manager owned (fields it drops go, unless another manager also owns them), conflicts with
  another manager's different value are a 409 unless ``force=true``, which takes the field over.
  So ``spec.replicas`` behaves as on a cluster: dropped from an apply it falls back to the default
  of 1 unless another manager (the HPA, or a hand-over manager) owns it.
- Deployments: pods named ``<deployment>-<10 char template hash>-<5 chars>``, labelled with
  ``pod-template-hash``; scaling and RollingUpdate (the controller's own arithmetic for
  ``maxSurge`` / ``maxUnavailable``, percentages included) or Recreate; status counts (zero counts
  omitted, as the API does), ``observedGeneration``, the ``Available`` and ``Progressing``
  conditions with ``ProgressDeadlineExceeded`` after ``progressDeadlineSeconds x time_scale``
  without progress; ``ScalingReplicaSet`` events; deleting a Deployment terminates its pods.
- HPA: keeps the target Deployment's replicas within [minReplicas, maxReplicas] by an Update of
  the ``scale`` subresource (which takes ``spec.replicas`` over from any other manager).
- Scheduling: cpu, memory, pods, GPUs (``gpu_resource``) and ``nodeSelector`` against the one node;
  a pod that does not fit stays Pending with ``PodScheduled`` False / ``Unschedulable`` and
  repeated ``FailedScheduling`` warnings (the count grows).
- Kubelet: a unique loopback pod IP (127.1.x.y; Linux routes all of 127/8 to ``lo``; wildcard
  bind addresses in the arguments are replaced by it), ``$(VAR)`` expansion, env from values,
  ``fieldRef``, ``resourceFieldRef`` and Secrets (a missing one -> ``CreateContainerConfigError``),
  startup / readiness / liveness probes (httpGet, tcpSocket, exec), restarts with back-off and
  ``CrashLoopBackOff``, ``lastState.terminated`` with the ``FallbackToLogsOnError`` message, the
  memory limit (process-tree RSS over the limit -> SIGKILL, ``OOMKilled``, exit 137), logs per
  container instance (``previous``, ``timestamps``, ``sinceSeconds``, ``sinceTime``, ``tailLines``,
  ``limitBytes``), graceful termination (``deletionTimestamp``, preStop hook, SIGTERM, the grace
  period, SIGKILL of the process group), image pull failures for ``bad_images``.

Not modelled (do not rely on it):

- One node, no real scheduler (no affinity, taints, spreading or preemption), no networking:
  no Service proxying, cluster IPs are labels only, no network policies, no DNS. Pods share the
  host's file system and Python: the image is a name (``python`` runs ``sys.executable``), the
  working directory is a fresh temporary directory, no volumes, no user switching, no CPU limit.
- Server-side apply is simplified: lists are atomic (no merge keys), no schema validation beyond
  a few rules, no dry run, no ``PUT``, no watches (``watch=true`` is refused with 400), label
  selectors are equality based only, namespaces are implicit. A followed log (``follow=true``)
  streams until the container has exited, as the kubelet's does.
- Exactly one container per pod (no init or sidecar containers: such a Deployment is refused).
- Time: probe periods are ``min(periodSeconds, probe_period)``; back-off is ``backoff_base *
  2**(n-1)`` capped at ``backoff_cap``; preStop hooks are cut after ``prestop_cap`` seconds.
"""
from __future__ import annotations

import base64
import collections
import copy
import datetime as dt
import hashlib
import http.client
import json
import math
import os
import platform
import random
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from types import TracebackType
from typing import Any
from urllib.parse import unquote

import kubernetes.client
import psutil
import yaml
from json_http import JsonHttpServer

from liveml_ext.backends.k8s_manifests import parse_quantity

NODE_NAME = "sim-node"
KUBE_VERSION = "v1.31.0-sim"
APPLY_PATCH = "application/apply-patch+yaml"
MERGE_PATCHES = ("application/merge-patch+json", "application/strategic-merge-patch+json")
JSON_PATCH = "application/json-patch+json"
CONTROLLER_MANAGER = "kube-controller-manager"
SAFE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # what Kubernetes draws generated name parts from
LOG_LINES = 50_000  # kept per container instance
TERMINATION_LOG_LINES, TERMINATION_LOG_BYTES = 80, 2048  # the kubelet's FallbackToLogsOnError limits
EVENT_LIMIT = 5000
SCHEDULER_RETRY = 2.0  # seconds between FailedScheduling repeats
MEMORY_CHECK = 0.5  # seconds between memory-limit checks
MAX_PODS = 110
IP_SPACE = 256 * 254  # 127.1.0.1 .. 127.1.255.254

# (URL prefix, resource) -> (kind, apiVersion) of the generic namespaced objects
RESOURCES: dict[tuple[str, str], tuple[str, str]] = {
    ("api/v1", "services"): ("Service", "v1"),
    ("api/v1", "secrets"): ("Secret", "v1"),
    ("apis/apps/v1", "deployments"): ("Deployment", "apps/v1"),
    ("apis/policy/v1", "poddisruptionbudgets"): ("PodDisruptionBudget", "policy/v1"),
    ("apis/autoscaling/v2", "horizontalpodautoscalers"): ("HorizontalPodAutoscaler", "autoscaling/v2"),
}
PLURALS = {kind: (prefix, resource) for (prefix, resource), (kind, _) in RESOURCES.items()}
NAMESPACED = re.compile(r"/(api/v1|apis/[^/]+/[^/]+)/namespaces/([^/]+)/([^/]+)(?:/([^/]+)(?:/([^/]+))?)?")

Path = tuple[str, ...]


# ------------------------------------------------------------------------------------ helpers


class ApiError(Exception):
    """An API failure, answered as a Kubernetes ``Status``."""

    def __init__(self, code: int, reason: str, message: str, details: Mapping[str, Any] | None = None):
        super().__init__(message)
        self.code, self.reason, self.message, self.details = code, reason, message, dict(details or {})

    def status(self) -> dict[str, Any]:
        return status(self.code, self.reason, self.message, self.details)


def status(code: int, reason: str, message: str, details: Mapping[str, Any] | None = None) -> dict[str, Any]:
    doc: dict[str, Any] = {"kind": "Status", "apiVersion": "v1", "metadata": {},
                           "status": "Success" if code < 400 else "Failure", "message": message,
                           "reason": reason, "code": code}
    if details:
        doc["details"] = dict(details)
    return doc


def rfc3339(at: float | None = None) -> str:
    """Seconds precision, UTC, as object timestamps are."""
    return dt.datetime.fromtimestamp(time.time() if at is None else at, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def rfc3339_nano(at_ns: int) -> str:
    """The kubelet's log timestamp: nanoseconds, fixed width, UTC."""
    seconds, nanos = divmod(at_ns, 10**9)
    return dt.datetime.fromtimestamp(seconds, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{nanos:09d}Z"


def parse_time(text: str) -> float:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _truthy(value: str | None) -> bool:
    return (value or "").lower() in ("true", "1")


def _cpu_text(cores: float) -> str:
    return str(int(cores)) if float(cores).is_integer() else f"{round(cores * 1000)}m"


def _group_of(api_version: str) -> str:
    return api_version.split("/")[0] if "/" in api_version else ""


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes' ``$(VAR)`` expansion of commands, arguments and env values: known variables
    are replaced, unknown references stay as written, ``$$`` is a literal ``$``."""
    out: list[str] = []
    i = 0
    while i < len(text):
        if text[i] == "$" and i + 1 < len(text):
            if text[i + 1] == "$":
                out.append("$")
                i += 2
                continue
            if text[i + 1] == "(":
                end = text.find(")", i + 2)
                if end != -1:
                    name = text[i + 2:end]
                    out.append(env[name] if name in env else text[i:end + 1])
                    i = end + 1
                    continue
        out.append(text[i])
        i += 1
    return "".join(out)


def template_hash(template: Mapping[str, Any]) -> str:
    """A short, stable hash of a pod template, in Kubernetes' safe alphabet (10 characters)."""
    digest = hashlib.sha256(json.dumps(template, sort_keys=True, separators=(",", ":")).encode()).digest()
    return "".join(SAFE_ALPHABET[b % len(SAFE_ALPHABET)] for b in digest[:10])


def _suffix(n: int = 5) -> str:
    return "".join(random.choice(SAFE_ALPHABET) for _ in range(n))


def _int_or_percent(value: Any, total: int, round_up: bool) -> int:
    if isinstance(value, str) and value.endswith("%"):
        part = float(value[:-1]) / 100 * total
        return math.ceil(part) if round_up else math.floor(part)
    return int(value)


def rolling_bounds(strategy: Mapping[str, Any], desired: int) -> tuple[int, int]:
    """``(maxSurge, maxUnavailable)`` as the Deployment controller resolves them."""
    rolling = strategy.get("rollingUpdate") or {}
    surge = _int_or_percent(rolling.get("maxSurge", "25%"), desired, True)
    unavailable = _int_or_percent(rolling.get("maxUnavailable", "25%"), desired, False)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, unavailable


# label and field selectors (equality based)


def parse_selector(text: str | None) -> list[tuple[str, str, str]]:
    """``a=b,c==d,e!=f,g,!h`` -> ``[(key, op, value)]``; set-based selectors are refused."""
    terms: list[tuple[str, str, str]] = []
    if not text:
        return terms
    if "(" in text:
        raise ApiError(400, "BadRequest", f"unsupported selector {text!r}: the simulator takes "
                       "equality-based selectors only")
    for term in (t.strip() for t in text.split(",")):
        if not term:
            continue
        for op in ("!=", "==", "="):
            if op in term:
                key, value = term.split(op, 1)
                terms.append((key.strip(), "!=" if op == "!=" else "=", value.strip()))
                break
        else:
            terms.append((term[1:].strip(), "!", "") if term.startswith("!") else (term, "exists", ""))
    return terms


def _selects(terms: list[tuple[str, str, str]], lookup: Callable[[str], str | None]) -> bool:
    for key, op, value in terms:
        found = lookup(key)
        if op == "=" and found != value:
            return False
        if op == "!=" and found == value:
            return False
        if op == "exists" and found is None:
            return False
        if op == "!" and found is not None:
            return False
    return True


def labels_match(terms: list[tuple[str, str, str]], labels: Mapping[str, str] | None) -> bool:
    labels = labels or {}
    return _selects(terms, labels.get)


def fields_match(terms: list[tuple[str, str, str]], obj: Mapping[str, Any]) -> bool:
    def lookup(path: str) -> str | None:
        node: Any = obj
        for part in path.split("."):
            node = node.get(part) if isinstance(node, Mapping) else None
        return None if node is None else str(node)
    return _selects([(k, op if op in ("=", "!=") else "=", v) for k, op, v in terms], lookup)


# server-side apply bookkeeping: a manager's fields are the leaves of what it applied (lists are atomic)


def leaves(obj: Any, prefix: Path = ()) -> dict[Path, Any]:
    if isinstance(obj, Mapping) and obj:
        out: dict[Path, Any] = {}
        for key, value in obj.items():
            out.update(leaves(value, (*prefix, str(key))))
        return out
    return {prefix: obj}


def conflicting(mine: Mapping[Path, Any], theirs: Mapping[Path, Any]) -> list[Path]:
    """Paths of ``theirs`` that ``mine`` sets to something else (or overlaps with another shape)."""
    inner = {p[:i] for p in mine for i in range(1, len(p))}
    out = []
    for path, value in theirs.items():
        if path in mine:
            if mine[path] != value:
                out.append(path)
        elif path in inner or any(path[:i] in mine for i in range(1, len(path))):
            out.append(path)
    return out


def drop_path(obj: dict[str, Any], path: Path) -> None:
    """Remove ``path`` from nested dicts, pruning the dicts it leaves empty."""
    trail: list[tuple[dict[str, Any], str]] = []
    node = obj
    for key in path[:-1]:
        child = node.get(key)
        if not isinstance(child, dict):
            return
        trail.append((node, key))
        node = child
    node.pop(path[-1], None)
    for parent, key in reversed(trail):
        if parent[key]:
            break
        del parent[key]


def merge_into(dst: dict[str, Any], src: Mapping[str, Any]) -> dict[str, Any]:
    for key, value in src.items():
        if isinstance(value, Mapping) and isinstance(dst.get(key), dict):
            merge_into(dst[key], value)
        else:
            dst[key] = copy.deepcopy(value)
    return dst


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 (strategic merge patches are applied the same way: lists are replaced)."""
    if not isinstance(patch, Mapping):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def json_patch(doc: Any, operations: list[Mapping[str, Any]]) -> Any:
    """RFC 6902 ``add``, ``remove``, ``replace`` and ``test``."""
    doc = copy.deepcopy(doc)
    for op in operations:
        parts = [p.replace("~1", "/").replace("~0", "~") for p in str(op.get("path", "")).split("/")[1:]]
        if not parts:
            raise ApiError(422, "Invalid", "the simulator does not patch the whole document")
        parent: Any = doc
        for part in parts[:-1]:
            parent = parent[int(part)] if isinstance(parent, list) else parent.setdefault(part, {})
        last, kind = parts[-1], op.get("op")
        try:
            if kind == "test":
                current = parent[int(last)] if isinstance(parent, list) else parent[last]
                if current != op.get("value"):
                    raise ApiError(422, "Invalid", f"test operation failed at {op.get('path')}")
            elif kind == "remove":
                del parent[int(last) if isinstance(parent, list) else last]
            elif kind in ("add", "replace"):
                if isinstance(parent, list):
                    index = len(parent) if last == "-" else int(last)
                    if kind == "add":
                        parent.insert(index, copy.deepcopy(op.get("value")))
                    else:
                        parent[index] = copy.deepcopy(op.get("value"))
                else:
                    parent[last] = copy.deepcopy(op.get("value"))
            else:
                raise ApiError(422, "Invalid", f"the simulator does not support the JSON patch op {kind!r}")
        except (KeyError, IndexError, ValueError) as exc:
            raise ApiError(422, "Invalid", f"JSON patch {op!r} failed: {exc!r}") from exc
    return doc


def fields_v1(body: Mapping[str, Any]) -> dict[str, Any]:
    return {f"f:{key}": fields_v1(value) if isinstance(value, Mapping) and value else {}
            for key, value in body.items()}


def ownable(body: Mapping[str, Any]) -> dict[str, Any]:
    """What an apply or update sets: everything but identity and status (labels and annotations
    from metadata)."""
    out = {k: copy.deepcopy(v) for k, v in body.items()
           if k not in ("apiVersion", "kind", "metadata", "status")}
    meta = body.get("metadata") or {}
    kept = {k: copy.deepcopy(meta[k]) for k in ("labels", "annotations") if meta.get(k)}
    if kept:
        out["metadata"] = kept
    return out


# processes


def _killpg(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _tree(pid: int) -> list[psutil.Process]:
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def tree_usage(pid: int) -> tuple[float, int]:
    """(CPU seconds, RSS bytes) of a process and its descendants."""
    cpu, rss = 0.0, 0
    for proc in _tree(pid):
        try:
            times, memory = proc.cpu_times(), proc.memory_info()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        cpu += times.user + times.system
        rss += memory.rss
    return cpu, rss


def _busy_seconds() -> float:
    times = psutil.cpu_times()
    idle = times.idle + getattr(times, "iowait", 0.0)
    return sum(times) - idle


def _local_command(argv: list[str]) -> list[str]:
    """The container's ``python`` is this interpreter."""
    if argv and argv[0] in ("python", "python3"):
        return [sys.executable, *argv[1:]]
    return argv


def _bind_here(argv: list[str], ip: str) -> list[str]:
    """Wildcard bind addresses in the arguments become the pod IP (pods share the host's ports)."""
    out = []
    for arg in argv:
        for wildcard in ("0.0.0.0", "::"):
            if arg == wildcard:
                arg = ip
            elif arg.endswith("=" + wildcard):
                arg = arg[:-len(wildcard)] + ip
        out.append(arg)
    return out


def _port_free(ip: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((ip, port))
        except OSError:
            return False
    return True


def _dial_error(host: str, port: int, exc: BaseException) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return f"dial tcp {host}:{port}: connect: connection refused"
    if isinstance(exc, socket.timeout | TimeoutError):
        return "context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
    return f"{type(exc).__name__}: {exc}"


# ------------------------------------------------------------------------------------- state


@dataclass
class _Managed:
    operation: str  # "Apply" or "Update"
    body: dict[str, Any]
    time: str
    api_version: str
    subresource: str = ""


@dataclass
class _Object:
    obj: dict[str, Any]
    managers: dict[str, _Managed]


@dataclass(eq=False)
class _Instance:
    """One run of a container."""

    number: int
    container_id: str
    proc: subprocess.Popen[bytes] | None = None
    env: dict[str, str] = field(default_factory=dict)
    values: dict[str, str] = field(default_factory=dict)  # the container's own variables
    lines: collections.deque[tuple[int, str]] = field(
        default_factory=lambda: collections.deque(maxlen=LOG_LINES))
    reader: threading.Thread | None = None
    started_at: str = ""
    started_mono: float = 0.0
    finished_at: str = ""
    exit_code: int | None = None
    reason: str = ""
    message: str = ""
    oom: bool = False

    def terminated(self) -> dict[str, Any]:
        out: dict[str, Any] = {"exitCode": self.exit_code, "reason": self.reason,
                               "startedAt": self.started_at, "finishedAt": self.finished_at,
                               "containerID": self.container_id}
        if self.message:
            out["message"] = self.message
        return out


@dataclass(eq=False)
class _Pod:
    namespace: str
    name: str
    obj: dict[str, Any]
    owner_uid: str
    template_hash: str
    requests: dict[str, Fraction]
    created: float = field(default_factory=time.monotonic)
    stop_event: threading.Event = field(default_factory=threading.Event)
    terminating: bool = False
    grace: float = 30.0
    scheduled: bool = False
    unschedulable: str = ""
    sched_event_at: float = 0.0
    ip: str = ""
    gpus: tuple[int, ...] = ()
    workdir: str = ""
    worker: threading.Thread | None = None
    instances: list[_Instance] = field(default_factory=list)
    current: _Instance | None = None  # the running instance
    last: _Instance | None = None  # the last one that ended
    ended: bool = False  # the container stopped for good (pod deletion)
    restarts: int = 0
    waiting: tuple[str, str] | None = ("ContainerCreating", "")
    started: bool = False
    ready: bool = False
    conditions: dict[str, tuple[str, str]] = field(default_factory=dict)
    start_time: str = ""
    cpu_sample: tuple[float, float] | None = None
    prestop: subprocess.Popen[bytes] | None = None

    @property
    def available(self) -> bool:
        return self.ready and not self.terminating

    @property
    def container(self) -> dict[str, Any]:
        return self.obj["spec"]["containers"][0]


@dataclass
class _Rollout:
    """The Deployment controller's memory of one Deployment."""

    hashes: dict[str, float] = field(default_factory=dict)  # template hash -> first seen
    sizes: dict[str, int] = field(default_factory=dict)  # template hash -> its ReplicaSet's replicas
    counts: tuple[Any, ...] | None = None
    progressed_at: float = field(default_factory=time.monotonic)
    progressing: dict[str, Any] | None = None
    available: dict[str, Any] | None = None


def _pod_requests(spec: Mapping[str, Any]) -> dict[str, Fraction]:
    """Summed container requests (a limit without a request counts as the request, as defaulted)."""
    total: dict[str, Fraction] = {}
    for container in spec.get("containers") or []:
        resources = container.get("resources") or {}
        amounts = {**(resources.get("limits") or {}), **(resources.get("requests") or {})}
        for name, value in amounts.items():
            total[name] = total.get(name, Fraction(0)) + parse_quantity(value)
    return total


# --------------------------------------------------------------------------------- simulator


class KubeSim:
    """A one-node Kubernetes for tests; see the module docstring for what it does and does not do.

    Options: ``gpus`` on the node (``gpu_resource``), ``bad_images`` whose pulls fail,
    ``probe_period`` (upper bound of every probe period, s), ``backoff_base`` / ``backoff_cap``
    (container restart back-off, s), ``prestop_cap`` (preStop hooks are cut after this, s),
    ``time_scale`` (multiplies ``progressDeadlineSeconds``), ``cpu`` (cores) and ``memory``
    (bytes) the node offers (default: this machine's), ``node_labels`` (added to the node's),
    ``tick`` (controller period, s).

    Public: ``url``, ``api_client()`` (an ApiClient of the official library pointed at ``url``),
    ``start()`` / ``stop()`` (or ``with KubeSim() as sim:``), ``processes()`` (pod name -> PID of
    its running container) and the option attributes (``bad_images`` may be changed while running).
    """

    def __init__(self, *, gpus: int = 0, bad_images: Iterable[str] = (), probe_period: float = 0.2,
                 backoff_base: float = 0.5, backoff_cap: float = 5.0, prestop_cap: float = 0.5,
                 time_scale: float = 1.0, cpu: float | None = None, memory: int | None = None,
                 gpu_resource: str = "nvidia.com/gpu", node_labels: Mapping[str, str] | None = None,
                 tick: float = 0.1) -> None:
        self.gpus = int(gpus)
        self.bad_images: set[str] = set(bad_images)
        self.probe_period = float(probe_period)
        self.backoff_base, self.backoff_cap = float(backoff_base), float(backoff_cap)
        self.prestop_cap = float(prestop_cap)
        self.time_scale = float(time_scale)
        self.cpu = float(cpu if cpu is not None else os.cpu_count() or 1)
        self.memory = int(memory if memory is not None else psutil.virtual_memory().total)
        self.gpu_resource = gpu_resource
        self.tick = float(tick)
        arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
        self.node_labels = {"kubernetes.io/hostname": NODE_NAME, "kubernetes.io/os": "linux",
                            "kubernetes.io/arch": arch, "beta.kubernetes.io/arch": arch,
                            **(node_labels or {})}
        self._arch = arch
        self._lock = threading.RLock()
        self._objects: dict[tuple[str, str, str], _Object] = {}  # (kind, namespace, name)
        self._pods: dict[tuple[str, str], _Pod] = {}
        self._events: dict[tuple[Any, ...], dict[str, Any]] = {}
        self._namespaces: dict[str, str] = {}  # name -> creationTimestamp
        self._rollouts: dict[str, _Rollout] = {}  # Deployment uid -> memory
        self._rv = 0
        self._ip_next = random.randrange(IP_SPACE)
        self._service_ips = 0
        self._stopping = False
        self._started = False
        self._halt = threading.Event()
        self._created = rfc3339()
        self._node_uid = str(uuid.uuid4())
        self._node_sample = (time.monotonic(), _busy_seconds())
        for name in ("default", "kube-system"):
            self._namespaces[name] = self._created

        self.http = JsonHttpServer(self._answer, name="kubesim-api", closing=lambda: self._stopping)
        self._controller = threading.Thread(target=self._control_loop, name="kubesim-controllers",
                                            daemon=True)

    # ------------------------------------------------------------------------------- public

    @property
    def url(self) -> str:
        return self.http.url

    def api_client(self) -> kubernetes.client.ApiClient:
        """A client of the official library pointed at this API server."""
        return kubernetes.client.ApiClient(kubernetes.client.Configuration(host=self.url))

    def start(self) -> KubeSim:
        if not self._started:
            self._started = True
            self.http.start()
            self._controller.start()
        return self

    def __enter__(self) -> KubeSim:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def stop(self) -> None:
        """Kill every process group the simulator started, stop its threads and the API server."""
        with self._lock:
            if self._stopping:
                return
            self._stopping = True
            pods = list(self._pods.values())
            for pod in pods:
                pod.stop_event.set()
        self._halt.set()
        for pod in pods:
            self._kill_all(pod)
        if self._controller.is_alive():
            self._controller.join(10)
        for pod in pods:
            if pod.worker is not None:
                pod.worker.join(10)
            self._kill_all(pod)  # anything started while stopping
            if pod.workdir:
                shutil.rmtree(pod.workdir, ignore_errors=True)
        self.http.stop()

    def processes(self) -> dict[str, int]:
        """Pod name -> PID of its running container process."""
        with self._lock:
            return {p.name: p.current.proc.pid for p in self._pods.values()
                    if p.current is not None and p.current.proc is not None}

    # ------------------------------------------------------------------------------ routing

    def _answer(self, method: str, path: str, query: dict[str, list[str]], headers: dict[str, str],
                body: bytes) -> tuple[int, Any]:
        """One API request: the last value of each query parameter, errors as ``Status``."""
        try:
            return self._serve(method, unquote(path), {k: v[-1] for k, v in query.items()},
                               headers, body)
        except ApiError as err:
            return err.code, err.status()
        except ValueError as exc:  # a malformed query value
            return 400, status(400, "BadRequest", f"invalid request: {exc}")
        except Exception as exc:  # noqa: BLE001 - a simulator bug answers 500 and shows
            traceback.print_exc()
            return 500, status(500, "InternalError", f"simulator error: {exc!r}")

    def _serve(self, method: str, path: str, query: dict[str, str], headers: dict[str, str],
               body: bytes) -> tuple[int, Any]:
        if self._stopping:
            raise ApiError(503, "ServiceUnavailable", "the simulated cluster is stopped")
        if _truthy(query.get("watch")):
            raise ApiError(400, "BadRequest", "watches are not supported by the simulator")
        if path == "/version" and method == "GET":
            return 200, {"major": "1", "minor": "31", "gitVersion": KUBE_VERSION,
                         "platform": "linux/" + self._arch}
        m = re.fullmatch(r"/api/v1/nodes(?:/([^/]+))?", path)
        if m and method == "GET":
            return self._nodes(m.group(1))
        m = re.fullmatch(r"/apis/metrics\.k8s\.io/v1beta1/nodes(?:/([^/]+))?", path)
        if m and method == "GET":
            return self._node_metrics(m.group(1))
        m = re.fullmatch(r"/apis/metrics\.k8s\.io/v1beta1/namespaces/([^/]+)/pods(?:/([^/]+))?", path)
        if m and method == "GET":
            return self._pod_metrics(m.group(1), m.group(2), query)
        m = re.fullmatch(r"/api/v1/namespaces(?:/([^/]+))?", path)
        if m:
            return self._namespace_call(method, m.group(1), body)
        m = NAMESPACED.fullmatch(path)
        if m:
            prefix, ns, resource, name, sub = m.groups()
            if (prefix, resource) == ("api/v1", "pods"):
                return self._pod_call(method, ns, name, sub, query, body)
            if (prefix, resource) == ("api/v1", "events") and name is None:
                if method != "GET":
                    raise ApiError(405, "MethodNotAllowed", f"{method} events is not supported")
                return self._list_events(ns, query)
            if (prefix, resource) in RESOURCES and sub is None:
                kind, api_version = RESOURCES[(prefix, resource)]
                return self._object_call(method, kind, api_version, ns, name, query, headers, body)
        raise ApiError(404, "NotFound", f"the server could not find the requested resource ({method} {path})")

    @staticmethod
    def _body(body: bytes, content_type: str = "") -> Any:
        if not body:
            raise ApiError(400, "BadRequest", "the request has no body")
        try:
            return json.loads(body)
        except ValueError:
            pass
        if "yaml" in content_type:
            try:
                return yaml.safe_load(body)
            except yaml.YAMLError as exc:
                raise ApiError(400, "BadRequest", f"the body is not YAML: {exc}") from exc
        raise ApiError(400, "BadRequest", "the body is not JSON")

    @staticmethod
    def _not_found(kind: str, name: str) -> ApiError:
        prefix, resource = PLURALS.get(kind, ("api/v1", kind.lower() + "s"))
        group = prefix.split("/")[1] if prefix.startswith("apis/") else ""
        qualified = f"{resource}.{group}" if group else resource
        return ApiError(404, "NotFound", f'{qualified} "{name}" not found',
                        {"name": name, "group": group, "kind": resource})

    def _next_rv(self) -> str:
        self._rv += 1
        return str(self._rv)

    def _list(self, kind: str, items: list[dict[str, Any]]) -> dict[str, Any]:
        api_version = {"Pod": "v1", "Event": "v1", "Node": "v1", "Namespace": "v1"}.get(kind)
        if api_version is None:
            api_version = next(v for (k, v) in RESOURCES.values() if k == kind)
        return {"kind": f"{kind}List", "apiVersion": api_version,
                "metadata": {"resourceVersion": str(self._rv)}, "items": copy.deepcopy(items)}

    # ------------------------------------------------------------------------- namespaces

    def _namespace_obj(self, name: str) -> dict[str, Any]:
        return {"apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": name, "labels": {"kubernetes.io/metadata.name": name},
                             "creationTimestamp": self._namespaces[name]},
                "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}

    def _namespace_call(self, method: str, name: str | None, body: bytes) -> tuple[int, Any]:
        with self._lock:
            if method == "GET" and name is None:
                names = sorted(self._namespaces)
                return 200, self._list("Namespace", [self._namespace_obj(n) for n in names])
            if method == "GET":
                if name not in self._namespaces:
                    raise ApiError(404, "NotFound", f'namespaces "{name}" not found',
                                   {"name": name, "kind": "namespaces"})
                return 200, self._namespace_obj(name)
            if method == "POST" and name is None:
                new = ((self._body(body).get("metadata") or {}).get("name")) or ""
                if not new:
                    raise ApiError(422, "Invalid", "metadata.name: Required value")
                if new in self._namespaces:
                    raise ApiError(409, "AlreadyExists", f'namespaces "{new}" already exists',
                                   {"name": new, "kind": "namespaces"})
                self._namespaces[new] = rfc3339()
                return 201, self._namespace_obj(new)
        raise ApiError(405, "MethodNotAllowed", f"{method} namespaces is not supported by the simulator")

    def _touch_namespace(self, ns: str) -> None:
        self._namespaces.setdefault(ns, rfc3339())

    # ---------------------------------------------------------------------- generic objects

    def _object_call(self, method: str, kind: str, api_version: str, ns: str, name: str | None,
                     query: dict[str, str], headers: dict[str, str], body: bytes) -> tuple[int, Any]:
        content_type = headers.get("content-type", "").split(";")[0].strip()
        manager = query.get("fieldManager") or headers.get("user-agent", "unknown").split("/")[0]
        with self._lock:
            if name is None:
                if method == "GET":
                    terms = parse_selector(query.get("labelSelector"))
                    items = [o.obj for (k, n, _), o in sorted(self._objects.items())
                             if k == kind and n == ns
                             and labels_match(terms, o.obj["metadata"].get("labels"))]
                    return 200, self._list(kind, items)
                if method == "POST":
                    doc = self._body(body, content_type)
                    new = (doc.get("metadata") or {}).get("name") or ""
                    if (kind, ns, new) in self._objects:
                        err = self._not_found(kind, new)
                        raise ApiError(409, "AlreadyExists",
                                       err.message.replace("not found", "already exists"), err.details)
                    return self._write(kind, api_version, ns, new, doc, manager, "Update", force=True)
                raise ApiError(405, "MethodNotAllowed", f"{method} on a {kind} collection is not supported")
            stored = self._objects.get((kind, ns, name))
            if method == "GET":
                if stored is None:
                    raise self._not_found(kind, name)
                return 200, copy.deepcopy(stored.obj)
            if method == "DELETE":
                if stored is None:
                    raise self._not_found(kind, name)
                del self._objects[(kind, ns, name)]
                return 200, status(200, "", "", {"name": name, "group": _group_of(api_version),
                                                 "kind": PLURALS[kind][1],
                                                 "uid": stored.obj["metadata"]["uid"]})
            if method == "PATCH":
                if content_type == APPLY_PATCH:
                    if not query.get("fieldManager"):
                        raise ApiError(400, "BadRequest", "PATCH, application/apply-patch+yaml: "
                                       "fieldManager is required for apply requests")
                    return self._write(kind, api_version, ns, name, self._body(body, content_type),
                                       manager, "Apply", force=_truthy(query.get("force")))
                if stored is None:
                    raise self._not_found(kind, name)
                patch = self._body(body, content_type)
                if content_type in MERGE_PATCHES:
                    patched = merge_patch(stored.obj, patch)
                elif content_type == JSON_PATCH and isinstance(patch, list):
                    patched = json_patch(stored.obj, patch)
                else:
                    raise ApiError(415, "UnsupportedMediaType",
                                   f"the simulator does not take PATCH bodies of type {content_type!r}")
                return self._write(kind, api_version, ns, name, patched, manager, "Update", force=True)
        raise ApiError(405, "MethodNotAllowed", f"{method} {kind} is not supported by the simulator")

    def _write(self, kind: str, api_version: str, ns: str, name: str, doc: Any, manager: str,
               operation: str, force: bool) -> tuple[int, Any]:
        """Apply (or update) ``doc`` as ``manager``; the object is rebuilt from what every manager
        owns. Answers 201 on creation, else 200."""
        if not isinstance(doc, Mapping):
            raise ApiError(400, "BadRequest", "the body is not an object")
        meta = doc.get("metadata") or {}
        if doc.get("kind") not in (None, kind) or doc.get("apiVersion") not in (None, api_version):
            raise ApiError(400, "BadRequest", f"the body is a {doc.get('apiVersion')} {doc.get('kind')}, "
                           f"the URL names a {api_version} {kind}")
        if meta.get("name") != name or not name:
            raise ApiError(400, "BadRequest", f"the name of the object ({meta.get('name')!r}) does not match "
                           f"the name on the URL ({name!r})")
        if meta.get("namespace") not in (None, ns):
            raise ApiError(400, "BadRequest", f"the namespace of the object ({meta['namespace']}) does not "
                           f"match the namespace on the URL ({ns})")
        stored = self._objects.get((kind, ns, name))
        managers = copy.deepcopy(stored.managers) if stored else {}
        content = ownable(doc)
        if operation == "Apply":
            mine = leaves(content)
            found: dict[str, list[Path]] = {}
            for other, entry in managers.items():
                if other != manager:
                    paths = conflicting(mine, leaves(entry.body))
                    if paths:
                        found[other] = paths
            if found and not force:
                listed = "; ".join(f'conflict with "{m}": ' + ", ".join("." + ".".join(p) for p in paths)
                                   for m, paths in found.items())
                raise ApiError(409, "Conflict", f"Apply failed with {sum(map(len, found.values()))} "
                               f"conflict(s): {listed}", {"name": name, "kind": PLURALS[kind][1]})
            for other, paths in found.items():
                for path in paths:
                    drop_path(managers[other].body, path)
            previous = managers.get(manager)
            unchanged = previous is not None and previous.operation == "Apply" and previous.body == content
            # a no-op apply changes nothing, not even the time of the manager's entry
            managers[manager] = _Managed("Apply", content, previous.time if previous and unchanged
                                         else rfc3339(), api_version)
        else:
            # an update owns the fields it changed; fields it removed are gone for every manager
            before = leaves(ownable(stored.obj)) if stored else {}
            after = leaves(content)
            changed = {p: v for p, v in after.items() if before.get(p, object()) != v}
            removed = [p for p in before if p not in after]
            for entry in managers.values():
                for path in [*removed, *conflicting(changed, leaves(entry.body))]:
                    drop_path(entry.body, path)
            if stored is None:
                managers[manager] = _Managed("Update", content, rfc3339(), api_version)
            elif changed:
                owned = managers.get(manager)
                body = owned.body if owned and owned.operation == "Update" else {}
                for path, value in changed.items():
                    node = body
                    for key in path[:-1]:
                        node = node.setdefault(key, {})
                    node[path[-1]] = copy.deepcopy(value)
                managers[manager] = _Managed("Update", body, rfc3339(), api_version)
        managers = {m: e for m, e in managers.items() if e.body}
        obj = self._build(kind, api_version, ns, name, managers, stored.obj if stored else None)
        self._validate(obj, stored.obj if stored else None)
        self._touch_namespace(ns)
        if stored is None:
            self._objects[(kind, ns, name)] = _Object(obj, managers)
            return 201, copy.deepcopy(obj)
        stored.managers = managers
        if obj != stored.obj:
            obj["metadata"]["resourceVersion"] = self._next_rv()
            stored.obj = obj
        return 200, copy.deepcopy(stored.obj)

    def _build(self, kind: str, api_version: str, ns: str, name: str, managers: Mapping[str, _Managed],
               old: Mapping[str, Any] | None) -> dict[str, Any]:
        content: dict[str, Any] = {}
        for entry in managers.values():
            merge_into(content, entry.body)
        given = content.pop("metadata", {})
        content.pop("status", None)
        if old is not None:
            meta = copy.deepcopy(old["metadata"])
        else:
            meta = {"name": name, "namespace": ns, "uid": str(uuid.uuid4()),
                    "resourceVersion": self._next_rv(), "creationTimestamp": rfc3339()}
        for key in ("labels", "annotations"):
            if given.get(key):
                meta[key] = given[key]
            else:
                meta.pop(key, None)
        meta["managedFields"] = [
            {"manager": m, "operation": e.operation, "apiVersion": e.api_version, "time": e.time,
             "fieldsType": "FieldsV1", "fieldsV1": fields_v1(e.body),
             **({"subresource": e.subresource} if e.subresource else {})}
            for m, e in managers.items()]
        obj: dict[str, Any] = {"apiVersion": api_version, "kind": kind, "metadata": meta, **content}
        self._defaults(obj, old)
        if "spec" in obj:
            changed = old is None or old.get("spec") != obj["spec"]
            generation = int((old or {}).get("metadata", {}).get("generation", 0))
            meta["generation"] = generation + (1 if changed else 0)
        if old is not None and "status" in old:
            obj["status"] = copy.deepcopy(old["status"])
        elif kind in ("Deployment", "HorizontalPodAutoscaler", "PodDisruptionBudget", "Service"):
            obj["status"] = {"loadBalancer": {}} if kind == "Service" else {}
        return obj

    def _defaults(self, obj: dict[str, Any], old: Mapping[str, Any] | None) -> None:
        kind = obj["kind"]
        spec = obj.get("spec")
        if kind == "Deployment" and isinstance(spec, dict):
            spec.setdefault("replicas", 1)
            spec.setdefault("progressDeadlineSeconds", 600)
            spec.setdefault("revisionHistoryLimit", 10)
            strategy = spec.setdefault("strategy", {"type": "RollingUpdate"})
            strategy.setdefault("type", "RollingUpdate")
            if strategy["type"] == "RollingUpdate":
                rolling = strategy.setdefault("rollingUpdate", {})
                rolling.setdefault("maxSurge", "25%")
                rolling.setdefault("maxUnavailable", "25%")
            pod = (spec.get("template") or {}).get("spec")
            if isinstance(pod, dict):
                pod.setdefault("restartPolicy", "Always")
                pod.setdefault("terminationGracePeriodSeconds", 30)
                pod.setdefault("dnsPolicy", "ClusterFirst")
                pod.setdefault("schedulerName", "default-scheduler")
                for container in pod.get("containers") or []:
                    container.setdefault("terminationMessagePath", "/dev/termination-log")
                    container.setdefault("terminationMessagePolicy", "File")
                    image = str(container.get("image", ""))
                    latest = ":" not in image.rsplit("/", 1)[-1] or image.endswith(":latest")
                    container.setdefault("imagePullPolicy", "Always" if latest else "IfNotPresent")
                    for kind_ in ("startupProbe", "readinessProbe", "livenessProbe"):
                        probe = container.get(kind_)
                        if isinstance(probe, dict):
                            for key, value in (("timeoutSeconds", 1), ("periodSeconds", 10),
                                               ("successThreshold", 1), ("failureThreshold", 3)):
                                probe.setdefault(key, value)
                    for port in container.get("ports") or []:
                        port.setdefault("protocol", "TCP")
        elif kind == "Service" and isinstance(spec, dict):
            spec.setdefault("type", "ClusterIP")
            spec.setdefault("sessionAffinity", "None")
            if "clusterIP" not in spec:
                previous = ((old or {}).get("spec") or {}).get("clusterIP")
                if not previous:
                    self._service_ips += 1
                    previous = f"10.96.{self._service_ips // 254 % 256}.{self._service_ips % 254 + 1}"
                spec["clusterIP"] = previous
                spec["clusterIPs"] = [previous]
            for port in spec.get("ports") or []:
                port.setdefault("protocol", "TCP")
                port.setdefault("targetPort", port.get("port"))
        elif kind == "HorizontalPodAutoscaler" and isinstance(spec, dict):
            spec.setdefault("minReplicas", 1)
        elif kind == "Secret":
            obj.setdefault("type", "Opaque")
            text = obj.pop("stringData", None) or {}
            if text:
                data = obj.setdefault("data", {})
                for key, value in text.items():
                    data[key] = base64.b64encode(str(value).encode()).decode()

    def _validate(self, obj: Mapping[str, Any], old: Mapping[str, Any] | None) -> None:
        kind, name = obj["kind"], obj["metadata"]["name"]
        problems: list[str] = []
        if not re.fullmatch(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?", name) or len(name) > 253:
            problems.append(f"metadata.name: Invalid value: {name!r}: a lowercase RFC 1123 subdomain")
        spec = obj.get("spec") or {}
        if kind == "Deployment":
            selector = (spec.get("selector") or {}).get("matchLabels") or {}
            template = spec.get("template") or {}
            labels = (template.get("metadata") or {}).get("labels") or {}
            pod = template.get("spec") or {}
            if not selector:
                problems.append("spec.selector: Required value")
            elif any(labels.get(k) != v for k, v in selector.items()):
                problems.append("spec.template.metadata.labels: Invalid value: "
                                f"{labels!r}: `selector` does not match template `labels`")
            if old is not None and (old.get("spec") or {}).get("selector") != spec.get("selector"):
                problems.append(f"spec.selector: Invalid value: {spec.get('selector')!r}: field is immutable")
            containers = pod.get("containers") or []
            if len(containers) != 1 or pod.get("initContainers"):
                problems.append("spec.template.spec.containers: Invalid value: the simulator runs exactly "
                                "one container per pod (and no init containers)")
            for container in containers:
                if not container.get("name") or not container.get("image"):
                    problems.append("spec.template.spec.containers: a container needs a name and an image")
            if pod.get("restartPolicy") != "Always":
                problems.append("spec.template.spec.restartPolicy: Unsupported value: "
                                f"{pod.get('restartPolicy')!r}: supported values: \"Always\"")
            if not isinstance(spec.get("replicas"), int) or spec["replicas"] < 0:
                problems.append(f"spec.replicas: Invalid value: {spec.get('replicas')!r}")
            strategy = spec.get("strategy") or {}
            if strategy.get("type") == "RollingUpdate":
                rolling = strategy.get("rollingUpdate") or {}
                zero = ("0", "0%")
                if str(rolling.get("maxSurge")) in zero and str(rolling.get("maxUnavailable")) in zero:
                    problems.append("spec.strategy.rollingUpdate.maxUnavailable: Invalid value: 0: may not "
                                    "be 0 when `maxSurge` is 0")
            elif strategy.get("type") != "Recreate":
                problems.append(f"spec.strategy.type: Unsupported value: {strategy.get('type')!r}")
            try:
                _pod_requests(pod)
            except ValueError as exc:
                problems.append(f"spec.template.spec.containers[0].resources: {exc}")
        elif kind == "HorizontalPodAutoscaler":
            low, high = spec.get("minReplicas", 1), spec.get("maxReplicas")
            if not isinstance(high, int) or not isinstance(low, int) or not 1 <= low <= high:
                problems.append(f"spec.maxReplicas: Invalid value: {high!r}: must be >= minReplicas "
                                f"({low!r}) >= 1")
        elif kind == "Secret":
            for key, value in (obj.get("data") or {}).items():
                try:
                    base64.b64decode(str(value), validate=True)
                except ValueError:
                    problems.append(f"data[{key}]: Invalid value: not base64")
        if problems:
            group = _group_of(obj["apiVersion"])
            raise ApiError(422, "Invalid", f'{kind}{"." + group if group else ""} "{name}" is invalid: '
                           + ", ".join(problems),
                           {"name": name, "group": group, "kind": PLURALS[kind][1],
                            "causes": [{"reason": "FieldValueInvalid", "message": p} for p in problems]})

    # --------------------------------------------------------------------------------- pods

    def _pod_call(self, method: str, ns: str, name: str | None, sub: str | None, query: dict[str, str],
                  body: bytes) -> tuple[int, Any]:
        with self._lock:
            if name is None:
                if method != "GET":
                    raise ApiError(405, "MethodNotAllowed", f"{method} on pods is not supported")
                terms = parse_selector(query.get("labelSelector"))
                fields = parse_selector(query.get("fieldSelector"))
                items = [p.obj for (n, _), p in sorted(self._pods.items())
                         if n == ns and labels_match(terms, p.obj["metadata"].get("labels"))
                         and fields_match(fields, p.obj)]
                return 200, self._list("Pod", items)
            pod = self._pods.get((ns, name))
            if pod is None:
                raise ApiError(404, "NotFound", f'pods "{name}" not found', {"name": name, "kind": "pods"})
            if sub is None and method == "GET":
                return 200, copy.deepcopy(pod.obj)
            if sub is None and method == "DELETE":
                grace: float | None = None
                if query.get("gracePeriodSeconds"):
                    grace = float(query["gracePeriodSeconds"])
                elif body:
                    options = self._body(body)
                    if isinstance(options, Mapping) and options.get("gracePeriodSeconds") is not None:
                        grace = float(options["gracePeriodSeconds"])
                self._terminate(pod, grace)
                return 200, copy.deepcopy(pod.obj)
            if sub == "log" and method == "GET":
                return 200, self._log_text(pod, query)
        raise ApiError(405, "MethodNotAllowed", f"{method} pods/{sub or ''} is not supported")

    def _log_text(self, pod: _Pod, query: dict[str, str]) -> str:
        container = pod.container["name"]
        where = f'container "{container}" in pod "{pod.name}"'
        if query.get("container") not in (None, "", container):
            raise ApiError(400, "BadRequest",
                           f"container {query['container']} is not valid for pod {pod.name}")
        if _truthy(query.get("previous")):
            # the kubelet's lastState.terminated instance
            instance = pod.last if (pod.current is not None or pod.waiting is not None) else (
                pod.instances[-2] if len(pod.instances) > 1 else None)
            if instance is None:
                raise ApiError(400, "BadRequest", f"previous terminated {where} not found")
        else:
            instance = pod.current or pod.last
            if instance is None:
                reason = pod.waiting[0] if pod.waiting else "ContainerCreating"
                raise ApiError(400, "BadRequest", f"{where} is waiting to start: {reason}")
        lines = list(instance.lines)
        follow = _truthy(query.get("follow")) and not _truthy(query.get("previous"))
        last = lines[-1][0] if lines else 0
        if query.get("sinceSeconds"):
            floor = time.time_ns() - int(float(query["sinceSeconds"]) * 1e9)
            lines = [line for line in lines if line[0] >= floor]
        elif query.get("sinceTime"):
            floor = int(parse_time(query["sinceTime"]) * 1e9)
            lines = [line for line in lines if line[0] >= floor]
        if query.get("tailLines"):
            tail = int(query["tailLines"])
            lines = lines[-tail:] if tail > 0 else []
        stamp = _truthy(query.get("timestamps"))

        def render(lines: Iterable[tuple[int, str]]) -> str:
            return "".join(f"{rfc3339_nano(at)} {line}\n" if stamp else f"{line}\n"
                           for at, line in lines)

        if follow:
            return self._follow(instance, render(lines), last, render)
        text = render(lines)
        if query.get("limitBytes"):
            text = text.encode()[:int(query["limitBytes"])].decode("utf-8", errors="ignore")
        return text

    def _follow(self, instance: _Instance, first: str, last: int,
                render: Callable[[Iterable[tuple[int, str]]], str]) -> Iterator[bytes]:
        """``follow=true``: what there is, then each new line until the container has exited
        and its output is read (the kubelet ends the stream then)."""
        yield first.encode()
        while not self._stopping:
            done = instance.exit_code is not None and not (instance.reader and
                                                            instance.reader.is_alive())
            new = [line for line in list(instance.lines) if line[0] > last]
            if new:
                last = new[-1][0]
                yield render(new).encode()
            if done:
                return
            time.sleep(0.05)

    # ------------------------------------------------------------------------------- events

    def _event(self, involved: Mapping[str, Any], type_: str, reason: str, message: str, component: str,
               field_path: str = "") -> None:
        meta = involved["metadata"]
        key = (meta["namespace"], involved["kind"], meta["name"], meta["uid"], field_path, type_, reason,
               message, component)
        now = rfc3339()
        event = self._events.get(key)
        if event is not None:
            event["count"] += 1
            event["lastTimestamp"] = now
            event["metadata"]["resourceVersion"] = self._next_rv()
            return
        ref: dict[str, Any] = {"kind": involved["kind"], "namespace": meta["namespace"], "name": meta["name"],
                               "uid": meta["uid"], "apiVersion": involved["apiVersion"]}
        if field_path:
            ref["fieldPath"] = field_path
        source: dict[str, Any] = {"component": component}
        if component == "kubelet":
            source["host"] = NODE_NAME
        self._events[key] = {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": f"{meta['name']}.{uuid.uuid4().hex[:16]}", "namespace": meta["namespace"],
                         "uid": str(uuid.uuid4()), "resourceVersion": self._next_rv(),
                         "creationTimestamp": now},
            "involvedObject": ref, "reason": reason, "message": message, "type": type_, "count": 1,
            "firstTimestamp": now, "lastTimestamp": now, "source": source,
            "reportingComponent": component, "reportingInstance": NODE_NAME if component == "kubelet" else "",
        }
        while len(self._events) > EVENT_LIMIT:
            del self._events[next(iter(self._events))]

    def _list_events(self, ns: str, query: dict[str, str]) -> tuple[int, Any]:
        fields = parse_selector(query.get("fieldSelector"))
        with self._lock:
            items = [e for e in self._events.values()
                     if e["metadata"]["namespace"] == ns and fields_match(fields, e)]
            return 200, self._list("Event", items)

    # ------------------------------------------------------------------------ node, metrics

    def _node(self) -> dict[str, Any]:
        capacity = {"cpu": _cpu_text(self.cpu), "memory": f"{self.memory // 1024}Ki", "pods": str(MAX_PODS)}
        if self.gpus:
            capacity[self.gpu_resource] = str(self.gpus)
        return {"apiVersion": "v1", "kind": "Node",
                "metadata": {"name": NODE_NAME, "uid": self._node_uid, "labels": dict(self.node_labels),
                             "creationTimestamp": self._created, "resourceVersion": "1"},
                "spec": {},
                "status": {"capacity": capacity, "allocatable": dict(capacity),
                           "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                                           "message": "kubelet is posting ready status"}],
                           "addresses": [{"type": "InternalIP", "address": "127.0.0.1"},
                                         {"type": "Hostname", "address": NODE_NAME}],
                           "nodeInfo": {"kubeletVersion": KUBE_VERSION, "operatingSystem": "linux",
                                        "architecture": self._arch,
                                        "containerRuntimeVersion": "sim://local-processes"}}}

    def _nodes(self, name: str | None) -> tuple[int, Any]:
        with self._lock:
            if name is None:
                return 200, self._list("Node", [self._node()])
            if name != NODE_NAME:
                raise ApiError(404, "NotFound", f'nodes "{name}" not found', {"name": name, "kind": "nodes"})
            return 200, self._node()

    def _node_metrics(self, name: str | None) -> tuple[int, Any]:
        if name not in (None, NODE_NAME):
            raise ApiError(404, "NotFound", f'nodemetrics.metrics.k8s.io "{name}" not found')
        now, busy = time.monotonic(), _busy_seconds()
        with self._lock:
            then, before = self._node_sample
            if now - then > 0.5:
                self._node_sample = (now, busy)
        cores = max(0.0, (busy - before) / max(now - then, 1e-3))
        memory = psutil.virtual_memory()
        item = {"metadata": {"name": NODE_NAME, "labels": dict(self.node_labels),
                             "creationTimestamp": rfc3339()},
                "timestamp": rfc3339(), "window": "10s",
                "usage": {"cpu": f"{round(cores * 1e9)}n",
                          "memory": f"{(memory.total - memory.available) // 1024}Ki"}}
        if name is not None:
            return 200, {"kind": "NodeMetrics", "apiVersion": "metrics.k8s.io/v1beta1", **item}
        return 200, {"kind": "NodeMetricsList", "apiVersion": "metrics.k8s.io/v1beta1", "metadata": {},
                     "items": [item]}

    def _pod_metrics(self, ns: str, name: str | None, query: dict[str, str]) -> tuple[int, Any]:
        terms = parse_selector(query.get("labelSelector"))
        with self._lock:
            pods = [(p, p.current.proc.pid) for (n, _), p in sorted(self._pods.items())
                    if n == ns and (name is None or p.name == name)
                    and labels_match(terms, p.obj["metadata"].get("labels"))
                    and p.current is not None and p.current.proc is not None]
        items = []
        for pod, pid in pods:  # psutil outside the lock
            try:
                cpu, rss = tree_usage(pid)
                created = psutil.Process(pid).create_time()
            except psutil.Error:
                continue  # the process just went
            now = time.time()
            with self._lock:
                then, before = pod.cpu_sample or (created, 0.0)
                pod.cpu_sample = (now, cpu)
            cores = max(0.0, (cpu - before) / max(now - then, 1e-3))
            items.append({"metadata": {"name": pod.name, "namespace": ns,
                                       "labels": dict(pod.obj["metadata"].get("labels") or {}),
                                       "creationTimestamp": rfc3339()},
                          "timestamp": rfc3339(), "window": "10s",
                          "containers": [{"name": pod.container["name"],
                                          "usage": {"cpu": f"{round(cores * 1e9)}n",
                                                    "memory": f"{rss // 1024}Ki"}}]})
        if name is not None:
            if not items:
                raise ApiError(404, "NotFound", f'podmetrics.metrics.k8s.io "{ns}/{name}" not found')
            return 200, {"kind": "PodMetrics", "apiVersion": "metrics.k8s.io/v1beta1", **items[0]}
        return 200, {"kind": "PodMetricsList", "apiVersion": "metrics.k8s.io/v1beta1", "metadata": {},
                     "items": items}

    # -------------------------------------------------------------------------- controllers

    def _control_loop(self) -> None:
        while not self._halt.wait(self.tick):
            try:
                with self._lock:
                    if self._stopping:
                        return
                    self._autoscale()
                    for stored in [o for (k, _, _), o in self._objects.items() if k == "Deployment"]:
                        self._reconcile(stored)
                    self._collect_orphans()
                    self._schedule()
            except Exception:  # noqa: BLE001 - keep the cluster running; show the bug
                traceback.print_exc()

    def _autoscale(self) -> None:
        """HPA: keep the target's replicas within [minReplicas, maxReplicas] (no metric-based scaling)."""
        for (kind, ns, _), hpa in list(self._objects.items()):
            if kind != "HorizontalPodAutoscaler":
                continue
            spec = hpa.obj.get("spec") or {}
            ref = spec.get("scaleTargetRef") or {}
            target = self._objects.get(("Deployment", ns, str(ref.get("name"))))
            if ref.get("kind") != "Deployment" or target is None:
                continue
            current = int(target.obj["spec"].get("replicas", 1))
            low, high = int(spec.get("minReplicas", 1)), int(spec.get("maxReplicas", 1))
            desired = 0 if current == 0 else min(high, max(low, current))  # 0: autoscaling disabled
            if desired != current:
                self._scale_subresource(target, desired)
                why = ("Current number of replicas below Spec.MinReplicas" if desired > current
                       else "Current number of replicas above Spec.MaxReplicas")
                self._event(hpa.obj, "Normal", "SuccessfulRescale", f"New size: {desired}; reason: {why}",
                            "horizontal-pod-autoscaler")
            new_status = {**(hpa.obj.get("status") or {}), "currentReplicas": current,
                          "desiredReplicas": desired}
            if desired != current:
                new_status["lastScaleTime"] = rfc3339()
            if new_status != hpa.obj.get("status"):
                hpa.obj["status"] = new_status
                hpa.obj["metadata"]["resourceVersion"] = self._next_rv()

    def _scale_subresource(self, stored: _Object, replicas: int) -> None:
        """An Update of ``deployments/scale`` by the controller manager: it takes ``spec.replicas``."""
        for entry in stored.managers.values():
            drop_path(entry.body, ("spec", "replicas"))
        stored.managers = {m: e for m, e in stored.managers.items() if e.body}
        stored.managers[CONTROLLER_MANAGER] = _Managed("Update", {"spec": {"replicas": replicas}}, rfc3339(),
                                                       "autoscaling/v1", "scale")
        meta = stored.obj["metadata"]
        obj = self._build("Deployment", "apps/v1", meta["namespace"], meta["name"], stored.managers,
                          stored.obj)
        obj["metadata"]["resourceVersion"] = self._next_rv()
        stored.obj = obj

    def _reconcile(self, stored: _Object) -> None:
        """The Deployment controller: pods for the current template, rolled as the strategy says."""
        dep = stored.obj
        meta, spec = dep["metadata"], dep["spec"]
        rollout = self._rollouts.setdefault(meta["uid"], _Rollout())
        desired = int(spec.get("replicas", 1))
        current = template_hash(spec["template"])
        rollout.hashes.setdefault(current, time.monotonic())
        strategy = spec.get("strategy") or {}
        mine = [p for p in self._pods.values() if p.owner_uid == meta["uid"]]
        live = [p for p in mine if not p.terminating]
        new = [p for p in live if p.template_hash == current]
        old = [p for p in live if p.template_hash != current]
        if strategy.get("type") == "Recreate":
            if old:
                self._scale_down(dep, rollout, old, len(old))
            elif not any(p.template_hash != current for p in mine):  # the old pods are all gone
                self._scale_to(dep, rollout, current, new, desired)
        elif not old:
            self._scale_to(dep, rollout, current, new, desired)
        else:
            surge, unavailable = rolling_bounds(strategy, desired)
            up = min(desired + surge - len(live), desired - len(new))
            if up > 0:
                new += self._create_pods(dep, rollout, current, up, len(new))
                live = [*new, *old]
            min_available = desired - unavailable
            new_unavailable = sum(not p.available for p in new)
            budget = len(live) - min_available - new_unavailable
            if budget > 0:
                # first the old pods that are not available anyway, oldest template first
                def order(p: _Pod) -> tuple[Any, ...]:
                    return (rollout.hashes.get(p.template_hash, 0.0), *_deletion_rank(p))

                unhealthy = sorted((p for p in old if not p.available), key=order)
                self._scale_down(dep, rollout, unhealthy[:budget], None)
                old = [p for p in old if not p.terminating]
                available = sum(p.available for p in [*new, *old])
                down = min(available - min_available, len(old))
                if down > 0:
                    self._scale_down(dep, rollout, sorted(old, key=order)[:down], None)
        self._deployment_status(stored, rollout, current, desired)

    def _scale_to(self, dep: Mapping[str, Any], rollout: _Rollout, current: str, new: list[_Pod],
                  desired: int) -> None:
        if len(new) < desired:
            self._create_pods(dep, rollout, current, desired - len(new), len(new))
        elif len(new) > desired:
            self._scale_down(dep, rollout, sorted(new, key=_deletion_rank), len(new) - desired)
        else:
            self._resize(dep, rollout, current, desired)

    def _resize(self, dep: Mapping[str, Any], rollout: _Rollout, h: str, size: int) -> None:
        """The (virtual) ReplicaSet of template ``h`` now wants ``size`` pods: a ScalingReplicaSet
        event when that changed (replacing a deleted pod is no scaling)."""
        before = rollout.sizes.get(h, 0)
        if size != before:
            rollout.sizes[h] = size
            way = "up" if size > before else "down"
            self._event(dep, "Normal", "ScalingReplicaSet", f"Scaled {way} replica set "
                        f"{dep['metadata']['name']}-{h} from {before} to {size}", "deployment-controller")

    def _scale_down(self, dep: Mapping[str, Any], rollout: _Rollout, ranked: list[_Pod],
                    count: int | None) -> None:
        chosen = ranked if count is None else ranked[:count]
        uid = dep["metadata"]["uid"]
        for pod in chosen:
            self._terminate(pod, None)
        for h in {p.template_hash for p in chosen}:
            live = sum(1 for p in self._pods.values()
                       if p.owner_uid == uid and p.template_hash == h and not p.terminating)
            self._resize(dep, rollout, h, live)

    def _create_pods(self, dep: Mapping[str, Any], rollout: _Rollout, current: str, count: int,
                     have: int) -> list[_Pod]:
        meta = dep["metadata"]
        template = dep["spec"]["template"]
        tmeta = template.get("metadata") or {}
        rs_name = f"{meta['name']}-{current}"
        rs_uid = str(uuid.uuid5(uuid.NAMESPACE_URL, meta["uid"] + current))
        created = []
        for _ in range(count):
            name = f"{rs_name}-{_suffix()}"
            while (meta["namespace"], name) in self._pods:
                name = f"{rs_name}-{_suffix()}"
            pod_spec = copy.deepcopy(template.get("spec") or {})
            obj = {"apiVersion": "v1", "kind": "Pod",
                   "metadata": {"name": name, "generateName": f"{rs_name}-", "namespace": meta["namespace"],
                                "uid": str(uuid.uuid4()), "resourceVersion": self._next_rv(),
                                "creationTimestamp": rfc3339(),
                                "labels": {**(tmeta.get("labels") or {}), "pod-template-hash": current},
                                "annotations": dict(tmeta.get("annotations") or {}),
                                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                                                     "name": rs_name, "uid": rs_uid, "controller": True,
                                                     "blockOwnerDeletion": True}]},
                   "spec": pod_spec, "status": {"phase": "Pending"}}
            if not obj["metadata"]["annotations"]:
                del obj["metadata"]["annotations"]
            pod = _Pod(meta["namespace"], name, obj, meta["uid"], current, _pod_requests(pod_spec))
            pod.obj["status"] = self._pod_status(pod)
            self._pods[(pod.namespace, name)] = pod
            created.append(pod)
        self._resize(dep, rollout, current, max(have + count, rollout.sizes.get(current, 0)))
        return created

    def _deployment_status(self, stored: _Object, rollout: _Rollout, current: str, desired: int) -> None:
        dep = stored.obj
        meta, spec = dep["metadata"], dep["spec"]
        live = [p for p in self._pods.values() if p.owner_uid == meta["uid"] and not p.terminating]
        new = [p for p in live if p.template_hash == current]
        ready = sum(p.available for p in live)
        ready_new = sum(p.available for p in new)
        old = len(live) - len(new)
        strategy = spec.get("strategy") or {}
        rolling = strategy.get("type") == "RollingUpdate"
        unavailable_ok = rolling_bounds(strategy, desired)[1] if rolling else 0
        now, mono = rfc3339(), time.monotonic()
        counts = (current, desired, len(new), ready, old)
        previous = rollout.counts
        progressed = (previous is None or previous[0] != current or previous[1] != desired
                      or len(new) > previous[2] or ready > previous[3] or old < previous[4])
        rollout.counts = counts
        complete = old == 0 and len(new) == desired and ready_new >= desired
        rs_name = f"{meta['name']}-{current}"
        cond = rollout.progressing

        def progressing(state: str, reason: str, message: str, touch: bool) -> dict[str, Any]:
            same = cond is not None and cond["status"] == state
            return {"type": "Progressing", "status": state,
                    "lastUpdateTime": now if touch or cond is None else cond["lastUpdateTime"],
                    "lastTransitionTime": cond["lastTransitionTime"] if same and cond else now,
                    "reason": reason, "message": message}

        if complete:
            if cond is None or cond["reason"] != "NewReplicaSetAvailable":
                cond = progressing("True", "NewReplicaSetAvailable",
                                   f'ReplicaSet "{rs_name}" has successfully progressed.', True)
            rollout.progressed_at = mono
        elif progressed:
            cond = progressing("True", "ReplicaSetUpdated", f'ReplicaSet "{rs_name}" is progressing.', True)
            rollout.progressed_at = mono
        elif cond is not None and cond["reason"] == "ReplicaSetUpdated":
            deadline = float(spec.get("progressDeadlineSeconds", 600)) * self.time_scale
            if mono - rollout.progressed_at > deadline:
                cond = progressing("False", "ProgressDeadlineExceeded",
                                   f'ReplicaSet "{rs_name}" has timed out progressing.', True)
        rollout.progressing = cond
        minimum = ready >= desired - unavailable_ok
        avail = rollout.available
        if avail is None or (avail["status"] == "True") != minimum:
            avail = {"type": "Available", "status": "True" if minimum else "False", "lastUpdateTime": now,
                     "lastTransitionTime": now,
                     "reason": "MinimumReplicasAvailable" if minimum else "MinimumReplicasUnavailable",
                     "message": "Deployment has minimum availability." if minimum
                     else "Deployment does not have minimum availability."}
            rollout.available = avail
        new_status: dict[str, Any] = {"observedGeneration": meta.get("generation", 1)}
        for key, value in (("replicas", len(live)), ("updatedReplicas", len(new)), ("readyReplicas", ready),
                           ("availableReplicas", ready), ("unavailableReplicas", max(0, len(live) - ready))):
            if value:
                new_status[key] = value  # the API omits zero counts
        new_status["conditions"] = [c for c in (avail, cond) if c is not None]
        if new_status != dep.get("status"):
            dep["status"] = new_status
            meta["resourceVersion"] = self._next_rv()

    def _collect_orphans(self) -> None:
        """Pods whose Deployment is gone terminate (background propagation)."""
        owners = {o.obj["metadata"]["uid"] for (k, _, _), o in self._objects.items() if k == "Deployment"}
        for pod in list(self._pods.values()):
            if pod.owner_uid not in owners and not pod.terminating:
                self._terminate(pod, None)
        for uid in [u for u in self._rollouts if u not in owners]:
            del self._rollouts[uid]

    def _schedule(self) -> None:
        """Fit Pending pods onto the one node; start a kubelet worker for each placed pod."""
        used: dict[str, Fraction] = collections.defaultdict(Fraction)
        gpus_used: set[int] = set()
        placed = [p for p in self._pods.values() if p.scheduled]
        for pod in placed:
            for name, amount in pod.requests.items():
                used[name] += amount
            gpus_used.update(pod.gpus)
        capacity = {"cpu": Fraction(self.cpu), "memory": Fraction(self.memory),
                    self.gpu_resource: Fraction(self.gpus)}
        count = len(placed)
        now = time.monotonic()
        for pod in sorted((p for p in self._pods.values() if not p.scheduled and not p.terminating),
                          key=lambda p: p.created):
            reasons = set()
            selector = pod.obj["spec"].get("nodeSelector") or {}
            if any(self.node_labels.get(k) != v for k, v in selector.items()):
                reasons.add("node(s) didn't match Pod's node affinity/selector")
            for name, amount in pod.requests.items():
                if name == "ephemeral-storage" or amount == 0:
                    continue
                if used[name] + amount > capacity.get(name, Fraction(0)):
                    reasons.add(f"Insufficient {name}")
            if count >= MAX_PODS:
                reasons.add("Too many pods")
            if reasons:
                message = f"0/1 nodes are available: {', '.join('1 ' + r for r in sorted(reasons))}."
                if message != pod.unschedulable or now - pod.sched_event_at >= SCHEDULER_RETRY:
                    pod.unschedulable, pod.sched_event_at = message, now
                    self._event(pod.obj, "Warning", "FailedScheduling", message, "default-scheduler")
                    self._refresh(pod)
                continue
            pod.scheduled, pod.unschedulable = True, ""
            count += 1
            for name, amount in pod.requests.items():
                used[name] += amount
            wanted = int(pod.requests.get(self.gpu_resource, 0))
            pod.gpus = tuple(sorted(set(range(self.gpus)) - gpus_used)[:wanted])
            gpus_used.update(pod.gpus)
            pod.ip = self._allocate_ip(pod)
            pod.start_time = rfc3339()
            pod.obj["spec"]["nodeName"] = NODE_NAME
            pod.workdir = tempfile.mkdtemp(prefix=f"kubesim-{pod.name}-")
            self._event(pod.obj, "Normal", "Scheduled",
                        f"Successfully assigned {pod.namespace}/{pod.name} to {NODE_NAME}",
                        "default-scheduler")
            self._refresh(pod)
            pod.worker = threading.Thread(target=self._kubelet, args=(pod,), name=f"kubelet-{pod.name}",
                                          daemon=True)
            pod.worker.start()

    def _allocate_ip(self, pod: _Pod) -> str:
        in_use = {p.ip for p in self._pods.values() if p.ip}
        ports = [int(port["containerPort"]) for port in pod.container.get("ports") or []
                 if port.get("containerPort")]
        for _ in range(IP_SPACE):
            self._ip_next = (self._ip_next + 1) % IP_SPACE
            ip = f"127.1.{self._ip_next // 254}.{self._ip_next % 254 + 1}"
            if ip not in in_use and all(_port_free(ip, port) for port in ports):
                return ip
        raise RuntimeError("the simulator ran out of loopback pod IPs")

    # ------------------------------------------------------------------------- pod status

    def _terminate(self, pod: _Pod, grace: float | None) -> None:
        """Begin a graceful deletion (the kubelet worker finishes it); unscheduled pods go at once."""
        if grace is None:
            grace = float(pod.obj["spec"].get("terminationGracePeriodSeconds", 30))
        if pod.terminating:
            pod.grace = min(pod.grace, grace)
            return
        pod.terminating, pod.grace, pod.ready = True, grace, False
        meta = pod.obj["metadata"]
        meta["deletionTimestamp"] = rfc3339(time.time() + grace)
        meta["deletionGracePeriodSeconds"] = int(grace)
        pod.stop_event.set()
        if pod.worker is None:
            self._pods.pop((pod.namespace, pod.name), None)
            return
        self._refresh(pod)

    def _refresh(self, pod: _Pod) -> None:
        new_status = self._pod_status(pod)
        if new_status != pod.obj.get("status"):
            pod.obj["status"] = new_status
            pod.obj["metadata"]["resourceVersion"] = self._next_rv()

    def _pod_status(self, pod: _Pod) -> dict[str, Any]:
        conditions: list[dict[str, Any]] = []

        def condition(kind: str, ok: bool, reason: str = "", message: str = "") -> None:
            state = "True" if ok else "False"
            before = pod.conditions.get(kind)
            since = before[1] if before and before[0] == state else rfc3339()
            pod.conditions[kind] = (state, since)
            entry: dict[str, Any] = {"type": kind, "status": state, "lastProbeTime": None,
                                     "lastTransitionTime": since}
            if reason:
                entry["reason"] = reason
            if message:
                entry["message"] = message
            conditions.append(entry)

        requests = pod.requests
        limits = (pod.container.get("resources") or {}).get("limits") or {}
        guaranteed = all(k in limits and parse_quantity(limits[k]) == requests.get(k)
                         for k in ("cpu", "memory"))
        qos = "Guaranteed" if guaranteed else ("Burstable" if requests else "BestEffort")
        if not pod.scheduled:
            if pod.unschedulable:
                condition("PodScheduled", False, "Unschedulable", pod.unschedulable)
            return {"phase": "Pending", "conditions": conditions, "qosClass": qos}
        name = pod.container["name"]
        ready = pod.ready and not pod.terminating
        not_ready = f"containers with unready status: [{name}]"
        condition("PodReadyToStartContainers", True)
        condition("Initialized", True)
        condition("Ready", ready, "" if ready else "ContainersNotReady", "" if ready else not_ready)
        condition("ContainersReady", ready, "" if ready else "ContainersNotReady", "" if ready else not_ready)
        condition("PodScheduled", True)
        if pod.current is not None:
            state: dict[str, Any] = {"running": {"startedAt": pod.current.started_at}}
        elif pod.waiting is not None:
            reason, message = pod.waiting
            state = {"waiting": {"reason": reason, **({"message": message} if message else {})}}
        elif pod.last is not None:
            state = {"terminated": pod.last.terminated()}
        else:
            state = {"waiting": {"reason": "ContainerCreating"}}
        last = pod.last if (pod.current is not None or pod.waiting is not None) else (
            pod.instances[-2] if pod.ended and len(pod.instances) > 1 else None)
        shown = pod.current or pod.last
        image = pod.container.get("image", "")
        status_: dict[str, Any] = {
            "name": name, "image": image, "imageID": f"sim://{image}" if pod.instances else "",
            "ready": ready, "started": pod.started and pod.current is not None,
            "restartCount": pod.restarts, "state": state,
            "lastState": {"terminated": last.terminated()} if last is not None else {}}
        if shown is not None:
            status_["containerID"] = shown.container_id
        return {"phase": "Running" if pod.instances else "Pending", "conditions": conditions,
                "hostIP": "127.0.0.1", "hostIPs": [{"ip": "127.0.0.1"}], "podIP": pod.ip,
                "podIPs": [{"ip": pod.ip}], "startTime": pod.start_time, "containerStatuses": [status_],
                "qosClass": qos}

    def _set(self, pod: _Pod, **changes: Any) -> None:
        with self._lock:
            for key, value in changes.items():
                setattr(pod, key, value)
            self._refresh(pod)

    def _pod_event(self, pod: _Pod, type_: str, reason: str, message: str, container: bool = True) -> None:
        with self._lock:
            self._event(pod.obj, type_, reason, message, "kubelet",
                        f"spec.containers{{{pod.container['name']}}}" if container else "")

    # ------------------------------------------------------------------------------ kubelet

    def _backoff(self, n: int) -> float:
        return min(self.backoff_cap, self.backoff_base * 2 ** max(0, n - 1))

    def _period(self, probe: Mapping[str, Any]) -> float:
        return min(float(probe.get("periodSeconds", 10)), self.probe_period)

    def _kubelet(self, pod: _Pod) -> None:
        """One pod's life on the node: pull, run, probe, restart, and finally stop."""
        try:
            if self._pull(pod):
                self._run(pod)
        except Exception as exc:  # noqa: BLE001 - a simulator bug shows on the pod and in stderr
            traceback.print_exc()
            if pod.current is not None and pod.current.proc is not None:
                _killpg(pod.current.proc.pid, signal.SIGKILL)
            self._set(pod, waiting=("SimulatorError", f"{type(exc).__name__}: {exc}"), ready=False)
            pod.stop_event.wait()
        finally:
            self._finish(pod)

    def _pull(self, pod: _Pod) -> bool:
        image = str(pod.container.get("image", ""))
        attempt = 0
        while image in self.bad_images:
            attempt += 1
            error = (f'failed to pull and unpack image "{image}": failed to resolve reference "{image}": '
                     f"{image}: not found (a bad image of the simulator)")
            self._pod_event(pod, "Normal", "Pulling", f'Pulling image "{image}"')
            self._pod_event(pod, "Warning", "Failed", f'Failed to pull image "{image}": {error}')
            self._pod_event(pod, "Warning", "Failed", "Error: ErrImagePull")
            self._set(pod, waiting=("ErrImagePull", error))
            if pod.stop_event.wait(self.backoff_base):
                return False
            self._pod_event(pod, "Normal", "BackOff", f'Back-off pulling image "{image}"')
            self._pod_event(pod, "Warning", "Failed", "Error: ImagePullBackOff")
            self._set(pod, waiting=("ImagePullBackOff",
                                    f'Back-off pulling image "{image}": ErrImagePull: {error}'))
            if pod.stop_event.wait(self._backoff(attempt)):
                return False
        if pod.stop_event.is_set():
            return False
        self._pod_event(pod, "Normal", "Pulled", f'Container image "{image}" already present on machine')
        return True

    def _run(self, pod: _Pod) -> None:
        crashes = 0
        name = pod.container["name"]
        while not pod.stop_event.is_set():
            with self._lock:
                env, values, problem = self._container_env(pod)
            if problem:
                self._pod_event(pod, "Warning", "Failed", f"Error: {problem}")
                self._set(pod, waiting=("CreateContainerConfigError", problem))
                if pod.stop_event.wait(max(self.backoff_base, 0.5)):
                    return
                continue
            instance = self._start(pod, env, values)
            if instance is None:
                return  # stopping
            if instance.proc is not None:
                if self._supervise(pod, instance) == "terminate":
                    return
            ran = time.monotonic() - instance.started_mono
            crashes = 1 if ran > 2 * self.backoff_cap else crashes + 1
            delay = self._backoff(crashes)
            meta = pod.obj["metadata"]
            self._pod_event(pod, "Warning", "BackOff",
                            f"Back-off restarting failed container {name} in pod "
                            f"{pod.name}_{pod.namespace}({meta['uid']})")
            self._set(pod, waiting=("CrashLoopBackOff", f"back-off {delay:g}s restarting failed container="
                                    f"{name} pod={pod.name}_{pod.namespace}({meta['uid']})"))
            if pod.stop_event.wait(delay):
                return

    def _container_env(self, pod: _Pod) -> tuple[dict[str, str], dict[str, str], str]:
        """The process environment (a base of this process's, minus ``LIVEML_*``, then the
        container's variables), the container's own variables (what ``$(VAR)`` may name), or a
        CreateContainerConfigError message. Called under the lock (it reads Secrets)."""
        container = pod.container
        values: dict[str, str] = {}
        meta = pod.obj["metadata"]
        fields = {"metadata.name": meta["name"], "metadata.namespace": pod.namespace,
                  "metadata.uid": meta["uid"],
                  "spec.nodeName": NODE_NAME, "status.podIP": pod.ip, "status.hostIP": "127.0.0.1",
                  "spec.serviceAccountName": pod.obj["spec"].get("serviceAccountName", "default")}

        def secret_data(name: str) -> dict[str, str] | None:
            stored = self._objects.get(("Secret", pod.namespace, name))
            return None if stored is None else dict(stored.obj.get("data") or {})

        for source in container.get("envFrom") or []:
            ref = source.get("secretRef")
            if ref is None:
                return {}, {}, "the simulator has no ConfigMaps (envFrom.configMapRef)"
            data = secret_data(ref.get("name", ""))
            if data is None:
                if ref.get("optional"):
                    continue
                return {}, {}, f'secret "{ref.get("name")}" not found'
            for key, value in data.items():
                values[source.get("prefix", "") + key] = base64.b64decode(value).decode(errors="replace")
        for item in container.get("env") or []:
            key = item["name"]
            if "valueFrom" not in item:
                values[key] = expand(str(item.get("value", "")), values)
                continue
            source = item["valueFrom"]
            if "fieldRef" in source:
                path = source["fieldRef"].get("fieldPath", "")
                m = re.fullmatch(r"metadata\.(labels|annotations)\['([^']+)'\]", path)
                if m:
                    values[key] = str((meta.get(m.group(1)) or {}).get(m.group(2), ""))
                elif path in fields:
                    values[key] = fields[path]
                else:
                    return {}, {}, f"unsupported fieldRef {path!r} for env {key}"
            elif "secretKeyRef" in source:
                ref = source["secretKeyRef"]
                data = secret_data(ref.get("name", ""))
                if data is None or ref.get("key") not in data:
                    if ref.get("optional"):
                        continue
                    if data is None:
                        return {}, {}, f'secret "{ref.get("name")}" not found'
                    return {}, {}, (f"couldn't find key {ref.get('key')} in Secret "
                                    f"{pod.namespace}/{ref.get('name')}")
                values[key] = base64.b64decode(data[ref["key"]]).decode(errors="replace")
            elif "resourceFieldRef" in source:
                ref = source["resourceFieldRef"]
                kind, _, resource = str(ref.get("resource", "")).partition(".")
                amounts = (container.get("resources") or {}).get(kind) or {}
                if resource == "cpu":
                    default = self.cpu
                elif resource == "memory":
                    default = self.memory
                else:
                    default = 0
                amount = parse_quantity(amounts.get(resource, default))
                values[key] = str(math.ceil(amount / parse_quantity(ref.get("divisor", 1))))
            else:
                return {}, {}, f"unsupported valueFrom for env {key} (the simulator has no ConfigMaps)"
        env = {k: v for k, v in os.environ.items() if not k.startswith("LIVEML_")}
        env["HOSTNAME"] = pod.name
        if pod.gpus:
            env["NVIDIA_VISIBLE_DEVICES"] = ",".join(map(str, pod.gpus))
        env.update(values)
        return env, values, ""

    def _argv(self, pod: _Pod, command: list[str], env: Mapping[str, str]) -> list[str]:
        return _bind_here(_local_command([expand(str(a), env) for a in command]), pod.ip)

    def _start(self, pod: _Pod, env: dict[str, str], values: dict[str, str]) -> _Instance | None:
        """A new container instance; None when the simulator is stopping."""
        container = pod.container
        argv = self._argv(pod, [*(container.get("command") or []), *(container.get("args") or [])], values)
        instance = _Instance(number=len(pod.instances), container_id=f"sim://{uuid.uuid4().hex}", env=env,
                             values=values)
        instance.started_at, instance.started_mono = rfc3339(), time.monotonic()
        error = "" if argv else "the simulator needs the container's command (images have no entrypoint here)"
        if not error:
            try:
                instance.proc = subprocess.Popen(argv, cwd=pod.workdir, env=env, stdin=subprocess.DEVNULL,
                                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                                 start_new_session=True)
            except OSError as exc:
                error = f"failed to start container: {exc}"
        with self._lock:
            stopping = self._stopping
            if instance.proc is not None:
                for older in pod.instances[:-1]:  # the kubelet keeps the current and the previous log
                    older.lines.clear()
                pod.instances.append(instance)
                pod.current, pod.waiting, pod.started, pod.ready = instance, None, False, False
                self._refresh(pod)
        if stopping:
            if instance.proc is not None:
                _killpg(instance.proc.pid, signal.SIGKILL)
                instance.proc.wait()
            return None
        if instance.proc is None:
            self._pod_event(pod, "Warning", "Failed", f"Error: {error}")
            instance.exit_code, instance.reason, instance.message = 128, "StartError", error
            instance.finished_at = rfc3339()
            with self._lock:
                pod.instances.append(instance)
                pod.last, pod.restarts = instance, pod.restarts + 1
            return instance
        name = container["name"]
        self._pod_event(pod, "Normal", "Created", f"Created container {name}")
        self._pod_event(pod, "Normal", "Started", f"Started container {name}")
        stream = instance.proc.stdout
        assert stream is not None
        instance.reader = threading.Thread(target=self._read_output, args=(instance, stream),
                                           name=f"log-{pod.name}-{instance.number}", daemon=True)
        instance.reader.start()
        return instance

    def _read_output(self, instance: _Instance, stream: Any) -> None:
        for raw in iter(stream.readline, b""):
            line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
            with self._lock:
                instance.lines.append((time.time_ns(), line))
        stream.close()

    def _supervise(self, pod: _Pod, instance: _Instance) -> str:
        """Probe and watch a running instance: "terminate" (the pod is going), "exited" (it ended or
        was killed for a failed probe or its memory limit)."""
        container = pod.container
        proc = instance.proc
        assert proc is not None
        probes = {kind: container.get(f"{kind}Probe") for kind in ("startup", "readiness", "liveness")}
        now = time.monotonic()
        due = {kind: now + min(float(p.get("initialDelaySeconds", 0)), self.probe_period)
               for kind, p in probes.items() if p}
        failures = dict.fromkeys(due, 0)
        successes = dict.fromkeys(due, 0)
        started = probes["startup"] is None
        ready = started and probes["readiness"] is None
        self._set(pod, started=started, ready=ready)
        limit = ((container.get("resources") or {}).get("limits") or {}).get("memory")
        limit_bytes = int(parse_quantity(limit)) if limit else 0
        next_memory = now
        while True:
            if pod.stop_event.is_set():
                return "terminate"
            if proc.poll() is not None:
                self._exited(pod, instance)
                return "exited"
            now = time.monotonic()
            if limit_bytes and now >= next_memory:
                next_memory = now + MEMORY_CHECK
                try:
                    _, rss = tree_usage(proc.pid)
                except psutil.Error:
                    rss = 0
                if rss > limit_bytes:
                    instance.oom = True
                    _killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
                    continue
            for kind in ("startup", "readiness", "liveness"):
                probe = probes[kind]
                if not probe or now < due[kind] or (kind == "startup") == started:
                    continue
                due[kind] = now + self._period(probe)
                ok, why = self._probe(pod, probe)
                if pod.stop_event.is_set():
                    return "terminate"
                if ok:
                    failures[kind], successes[kind] = 0, successes[kind] + 1
                else:
                    failures[kind], successes[kind] = failures[kind] + 1, 0
                    self._pod_event(pod, "Warning", "Unhealthy", f"{kind.capitalize()} probe failed: {why}")
                threshold = int(probe.get("failureThreshold", 3))
                if kind == "startup" and ok:
                    started = True
                    ready = probes["readiness"] is None
                    for other in ("readiness", "liveness"):
                        if other in due:
                            due[other] = now
                elif kind == "readiness":
                    if ok and successes[kind] >= int(probe.get("successThreshold", 1)):
                        ready = True
                    elif not ok and failures[kind] >= threshold:
                        ready = False
                elif not ok and failures[kind] >= threshold:  # startup or liveness: restart
                    self._pod_event(pod, "Normal", "Killing", f"Container {container['name']} failed {kind} "
                                    "probe, will be restarted")
                    self._set(pod, ready=False)
                    self._stop_process(pod, instance, self._grace(pod, probe))
                    self._exited(pod, instance)
                    return "exited"
                if (started, ready) != (pod.started, pod.ready):
                    self._set(pod, started=started, ready=ready)
            pod.stop_event.wait(0.05)

    @staticmethod
    def _grace(pod: _Pod, probe: Mapping[str, Any] | None = None) -> float:
        if probe and probe.get("terminationGracePeriodSeconds") is not None:
            return float(probe["terminationGracePeriodSeconds"])
        return float(pod.obj["spec"].get("terminationGracePeriodSeconds", 30))

    def _probe(self, pod: _Pod, probe: Mapping[str, Any]) -> tuple[bool, str]:
        timeout = float(probe.get("timeoutSeconds", 1))
        try:
            return self._try_probe(pod, probe, timeout)
        except ValueError as exc:  # e.g. a named port the container does not have
            return False, str(exc)

    def _try_probe(self, pod: _Pod, probe: Mapping[str, Any], timeout: float) -> tuple[bool, str]:
        if "httpGet" in probe:
            spec = probe["httpGet"]
            host, port = spec.get("host") or pod.ip, self._port(pod, spec.get("port"))
            path = spec.get("path", "/")
            headers = {"User-Agent": "kube-probe/1.31", "Accept": "*/*",
                       **{h["name"]: h["value"] for h in spec.get("httpHeaders") or []}}
            https = str(spec.get("scheme", "HTTP")).upper() == "HTTPS"
            conn = (http.client.HTTPSConnection(host, port, timeout=timeout,
                                                context=ssl._create_unverified_context())
                    if https else http.client.HTTPConnection(host, port, timeout=timeout))
            try:
                conn.request("GET", path, headers=headers)
                response = conn.getresponse()
                response.read()
            except (OSError, http.client.HTTPException) as exc:
                scheme = "https" if https else "http"
                return False, f'Get "{scheme}://{host}:{port}{path}": {_dial_error(host, port, exc)}'
            finally:
                conn.close()
            if 200 <= response.status < 400:
                return True, ""
            return False, f"HTTP probe failed with statuscode: {response.status}"
        if "tcpSocket" in probe:
            spec = probe["tcpSocket"]
            host, port = spec.get("host") or pod.ip, self._port(pod, spec.get("port"))
            try:
                socket.create_connection((host, port), timeout=timeout).close()
            except OSError as exc:
                return False, _dial_error(host, port, exc)
            return True, ""
        if "exec" in probe:
            current = pod.current
            env = current.env if current else dict(os.environ)
            command = list(probe["exec"].get("command") or [])
            argv = self._argv(pod, command, current.values if current else {})
            try:
                done = subprocess.run(argv, cwd=pod.workdir, env=env, capture_output=True, timeout=timeout,
                                      start_new_session=True)
            except subprocess.TimeoutExpired:
                return False, f"command {argv!r} timed out"
            except OSError as exc:
                return False, str(exc)
            if done.returncode == 0:
                return True, ""
            output = (done.stdout + done.stderr).decode(errors="replace")[-500:]
            return False, output or f"exit {done.returncode}"
        return False, "the simulator supports httpGet, tcpSocket and exec probes only"

    @staticmethod
    def _port(pod: _Pod, port: Any) -> int:
        if isinstance(port, int) or str(port).isdigit():
            return int(port)
        for item in pod.container.get("ports") or []:
            if item.get("name") == port:
                return int(item["containerPort"])
        raise ValueError(f"the container has no port named {port!r}")

    def _exited(self, pod: _Pod, instance: _Instance) -> None:
        """Record the end of an instance that will be restarted."""
        self._record_exit(pod, instance)
        with self._lock:
            pod.current, pod.last = None, instance
            pod.restarts += 1
            pod.started = pod.ready = False
            pod.waiting = ("ContainerCreating", "")
            self._refresh(pod)

    def _record_exit(self, pod: _Pod, instance: _Instance) -> None:
        proc = instance.proc
        assert proc is not None
        code = proc.wait()
        if instance.reader is not None:
            instance.reader.join(2)
        code = 128 - code if code < 0 else code  # killed by signal n: 128 + n
        instance.exit_code = code
        instance.reason = "OOMKilled" if instance.oom else ("Completed" if code == 0 else "Error")
        instance.finished_at = rfc3339()
        if pod.container.get("terminationMessagePolicy") == "FallbackToLogsOnError" and code != 0:
            with self._lock:
                tail = [line for _, line in list(instance.lines)[-TERMINATION_LOG_LINES:]]
            text = "\n".join(tail) + ("\n" if tail else "")
            instance.message = text.encode()[-TERMINATION_LOG_BYTES:].decode("utf-8", errors="ignore")

    def _stop_process(self, pod: _Pod, instance: _Instance, grace: float) -> None:
        """preStop hook (cut at ``prestop_cap``), SIGTERM, the grace period, SIGKILL of the group."""
        proc = instance.proc
        assert proc is not None
        deadline = time.monotonic() + grace
        hook = (pod.container.get("lifecycle") or {}).get("preStop")
        if hook and proc.poll() is None and grace > 0 and not self._stopping:
            self._pre_stop(pod, instance, hook, min(self.prestop_cap, grace))
        if proc.poll() is None:
            _killpg(proc.pid, signal.SIGTERM)
        remaining = max(deadline - time.monotonic(), min(2.0, grace))
        try:
            proc.wait(remaining if grace > 0 else 0)
        except subprocess.TimeoutExpired:
            pass
        _killpg(proc.pid, signal.SIGKILL)  # the rest of the group too
        proc.wait()

    def _pre_stop(self, pod: _Pod, instance: _Instance, hook: Mapping[str, Any], cap: float) -> None:
        if "exec" in hook:
            argv = self._argv(pod, list(hook["exec"].get("command") or []), instance.values)
            try:
                proc = subprocess.Popen(argv, cwd=pod.workdir, env=instance.env, stdin=subprocess.DEVNULL,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                        start_new_session=True)
            except OSError as exc:
                self._pod_event(pod, "Warning", "FailedPreStopHook", f"PreStopHook failed: {exc}")
                return
            with self._lock:
                pod.prestop = proc
                stopping = self._stopping
            try:
                code = proc.wait(0 if stopping else cap)
                if code != 0:
                    self._pod_event(pod, "Warning", "FailedPreStopHook",
                                    f"PreStopHook failed: command {argv!r} exited with {code}")
            except subprocess.TimeoutExpired:
                pass  # cut short: the simulator's prestop_cap
            finally:
                _killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                with self._lock:
                    pod.prestop = None
        elif "httpGet" in hook:
            self._probe(pod, {"httpGet": hook["httpGet"], "timeoutSeconds": cap})
        elif "sleep" in hook:
            pod_wait = min(float(hook["sleep"].get("seconds", 0)), cap)
            time.sleep(pod_wait)

    def _finish(self, pod: _Pod) -> None:
        """Stop the container for good and remove the pod."""
        instance = pod.current
        if instance is not None and instance.proc is not None:
            if self._stopping:
                _killpg(instance.proc.pid, signal.SIGKILL)
                instance.proc.wait()
            else:
                self._pod_event(pod, "Normal", "Killing", f"Stopping container {pod.container['name']}")
                self._stop_process(pod, instance, pod.grace)
            self._record_exit(pod, instance)
            with self._lock:
                pod.current, pod.last, pod.ended = None, instance, True
                pod.started = pod.ready = False
                pod.waiting = None
                self._refresh(pod)
        with self._lock:
            if self._pods.get((pod.namespace, pod.name)) is pod:
                del self._pods[(pod.namespace, pod.name)]
        if pod.workdir and not self._stopping:
            shutil.rmtree(pod.workdir, ignore_errors=True)

    def _kill_all(self, pod: _Pod) -> None:
        with self._lock:
            procs = [i.proc for i in pod.instances if i.proc is not None]
            if pod.prestop is not None:
                procs.append(pod.prestop)
        for proc in procs:
            _killpg(proc.pid, signal.SIGKILL)
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                pass


def _deletion_rank(pod: _Pod) -> tuple[Any, ...]:
    """The ReplicaSet controller's order of pods to delete (first = first to go): unscheduled,
    not running, not ready, then the newest."""
    return (pod.scheduled, bool(pod.instances) and pod.current is not None, pod.available, -pod.created)


def main(argv: list[str] | None = None) -> int:
    """``python tests/kube_sim.py [--cpu N] [--prestop-cap S]``: run a simulator until SIGTERM or
    SIGINT, printing its URL as the first line of stdout (for benchmarks that want it in a
    process of its own)."""
    import argparse

    p = argparse.ArgumentParser(description=main.__doc__)
    p.add_argument("--cpu", type=float, default=None, help="cores the node offers")
    p.add_argument("--memory", type=int, default=None, help="bytes the node offers")
    p.add_argument("--prestop-cap", type=float, default=0.5, help="seconds a preStop hook may run")
    p.add_argument("--probe-period", type=float, default=0.2, help="upper bound of probe periods (s)")
    args = p.parse_args(argv)
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    with KubeSim(cpu=args.cpu, memory=args.memory, prestop_cap=args.prestop_cap,
                 probe_period=args.probe_period) as sim:
        print(sim.url, flush=True)
        done.wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
