"""The Kubernetes controller: each live deployment is a Kubernetes Deployment that rolls itself.

Where the local controller starts and stops replica processes one by one, this one states what a
deployment should be and lets Kubernetes do it. Per deployment, in a background task:

1. **Apply.** The store's desired state (release, generation, profiles, enabled) becomes a
   ``KubeDeployment``; when it differs from what was last applied (or every ``reapply`` seconds,
   to undo drift) its objects are server-side applied. Kubernetes rolls the pods (maxSurge 1,
   maxUnavailable 0), restarts crashed containers and schedules GPUs.
2. **Observe**, every ``poll_interval``: the Deployment and its pods become the state, reason,
   rollout and served release in the store, and the gateway pool (the ready pods' URLs, or the
   Service). New pod log lines go to the log store with ``tags.node_id`` = the pod name
   (``kube_logs.PodLogs``: polled, a restarted container's previous log too, a terminating
   pod's log followed to its last line).

Once per poll the namespace's Kubernetes events (FailedScheduling, BackOff, Unhealthy, ...)
become liveml events (warnings) or log records (normal ones): ``kube_events.EventRelay``. Metrics come from
``metrics.k8s.io`` (``sample``). A renamed API name renames the objects: the new ones are applied,
the old ones serve until the new ones are ready, then go. Deletes that fail are retried.
"""
from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kubernetes.client.exceptions import ApiException

from .. import __version__
from ..artifacts import ArtifactStore
from ..backends.base import typed_runtime
from ..backends.k8s_manifests import SERVICE_PORT, KubeDeployment, object_name
from ..backends.kubernetes import FATAL_REASONS, KubernetesCluster, summary_state
from ..core import models as m
from ..core.deployments import ObservedStatus
from ..core.registry import Registry
from ..core.states import (
    DeploymentState,
    ReplicaState,
    RolloutState,
    deployment_state,
    replica_health,
)
from ..gateway.pool import Gateway, Pool
from ..store.db import Deployment, Release, Store, Submission
from .base import ControllerBase, RuntimeBase
from .kube_events import EventRelay
from .kube_logs import PodLogs

if TYPE_CHECKING:
    from ..observability.metrics import MetricRow, Sampler

log = logging.getLogger("liveml.controller.kubernetes")


@dataclass
class KubeSettings:
    """How the control plane uses a cluster (``liveml server --backend kubernetes`` flags)."""

    image: str = ""  # the replica image (runtime/Dockerfile); default liveml/runtime:<version>
    spark_image: str = ""  # for Spark releases (WITH_SPARK=true); default <that>-spark
    replica_token_secret: str = "liveml-replica-token"
    control_plane_url: str = ""  # where pods download artifacts when the store is local disk
    gateway_route: str = "pods"  # or "service"
    poll_interval: float = 2.0
    reapply: float = 300.0
    startup_timeout: float = 600.0  # the pods' startup probe allows this long
    progress_deadline: float = 600.0  # the Deployment's progressDeadlineSeconds

    @property
    def replica_image(self) -> str:
        return self.image or f"liveml/runtime:{__version__}"

    @property
    def spark_replica_image(self) -> str:
        return self.spark_image or f"{self.replica_image}-spark"

    def image_for(self, requirements: dict[str, str], adapter: str = "") -> str:
        """The Spark variant for a release that needs Spark (a JDK and pyspark), else the
        plain replica image."""
        return self.spark_replica_image if uses_spark(requirements, adapter) else self.replica_image


def uses_spark(requirements: dict[str, str], adapter: str = "") -> bool:
    """True when a submission needs Spark: it requires pyspark, or its adapter is a Spark one."""
    return "pyspark" in {name.lower() for name in requirements} or "spark" in adapter.lower()


