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

The code is split by concern: ``kubesim/apiserver.py`` (routing, objects, apply, pods, events,
the node), ``kubesim/controllers.py`` (HPA, Deployments, scheduler), ``kubesim/kubelet.py``
(containers, probes, termination, pod status), ``kubesim/observe.py`` (logs, metrics) and
``kubesim/common.py`` (helpers and state); ``KubeSim`` below combines them.
"""
from __future__ import annotations

import os
import platform
import random
import shutil
import signal
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Any

import kubernetes.client
import psutil
from json_http import JsonHttpServer
from kubesim.apiserver import ApiServer
from kubesim.common import (
    IP_SPACE,
    NODE_NAME,
    _busy_seconds,
    _Object,
    _Pod,
    _Rollout,
    expand,  # noqa: F401 - tests import it from here
    rfc3339,
)
from kubesim.controllers import Controllers
from kubesim.kubelet import Kubelet
from kubesim.observe import Observe


class KubeSim(ApiServer, Observe, Controllers, Kubelet):
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
