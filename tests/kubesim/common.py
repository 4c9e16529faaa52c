"""The simulator's shared parts: constants, API errors, times, selectors, patches, processes and
the state records (objects, pods, container instances, rollouts)."""
from __future__ import annotations

import collections
import copy
import datetime as dt
import hashlib
import json
import math
import os
import random
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import psutil

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




def _deletion_rank(pod: _Pod) -> tuple[Any, ...]:
    """The ReplicaSet controller's order of pods to delete (first = first to go): unscheduled,
    not running, not ready, then the newest."""
    return (pod.scheduled, bool(pod.instances) and pod.current is not None, pod.available, -pod.created)