@dataclass
class KubeRuntime(RuntimeBase):
    name: str = ""  # the object name now applied
    old_names: set[str] = field(default_factory=set)  # after an API name change, until removed
    applied: KubeDeployment | None = None
    applied_at: float = 0.0
    apply_error: str = ""
    retry_at: float = 0.0
    backoff: float = 1.0
    observed_at: float = -1e9
    summary: dict[str, Any] | None = None  # KubernetesCluster.observe of ``name``
    summary_spec: KubeDeployment | None = None  # what had been applied when it was read
    old_summaries: dict[str, dict[str, Any]] = field(default_factory=dict)
    rolled_out: tuple[str, int] | None = None  # (release rid, generation) last fully rolled out
    busy: bool = False
    settled: int = 0  # the pod count last all ready (scaling up from it is not DEGRADED)


def describe_error(exc: BaseException) -> str:
    """An API error as one line an operator can act on."""
    if isinstance(exc, ApiException):
        message = exc.reason or ""
        try:
            doc = json.loads(exc.body or "{}")
            message = doc.get("message") or message
        except (TypeError, ValueError):
            pass
        hint = " (the control plane's service account lacks a permission: see " \
               "docs/operators-kubernetes.md, RBAC)" if exc.status == 403 else ""
        return f"the Kubernetes API answered {exc.status}: {message}{hint}"
    return f"the Kubernetes API could not be reached: {exc}"


class KubeController(ControllerBase):
    """Keeps one Kubernetes Deployment (with Service, PDB, HPA) per live deployment."""

    runtime_class = KubeRuntime

    def __init__(self, store: Store, registry: Registry, artifacts: ArtifactStore,
                 cluster: KubernetesCluster, gateway: Gateway, settings: KubeSettings, *,
                 shipper: Any = None, tick: float = 0.2, refresh: float = 5.0,
                 state_file: Path | None = None, workers: int = 8) -> None:
        super().__init__(store, registry, artifacts, gateway, shipper=shipper, tick=tick,
                         refresh=refresh)
        self.cluster = cluster
        self.settings = settings
        self.runtimes: dict[str, KubeRuntime] = {}
        self.pod_logs = PodLogs(cluster, shipper, state_file,
                                lambda name: self._by_name().get(name))
        # late bound: ``self.event`` may be replaced (the tests record events that way)
        self.relay = EventRelay(self._by_name, lambda *a, **kw: self.event(*a, **kw), shipper)
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="liveml-kube")
        self._tasks: set[asyncio.Task[Any]] = set()
        self._pending_deletes: set[str] = set()
        self._known_names: dict[str, set[str]] = {}  # rid -> object names found in the cluster
        self._namespace_at = -1e9
        self._namespace_busy = False
        self._nodes: tuple[float, dict[str, dict[str, float]]] = (-1e9, {})
        self.autoscalers: dict[str, dict[str, Any]] = {}  # object name -> HPA status
        self.token_ready = False
        self.cluster_error = ""
        self._token_retry_at, self._token_backoff = 0.0, 1.0

    # --- lifecycle -------------------------------------------------------------------------
    async def _call(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    async def start(self) -> None:
        if self.artifacts.is_local and not self.settings.control_plane_url:
            log.warning("the artifact store %s is local disk and no --control-plane-url is set: "
                        "only pods sharing this file system can read artifacts. Use an "
                        "--artifact-url pods can read (s3://...) or --control-plane-url",
                        self.artifacts.url)
        await self._ensure_token()
        try:
            for name, rid in (await self._call(self.cluster.managed)).items():
                if rid:
                    self._known_names.setdefault(rid, set()).add(name)
        except Exception as exc:  # noqa: BLE001 - the loop retries what it needs
            log.warning("could not list liveml's Deployments: %s", describe_error(exc))
        await super().start()
        for rid, names in self._known_names.items():
            if rid not in self.runtimes:  # deleted while this control plane was away
                self._pending_deletes.update(names)

    async def _ensure_token(self) -> bool:
        """The key of the replicas' credentials is the Secret's token (created when missing);
        pods get per-deployment credentials made with it (``spec``), never the key."""
        if self.token_ready:
            return True
        if time.monotonic() < self._token_retry_at:
            return False
        try:
            token = await self._call(self.cluster.ensure_secret, self.settings.replica_token_secret)
        except Exception as exc:  # noqa: BLE001 - reported in every deployment's state
            self.cluster_error = describe_error(exc)
            log.error("Kubernetes: %s; retrying in %.0fs", self.cluster_error, self._token_backoff)
            self._token_retry_at = time.monotonic() + self._token_backoff
            self._token_backoff = min(30.0, self._token_backoff * 2)
            return False
        self.gateway.credentials.set_key(token)  # pods outlive a restart: a lasting key
        self.token_ready, self.cluster_error = True, ""
        return True

    async def stop(self) -> None:
        await super().stop()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self.pod_logs.save()
        self._pool.shutdown(wait=False)
        await asyncio.get_running_loop().run_in_executor(None, self.cluster.close)

    def deleted(self, rt: KubeRuntime) -> None:
        names = {rt.name, *rt.old_names, *self._known_names.pop(rt.rid, set())} - {""}
        if not names:  # never applied in this process: the name follows from the row
            row = rt.desired.row if rt.desired else None
            if row is not None:
                names = {object_name(row.api_name, row.namespace)}
        self._pending_deletes.update(names)
        self._namespace_at = -1e9  # delete on the next pass

    def disabled(self, rt: KubeRuntime) -> None:
        pool = self.gateway.pools.get(rt.rid)
        if pool is not None:
            for member in list(pool.members):
                pool.remove(member.node_id)

    # --- the loop --------------------------------------------------------------------------
    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def reconcile_all(self) -> None:
        if not await self._ensure_token():
            for rt in list(self.runtimes.values()):
                row = self.desired(rt).row
                if row is not None:
                    state, reason = deployment_state(enabled=row.enabled, ready=0, want=1,
                                                     failure=self.cluster_error)
                    self.record_state(rt, row, state, reason, rt.served)
            return
        now_ = time.monotonic()
        if not self._namespace_busy and now_ - self._namespace_at >= self.settings.poll_interval:
            self._namespace_busy, self._namespace_at = True, now_
            self._spawn(self._namespace_pass())
        await super().reconcile_all()

    async def reconcile(self, rt: KubeRuntime) -> None:
        if not rt.busy:
            rt.busy = True
            self._spawn(self._sync(rt))

    async def _sync(self, rt: KubeRuntime) -> None:
        try:
            await self._sync_once(rt)
        except Exception:  # noqa: BLE001 - the next pass tries again
            log.exception("deployment %s: sync failed", rt.rid)
        finally:
            rt.busy = False

    async def _sync_once(self, rt: KubeRuntime) -> None:
        changes = rt.changes
        row, release, sub = self.desired(rt)
        if row is None or rt.rid not in self.runtimes:
            return
        now_ = time.monotonic()
        if release is None or sub is None:
            state, reason = deployment_state(enabled=row.enabled, ready=0, want=1,
                                             failure=f"no release is tagged {row.environment}")
            self.record_state(rt, row, state, reason, None)
            return
        spec = self.spec(row, release, sub)
        name = object_name(row.api_name, row.namespace)
        if rt.name and rt.name != name:
            rt.old_names.add(rt.name)
        rt.old_names |= self._known_names.get(rt.rid, set()) - {name}
        rt.old_names.discard(name)
        rt.name = name
        if (spec != rt.applied or now_ - rt.applied_at > self.settings.reapply) \
                and now_ >= rt.retry_at:
            await self._apply(rt, spec)
        if self.outdated(rt, changes):
            return  # changed (e.g. disabled) or deleted meanwhile: the next pass reads it again
        if now_ - rt.observed_at >= self.settings.poll_interval:
            rt.observed_at = now_
            await self._observe(rt)
            if self.outdated(rt, changes):
                rt.observed_at = -1e9  # look again at once, with the new desired state
                return
            self._update(rt, row, release)  # status and pool together: ready means routable
            pods = self._pods(rt)
            if self.shipper is not None and pods:
                await self._call(self.pod_logs.tail, rt.rid, pods)
            if rt.old_names and rt.summary and rt.summary["state"] in (
                    DeploymentState.ACTIVE, DeploymentState.DISABLED):
                self._pending_deletes |= rt.old_names  # the renamed objects serve: drop the old
                self._known_names.pop(rt.rid, None)
                rt.old_names.clear()
                rt.old_summaries.clear()

    async def _apply(self, rt: KubeRuntime, spec: KubeDeployment) -> None:
        before = rt.applied
        try:
            await self._call(self.cluster.apply, spec)
        except Exception as exc:  # noqa: BLE001 - reported in state and events, retried
            error = describe_error(exc)
            if error != rt.apply_error:
                self.event(rt.rid, "kubernetes", f"Could not apply the Kubernetes objects: {error}",
                           level="ERROR")
            rt.apply_error = error
            rt.retry_at = time.monotonic() + rt.backoff
            rt.backoff = min(60.0, rt.backoff * 2)
            return
        if rt.rid not in self.runtimes:  # deleted while the apply was under way: undo it
            self._pending_deletes.add(object_name(spec.api_name, spec.liveml_namespace))
            return
        rt.applied, rt.applied_at, rt.apply_error, rt.backoff = spec, time.monotonic(), "", 1.0
        rt.observed_at = -1e9  # look at once
        if before is not None and (before.release_rid, before.generation, before.enabled) != \
                (spec.release_rid, spec.generation, spec.enabled) and spec.enabled:
            self.event(rt.rid, "rollout", f"Rolling out release {spec.release_version} "
                       f"(generation {spec.generation}) on Kubernetes", release=spec.release_version)

    def spec(self, row: Deployment, release: Release, sub: Submission) -> KubeDeployment:
        """The Kubernetes objects' source for one deployment as the store has it (a Spark model,
        one made of pyspark objects, runs on the Spark image)."""
        requirements = dict(sub.requirements or {})
        spark = uses_spark(requirements, sub.adapter or "")
        return KubeDeployment(
            deployment_rid=row.rid, api_name=row.api_name, liveml_namespace=row.namespace,
            kube_namespace=self.cluster.namespace, release_rid=release.rid,
            release_version=release.version, model_uuid=sub.model_uuid,
            artifact_url=self.artifact_url(sub.artifact_sha256),
            requirements=dict(sub.requirements or {}), generation=row.generation,
            input_example=(sub.api or {}).get("inputExample"),
            runtime=typed_runtime(row.runtime_configuration), spark=spark,
            image=self.settings.spark_replica_image if spark else self.settings.replica_image,
            enabled=row.enabled, replica_token_secret=self.settings.replica_token_secret,
            replica_credential=self.gateway.credentials.issue(row.rid, sub.artifact_sha256),
            gateway_token=self.gateway.credentials.hop(row.rid),
            replica_profile=row.replica_profile, resource_profile=row.resource_profile,
            startup_seconds=max(1, math.ceil(self.settings.startup_timeout)),
            progress_deadline_seconds=max(1, math.ceil(self.settings.progress_deadline)))

    def artifact_url(self, sha256: str) -> str:
        """Where pods read an artifact: the store's own URL when it is remote, else the control
        plane's artifact download (authenticated with the replica token), else the local path
        (pods that share this file system only)."""
        if not self.artifacts.is_local:
            return self.artifacts.uri(sha256)
        if self.settings.control_plane_url:
            return f"{self.settings.control_plane_url.rstrip('/')}/liveml/api/artifacts/{sha256}"
        return self.artifacts.local_path(sha256)

    # --- observing -------------------------------------------------------------------------
    async def _observe(self, rt: KubeRuntime) -> None:
        spec = rt.applied  # what the cluster had been told when it was read
        try:
            summary = await self._call(self.cluster.observe, rt.name)
            olds = {old: await self._call(self.cluster.observe, old) for old in list(rt.old_names)}
            rt.summary, rt.old_summaries, rt.summary_spec = summary, olds, spec
        except Exception as exc:  # noqa: BLE001 - shown as the state's reason
            error = describe_error(exc)
            rt.summary = {"state": DeploymentState.FAILED, "reason": error, "failure": error,
                          "problem": "", "pods": [],
                          "urls": [], "ready": 0, "desired": 0, "rollout": None,
                          "exists": False, "unreachable": True}
            return

    def _pods(self, rt: KubeRuntime) -> list[dict[str, Any]]:
        if rt.summary is None:
            return []
        return [p for s in (rt.summary, *rt.old_summaries.values()) for p in s.get("pods", [])]

    def _update(self, rt: KubeRuntime, row: Deployment, release: Release) -> None:
        summary = rt.summary or {}
        pool = self.gateway.pools[rt.rid]
        pods = self._pods(rt)
        ready = [p for p in pods if p["ready"] and p["url"] and not p["terminating"]]
        if not row.enabled:
            state, reason = deployment_state(enabled=False, ready=0, want=0)
            ready = []
        elif rt.apply_error and not summary.get("exists"):
            state, reason = deployment_state(enabled=True, ready=0, want=1, failure=rt.apply_error)
        elif not summary.get("exists") and not summary.get("unreachable"):
            state = DeploymentState.STARTING
            reason = "waiting for Kubernetes to create the Deployment"
        else:
            state, reason = (summary["state"], summary["reason"]) if summary.get("unreachable") \
                else summary_state(summary, rt.settled)
            if state == DeploymentState.ACTIVE and summary["ready"] >= summary["desired"] > 0:
                rt.settled = summary["desired"]
            if rt.old_summaries and state != DeploymentState.ACTIVE and ready:
                state, reason = DeploymentState.ACTIVE, f"renaming: {reason}"
            if rt.apply_error:
                state = DeploymentState.DEGRADED if ready else DeploymentState.FAILED
                reason = "; ".join(x for x in (rt.apply_error, reason) if x)
        self._route(pool, rt, ready, typed_runtime(row.runtime_configuration).thread_count)
        self.unavailable(pool, state, reason)
        serving = [p["release_rid"] for p in ready if p.get("release_rid")]
        served = release.rid if release.rid in serving else (
            serving[0] if serving else row.served_release_rid)
        key = (rt.applied.release_rid, rt.applied.generation) if rt.applied else None
        current = [p for p in ready if p["current"]]
        if key and key != rt.rolled_out and state == DeploymentState.ACTIVE and \
                not rt.old_summaries and \
                (summary.get("rollout") or {}).get("state") == RolloutState.COMPLETE and \
                len(current) == len(ready):
            if rt.rolled_out is not None or rt.state != DeploymentState.ACTIVE:
                self.event(rt.rid, "rollout", f"Release {release.version} (generation "
                           f"{key[1]}) rolled out to {len(ready)} pod(s)", release=release.version)
            rt.rolled_out = key
        self.record_state(rt, row, state, reason, served)

    def _route(self, pool: Pool, rt: KubeRuntime, ready: list[dict[str, Any]],
               threads: int) -> None:
        """The gateway pool: the ready pods, or the Service while any pod is ready (which
        takes as many calls at a time as the pods behind it, ``threads`` each)."""
        if self.settings.gateway_route == "service":
            wanted = {rt.name: f"http://{rt.name}.{self.cluster.namespace}.svc:{SERVICE_PORT}"} \
                if ready else {}
        else:
            wanted = {p["node_id"]: p["url"] for p in ready}
        for member in list(pool.members):
            if wanted.get(member.node_id) != member.url:
                pool.remove(member.node_id)
                self.gateway.client.forget(member.url)
        for node_id, url in sorted(wanted.items()):
            pool.add(node_id, url, self.gateway.credentials.hop(rt.rid),
                     depth=threads * (len(ready) if node_id == rt.name else 1))

    def replicas(self, rid: str) -> list[m.ReplicaStatus]:
        rt = self.runtimes.get(rid)
        if rt is None:
            return []
        out = []
        for p in self._pods(rt):
            if p["terminating"]:
                state = ReplicaState.DRAINING
            elif p["ready"]:
                state = ReplicaState.READY
            elif p["reason"] in FATAL_REASONS:
                state = ReplicaState.FAILED
            else:
                state = ReplicaState.STARTING
            reason = f"{p['reason']}: {p['message']}" if p["message"] else p["reason"]
            out.append(m.ReplicaStatus(
                node_id=p["node_id"], state=state, health=replica_health(state),
                release_version=p.get("release_version") or "", url=p["url"] or "",
                reason=reason, restarts=p["restarts"]))
        return out

    def observed(self, rid: str) -> ObservedStatus:
        rt = self.runtimes.get(rid)
        if rt is None:
            return ObservedStatus()
        if rt.summary is None:  # not read yet
            return ObservedStatus(desired_replicas=self.desired_count(rt, 0))
        rollout = rt.summary.get("rollout")
        spec = rt.summary_spec  # not rt.applied: a rollout read before an apply is the old one
        return ObservedStatus(
            replicas=tuple(self.replicas(rid)),
            rollout=None if rollout is None or spec is None else m.RolloutStatus(
                release_version=spec.release_version, generation=spec.generation,
                state=rollout["state"], updated_replicas=rollout["updated"],
                desired_replicas=rollout["desired"],
                failures=sum(p["restarts"] for p in rt.summary["pods"]),
                reason=rollout["reason"]),
            desired_replicas=self.desired_count(rt, rt.summary.get("desired", 0)),
            load=self._load(rt))

    def _load(self, rt: KubeRuntime) -> float:
        """An autoscaled deployment's load: its HPA's average CPU utilization (of the request),
        what the HPA compares with the target from ``scaleUpLoadThreshold``."""
        if rt.applied is None or not rt.applied.autoscaled:
            return 0.0
        utilization = (self.autoscalers.get(rt.name) or {}).get("utilization")
        return round(utilization, 3) if utilization is not None else 0.0

    def _by_name(self) -> dict[str, str]:
        """Object name -> deployment RID, for the names deployments' objects have or just had."""
        return {name: rid for rid, rt in list(self.runtimes.items())
                for name in (rt.name, *rt.old_names) if name}

    # --- the namespace: events and deletes -------------------------------------------------
    async def _namespace_pass(self) -> None:
        try:
            for name in list(self._pending_deletes):
                try:
                    await self._call(self.cluster.delete, name)
                    self._pending_deletes.discard(name)
                except Exception as exc:  # noqa: BLE001 - retried next pass
                    log.warning("could not delete the objects of %s: %s", name,
                                describe_error(exc))
            events = await self._call(self.cluster.events)
            self.relay.dispatch(events)
            if any(rt.applied is not None and rt.applied.autoscaled for rt in self.runtimes.values()):
                self.autoscalers = await self._call(self.cluster.autoscalers)
        except Exception as exc:  # noqa: BLE001 - retried next pass
            log.warning("could not read Kubernetes events: %s", describe_error(exc))
        finally:
            self._namespace_busy = False

    # --- metrics ---------------------------------------------------------------------------
    def sample(self, sampler: Sampler, inflight: dict[tuple[str, str], int]) -> list[MetricRow]:
        """Request metrics from the gateway, container metrics from ``metrics.k8s.io`` pods and
        host metrics from its nodes (as % of allocatable). Blocking: a worker thread calls it."""
        rows = sampler.rows([], inflight, host=False)
        now = time.time()
        by_name = self._by_name()
        try:
            for usage in self.cluster.all_pod_metrics():
                rid = by_name.get(usage["instance"])
                if rid:
                    rows.append((now, rid, usage["pod"], "container", "memory_bytes",
                                 float(usage["memory"])))
                    rows.append((now, rid, usage["pod"], "container", "cpu_cores",
                                 float(usage["cpu"])))
            if now - self._nodes[0] > 300:
                self._nodes = (now, self.cluster.nodes())
            capacity = self._nodes[1]
            for usage in self.cluster.node_metrics():
                node = usage["node"]
                alloc = capacity.get(node) or {}
                if alloc.get("cpu"):
                    rows.append((now, "", node, "host", "cpu_percent",
                                 100.0 * usage["cpu"] / alloc["cpu"]))
                if alloc.get("memory"):
                    rows.append((now, "", node, "host", "memory_percent",
                                 100.0 * usage["memory"] / alloc["memory"]))
        except Exception as exc:  # noqa: BLE001 - no metrics-server: requests metrics only
            log.debug("no metrics from metrics.k8s.io: %s", describe_error(exc))
        return rows
