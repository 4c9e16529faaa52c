"""The controller: compares desired state (store) with observed replicas (backend) and acts.

One mechanism gives auto-upgrade on a new release, re-roll on a resource edit, scaling, restart
after a crash and recovery after a control-plane restart. A rolling change starts one new replica
at a time (``max_surge``), waits until it is ready, adds it to the gateway pool, then drains and
stops an old one: never fewer ready replicas than wanted. A target whose replicas fail to start
(or that does not finish within ``progress_deadline``) takes no traffic and leaves the old replicas
serving; the deployment is DEGRADED with the reason until a new target replaces it.
"""
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import aiohttp

from ..artifacts import ArtifactStore
from ..backends.base import Backend, NoCapacity, ReplicaSpec
from ..core import models as m
from ..core.deployments import ObservedStatus
from ..core.errors import SidePoolFailed
from ..core.models import RuntimeConfiguration
from ..core.registry import Registry
from ..core.states import DeploymentState, ReplicaState, RolloutState, deployment_state, replica_health
from ..gateway.pool import Gateway, Pool
from ..gateway.shadow import ShadowStats, ShadowTarget, percentile
from ..store.db import Deployment, Release, Store, Submission
from .base import ControllerBase, Desired, RuntimeBase

if TYPE_CHECKING:
    from ..observability.metrics import MetricRow, Sampler

log = logging.getLogger("liveml.controller")

STARTING, READY, DRAINING, FAILED = (ReplicaState.STARTING, ReplicaState.READY,
                                     ReplicaState.DRAINING, ReplicaState.FAILED)


@dataclass
class Replica:
    node_id: str
    key: tuple[str, int]  # (release rid, generation)
    release_version: str
    handle: Any
    started: float = field(default_factory=time.monotonic)
    state: ReplicaState = STARTING
    url: str | None = None
    reason: str = ""
    health_failures: int = 0
    next_check: float = 0.0
    ready_at: float = 0.0
    token: str = ""  # what the gateway presents to this replica


@dataclass
class Target:
    """The (release, generation) the deployment should run, and how rolling it out goes."""

    key: tuple[str, int]
    version: str = ""
    started: float = field(default_factory=time.monotonic)
    failures: int = 0  # replicas of this target that failed before becoming ready
    crashes: list[float] = field(default_factory=list)  # when ready replicas died
    reason: str = ""
    retry_at: float = 0.0
    failed: bool = False  # the rollout gave up (too many failures or past the deadline)
    complete: bool = False
    what: str = "Rollout"  # or "Shadow": what the events call it


@dataclass
class Runtime(RuntimeBase):
    """What the controller knows of one deployment."""

    replicas: list[Replica] = field(default_factory=list)
    target: Target | None = None
    was_active: bool = False
    want: int | None = None  # replica count chosen by the autoscaler
    load: float = 0.0  # smoothed requests in flight per unit of capacity
    above_since: float | None = None
    below_since: float | None = None
    pending_reason: str = ""  # why a replica could not be started (e.g. no GPU free)
    specs: dict[tuple[str, int], ReplicaSpec] = field(default_factory=dict)  # how each key starts
    serving_key: tuple[str, int] | None = None  # the key whose replica was last seen ready
    heal_at: float = 0.0  # when a lost replica of serving_key may be replaced next
    heal_failures: int = 0
    settled: int = 0  # the replica count last all ready and current (scaling up from it is fine)
    shadow: Runtime | None = None  # the replicas of its shadow release, if it has one
    side: list[Runtime] = field(default_factory=list)  # short-lived pools (replays)
    pool: Pool | None = None  # a shadow's or a replay's own pool (a deployment's is the gateway's)
    owner: Runtime | None = None  # a shadow's or a replay's deployment


class Controller(ControllerBase):
    """The reconcile loop. ``changed(rid, event)`` asks for a prompt pass over one deployment."""

    runtime_class = Runtime

    def __init__(self, store: Store, registry: Registry, artifacts: ArtifactStore,
                 backend: Backend, gateway: Gateway, *, shipper: Any = None, tick: float = 0.2,
                 startup_timeout: float = 300.0, max_start_failures: int = 3,
                 drain_timeout: float = 30.0, refresh: float = 5.0,
                 progress_deadline: float = 600.0, max_surge: int = 1,
                 crash_window: float = 300.0) -> None:
        super().__init__(store, registry, artifacts, gateway, shipper=shipper, tick=tick,
                         refresh=refresh)
        self.backend = backend
        self.startup_timeout = startup_timeout
        self.max_start_failures = max_start_failures
        self.drain_timeout = drain_timeout
        self.progress_deadline = progress_deadline
        self.max_surge = max_surge
        self.crash_window = crash_window
        self.runtimes: dict[str, Runtime] = {}
        self._stopping: set[asyncio.Task[None]] = set()
        self._http: aiohttp.ClientSession | None = None

    # --- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2.0),
                                           headers=self.gateway.headers)
        await super().start()

    async def stop(self) -> None:
        await super().stop()
        for rt in self.runtimes.values():
            for srt in [rt.shadow] if rt.shadow is not None else []:
                for r in list(srt.replicas):
                    self._retire(srt, r, drain=False)
            for r in list(rt.replicas):
                self._retire(rt, r, drain=False)
        if self._stopping:
            await asyncio.gather(*self._stopping, return_exceptions=True)
        if self._http:
            await self._http.close()

    def deleted(self, rt: Runtime) -> None:
        self._stop_shadow(rt)
        for r in list(rt.replicas):
            self._retire(rt, r, drain=True)

    def disabled(self, rt: Runtime) -> None:
        self._stop_shadow(rt)
        for r in list(rt.replicas):
            self._retire(rt, r, drain=True)

    def sample(self, sampler: Sampler, inflight: dict[tuple[str, str], int]) -> list[MetricRow]:
        """Metric rows: this host, each replica's process tree, the gateway's requests."""
        replicas = [(rid, r.node_id, self.backend.pid(r.handle))
                    for rid, rt in list(self.runtimes.items()) for r in list(rt.replicas)]
        return sampler.rows(replicas, inflight)

    def replicas(self, rid: str) -> list[m.ReplicaStatus]:
        rt = self.runtimes.get(rid)
        if rt is None:
            return []
        return [m.ReplicaStatus(node_id=r.node_id, state=r.state, health=replica_health(r.state),
                                release_version=r.release_version, url=r.url or "",
                                reason=r.reason)
                for r in rt.replicas]

    def observed(self, rid: str) -> ObservedStatus:
        """Live status beyond the store: replicas, rollout progress and autoscaling."""
        rt = self.runtimes.get(rid)
        if rt is None:
            return ObservedStatus()
        t = rt.target
        rollout = None
        if t is not None:
            updated = sum(1 for r in rt.replicas if r.key == t.key and r.state == READY)
            rollout = m.RolloutStatus(
                release_version=t.version, generation=t.key[1],
                state=RolloutState.FAILED if t.failed else
                (RolloutState.COMPLETE if t.complete else RolloutState.PROGRESSING),
                updated_replicas=updated, desired_replicas=rt.want or 0, failures=t.failures,
                reason=t.reason)
        return ObservedStatus(replicas=tuple(self.replicas(rid)), rollout=rollout,
                              desired_replicas=self.desired_count(rt, rt.want or 0),
                              load=round(rt.load, 3), shadow=self.shadow_status(rid))

    async def reconcile(self, rt: Runtime) -> None:
        changes = rt.changes
        desired = self.desired(rt)
        row, release, sub = desired.row, desired.release, desired.submission
        if row is None or desired.runtime is None:
            return
        pool = self.gateway.pools[rt.rid]
        await self._observe(rt, pool)
        if self.outdated(rt, changes):
            return
        now_ = time.monotonic()
        want = self._autoscale(rt, desired.runtime, pool, now_) if row.enabled else 0
        key = (release.rid, row.generation) if (row.enabled and release) else None
        if key is None or release is None:
            rt.target = None
        elif rt.target is None or rt.target.key != key:
            if rt.target is not None:
                self.event(rt.rid, "rollout", f"Rolling out release {release.version} "
                           f"(generation {row.generation})", release=release.version)
            rt.target = Target(key, version=release.version)
        target = rt.target

        live = [r for r in rt.replicas if r.state in (STARTING, READY)]
        current = [r for r in live if r.key == key]
        old = [r for r in live if r.key != key]
        ready_current = [r for r in current if r.state == READY]
        old_ready = sorted([r for r in old if r.state == READY], key=lambda r: r.started)

        if target is not None and not target.failed and not target.complete and old_ready and \
                now_ - target.started > self.progress_deadline:
            self._fail_target(rt, target, f"the rollout did not finish within "
                              f"{self.progress_deadline:.0f}s" +
                              (f": {target.reason}" if target.reason else ""))
        blocked = target is None or target.failed or now_ < target.retry_at

        # start what is missing for the target, at most max_surge above the wanted count
        rt.pending_reason = ""
        if not blocked and release and sub:
            room = want + self.max_surge - len(current) - len(old_ready) if old_ready else want
            for _ in range(max(0, min(want - len(current), room))):
                if not await self._start(rt, desired) or self.outdated(rt, changes):
                    break
            if self.outdated(rt, changes):
                return  # what was started is the next pass's to keep or retire
        # a failed target's starting replicas take no traffic: stop them
        if target is not None and target.failed:
            for r in [r for r in current if r.state == STARTING]:
                self._retire(rt, r)
            await self._heal_serving(rt, row.api_name, want, key)
            if self.outdated(rt, changes):
                return
        # surplus of the target: not-ready ones first, then the newest ready ones
        current = [r for r in rt.replicas if r.key == key and r.state in (STARTING, READY)]
        surplus = len(current) - want
        for r in sorted(current, key=lambda r: (r.state == READY, r.started))[:max(0, surplus)]:
            self._retire(rt, r)
        # old replicas: stop the ones not serving (but not the replacements of the version that
        # serves while the rollout is stopped); keep ready ones only while needed
        healing = target is not None and target.failed
        for r in [r for r in old if r.state != READY and not (healing and r.key == rt.serving_key)]:
            self._retire(rt, r)
        keep_old = max(0, want - len(ready_current)) if key else 0
        for r in old_ready[:max(0, len(old_ready) - keep_old)]:
            self._retire(rt, r)
        if target is not None and not target.complete and not target.failed and \
                len(ready_current) >= want and not any(r.key != key for r in rt.replicas):
            target.complete = True
            if target.started < now_ - 0.001 and rt.was_active:
                self.event(rt.rid, "rollout", f"Release {target.version} rolled out to "
                           f"{len(ready_current)} replica(s)", release=target.version)

        keys = {r.key for r in rt.replicas} | {key, rt.serving_key}
        for stale in [k for k in rt.specs if k not in keys]:
            del rt.specs[stale]
        self._set_state(rt, row, release, want)
        await self._reconcile_shadow(rt, desired, changes)

    # --- the shadow ------------------------------------------------------------------------
    async def _reconcile_shadow(self, rt: Runtime, desired: Desired, changes: int) -> None:
        """Run the shadow's replicas in a pool of their own, and tell the mirror about them."""
        row, shadow, config = desired.row, desired.shadow, desired.runtime
        assert row is not None and config is not None
        if shadow is not None:
            why = "its duration is over" if shadow.expired() else \
                "the deployment was disabled" if not row.enabled else \
                f"release {shadow.release.version} now serves the deployment" \
                if desired.release is not None and desired.release.rid == shadow.release.rid \
                else ""
            if why:
                self.end_shadow(rt.rid, why)
                rt.desired = None
                shadow = None
        if shadow is None or self.mirror is None:
            self._stop_shadow(rt)
            return
        srt = rt.shadow
        if srt is None or srt.target is None or srt.target.key != shadow.key:
            self._stop_shadow(rt)
            srt = rt.shadow = Runtime(rt.rid, rt.namespace, pool=Pool(rt.rid, rt.namespace),
                                      owner=rt)
            srt.target = Target(shadow.key, version=shadow.release.version, what="Shadow")
            self.event(rt.rid, "shadow", f"Shadow of release {shadow.release.version} starting "
                       f"({shadow.replicas} replica(s), {shadow.sample:.0%} of the queries)",
                       release=shadow.release.version)
        assert srt.pool is not None and srt.target is not None
        target = self.mirror.targets.get(rt.rid)
        if target is None or target.pool is not srt.pool:
            target = self.mirror.targets[rt.rid] = ShadowTarget(
                rt.rid, shadow.release.version, shadow.sample, shadow.timeout, srt.pool)
        target.sample, target.timeout = shadow.sample, shadow.timeout
        runtime = shadow.runtime(config)  # the deployment's, with the shadow's overrides
        target.threads = runtime.thread_count
        await self._observe(srt, srt.pool)
        if self.outdated(rt, changes) or rt.shadow is not srt:
            return
        live = [r for r in srt.replicas if r.state in (STARTING, READY)]
        if not srt.target.failed and time.monotonic() >= srt.target.retry_at:
            spec = self._spec(rt, row, shadow.release, shadow.submission, runtime)
            for _ in range(max(0, shadow.replicas - len(live))):
                if not await self._start_spec(srt, f"{row.api_name[:33]}-shadow", spec):
                    break
        for r in sorted(live, key=lambda r: (r.state == READY, r.started))[
                :max(0, len(live) - shadow.replicas)]:
            self._retire(srt, r)

    @contextlib.asynccontextmanager
    async def side_pool(self, rid: str, release: Release, sub: Submission, replicas: int = 1,
                        what: str = "Replay") -> AsyncIterator[Pool]:
        """A short-lived pool of ``release`` for deployment ``rid`` (a replay), with the
        deployment's runtime configuration, never the serving pool: started, ready, yielded,
        then stopped. Raises ``SidePoolFailed`` when no replica becomes ready."""
        rt = self.runtimes.get(rid)
        desired = self.desired(rt) if rt is not None else Desired()
        row, config = desired.row, desired.runtime
        if rt is None or row is None or config is None:
            raise SidePoolFailed(f"no live deployment {rid!r}", deploymentRid=rid)
        srt = Runtime(rid, rt.namespace, pool=Pool(rid, rt.namespace), owner=rt)
        srt.target = Target((release.rid, -1), version=release.version, what=what)
        rt.side.append(srt)
        assert srt.pool is not None
        try:
            spec = self._spec(rt, row, release, sub, config)
            for _ in range(replicas):
                await self._start_spec(srt, f"{row.api_name[:33]}-{what.lower()}", spec)
            deadline = time.monotonic() + self.startup_timeout
            while len(srt.pool.members) < replicas:
                live = [r for r in srt.replicas if r.state in (STARTING, READY)]
                if srt.target.failed or not live or time.monotonic() > deadline:
                    raise SidePoolFailed(
                        f"no replica of release {release.version} became ready: "
                        f"{srt.target.reason or 'not within the startup timeout'}; see "
                        "`liveml events` and `liveml logs`", release=release.version)
                await self._observe(srt, srt.pool)
                await asyncio.sleep(0.1)
            yield srt.pool
        finally:
            if srt in rt.side:
                rt.side.remove(srt)
            for r in list(srt.replicas):
                self._retire(srt, r, drain=True)

    def _stop_shadow(self, rt: Runtime) -> None:
        srt, rt.shadow = rt.shadow, None
        if self.mirror is not None:
            self.mirror.targets.pop(rt.rid, None)
        if srt is not None:
            for r in list(srt.replicas):
                self._retire(srt, r, drain=True)

    def shadow_status(self, rid: str) -> m.DescribeShadow | None:
        rt = self.runtimes.get(rid)
        srt = rt.shadow if rt is not None else None
        desired = rt.desired.shadow if rt is not None and rt.desired is not None else None
        if rt is None or srt is None or srt.target is None or desired is None:
            return None
        serving = rt.desired.release if rt.desired is not None else None
        ready = sum(1 for r in srt.replicas if r.state == READY)
        state = "FAILED" if srt.target.failed else ("ACTIVE" if ready else "STARTING")
        target = self.mirror.targets.get(rid) if self.mirror is not None else None
        stats = target.stats if target is not None else ShadowStats()
        return m.DescribeShadow(
            release_rid=desired.release.rid, release_version=desired.release.version,
            serving_version=serving.version if serving is not None else "",
            sample=desired.sample, replicas=desired.replicas,
            overrides=dict(desired.overrides), ready_replicas=ready,
            state=state, reason=srt.target.reason, started_at=desired.started_at,
            until=desired.until, mirrored=stats.mirrored, answered=stats.answered,
            errors=stats.errors, skipped=stats.skipped,
            p50_ms=percentile(stats.latencies, 0.5), p99_ms=percentile(stats.latencies, 0.99),
            live_p50_ms=percentile(stats.live_latencies, 0.5),
            live_p99_ms=percentile(stats.live_latencies, 0.99))

    def _autoscale(self, rt: Runtime, config: RuntimeConfiguration, pool: Pool, now_: float) -> int:
        """Replicas wanted now: minReplicas, or more under load, up to maxReplicas."""
        low, high = config.min_replicas, config.max_replicas
        want = low if rt.want is None else min(max(rt.want, low), high)
        if low == high:
            rt.want = want
            return want
        ready = max(1, len(pool.members))
        capacity = ready * config.thread_count
        rt.load = 0.7 * rt.load + 0.3 * (pool.queries / capacity)
        threshold = config.scale_up_load_threshold
        if rt.load > threshold:
            rt.below_since = None
            rt.above_since = rt.above_since or now_
            if want < high and now_ - rt.above_since >= config.scale_up_delay:
                want += 1
                rt.above_since = None
                self.event(rt.rid, "scale", f"Scaled up to {want} replicas (load "
                           f"{rt.load:.2f} > {threshold})", replicas=want, load=rt.load)
        elif rt.load < threshold / 2:
            rt.above_since = None
            rt.below_since = rt.below_since or now_
            if want > low and now_ - rt.below_since >= config.scale_down_delay:
                want -= 1
                rt.below_since = None
                self.event(rt.rid, "scale", f"Scaled down to {want} replicas (load "
                           f"{rt.load:.2f} < {threshold / 2:.2f})", replicas=want, load=rt.load)
        else:
            rt.above_since = rt.below_since = None
        rt.want = want
        return want

    async def _start(self, rt: Runtime, desired: Desired) -> bool:
        row, release, sub, config = desired.row, desired.release, desired.submission, \
            desired.runtime
        assert row is not None and release is not None and sub is not None and config is not None
        return await self._start_spec(rt, row.api_name, self._spec(rt, row, release, sub, config))

    def _spec(self, rt: Runtime, row: Deployment, release: Release, sub: Submission,
              config: RuntimeConfiguration) -> ReplicaSpec:
        """How a replica of ``release`` of the deployment starts (its node id and token are
        each replica's own: ``_start_spec``)."""
        return ReplicaSpec(
            node_id="", deployment_rid=rt.rid, namespace=rt.namespace,
            release_rid=release.rid, release_version=release.version,
            model_uuid=sub.model_uuid,
            artifact_uri=self.artifacts.local_path(sub.artifact_sha256),
            runtime_configuration=config, generation=row.generation,
            env=dict(config.env), requirements=dict(sub.requirements or {}),
            input_example=(sub.api or {}).get("inputExample"),
            artifact_sha256=sub.artifact_sha256)

    async def _start_spec(self, rt: Runtime, api_name: str, template: ReplicaSpec) -> bool:
        """Start one replica like ``template`` under a new node id."""
        node_id = f"{api_name[:40]}-{uuid.uuid4().hex[:8]}"
        spec = dataclasses.replace(template, node_id=node_id, token=self.gateway.credentials.issue(
            node_id, template.artifact_sha256))
        key = (spec.release_rid, spec.generation)
        rt.specs[key] = template
        try:
            handle = await self.backend.start(spec)
        except NoCapacity as exc:
            rt.pending_reason = str(exc)
            return False
        replica = Replica(node_id, key, spec.release_version, handle, token=spec.token)
        rt.replicas.append(replica)
        path = self.backend.log_path(handle)
        if path and self.shipper is not None:
            self.shipper.watch(path, {"node_id": node_id, "deployment_rid": rt.rid,
                                      "release": spec.release_version})
        if self.runtimes.get(rt.rid) is not (rt.owner or rt) or \
                (rt.owner is not None and rt.owner.shadow is not rt and rt not in rt.owner.side):
            # deleted (or the shadow stopped) while it started: nothing would stop it
            self._retire(rt, replica, drain=False)
            return False
        log.info("deployment %s: started replica %s of release %s", rt.rid, node_id,
                 spec.release_version)
        return True

    async def _heal_serving(self, rt: Runtime, api_name: str, want: int, key: Any) -> None:
        """While the target's rollout has failed, the version still serving keeps its count: a
        lost replica of it is replaced with the configuration it was started with."""
        serving = rt.serving_key
        if serving is None or serving == key or serving not in rt.specs or \
                time.monotonic() < rt.heal_at:
            return
        live = [r for r in rt.replicas if r.key == serving and r.state in (STARTING, READY)]
        ready_target = [r for r in rt.replicas if r.key == key and r.state == READY]
        for _ in range(max(0, want - len(live) - len(ready_target))):
            if not await self._start_spec(rt, api_name, rt.specs[serving]):
                break
            self.event(rt.rid, "replica", "Replacing a lost replica of the serving version "
                       f"(release {rt.specs[serving].release_version}, generation {serving[1]}) "
                       "while the rollout is stopped")

    async def _observe(self, rt: Runtime, pool: Pool) -> None:
        now_ = time.monotonic()
        checks = []
        for r in list(rt.replicas):
            if r.state not in (STARTING, READY):
                continue
            seen = self.backend.observe(r.handle)
            r.url = seen.url or r.url
            if not seen.alive:
                self._lost(rt, r, seen.exit_reason)
            elif r.state == STARTING and now_ - r.started > self.startup_timeout:
                self._lost(rt, r, f"not ready within {self.startup_timeout:.0f}s")
            elif r.url and now_ >= r.next_check:
                checks.append(r)
        if checks:
            results = await asyncio.gather(*(self._ready(r) for r in checks))
            for r, ok in zip(checks, results):
                if r.state not in (STARTING, READY) or r not in rt.replicas:
                    continue
                if r.state == STARTING and ok and r.url:
                    # a replica over its limits never takes traffic, however short the window
                    # between two of the backend's periodic checks
                    seen = self.backend.observe(r.handle, fresh=True)
                    if not seen.alive:
                        self._lost(rt, r, seen.exit_reason)
                        continue
                    r.state, r.ready_at = READY, time.monotonic()
                    rt.serving_key = r.key
                    if rt.target is None or r.key != rt.target.key:
                        rt.heal_failures = 0  # a replacement of the serving version made it
                    r.next_check = r.ready_at + 2.0
                    spec = rt.specs.get(r.key)
                    pool.add(r.node_id, r.url, r.token, depth=spec.runtime_configuration
                             .thread_count if spec else 1)
                    self.event(rt.rid, "replica", f"Replica {r.node_id} is ready "
                               f"(release {r.release_version})", nodeId=r.node_id)
                elif r.state == READY:
                    r.health_failures = 0 if ok else r.health_failures + 1
                    r.next_check = now_ + 2.0
                    if r.health_failures >= 3:
                        self._lost(rt, r, "failed 3 health checks in a row")

    async def _ready(self, r: Replica) -> bool:
        assert self._http is not None
        try:
            async with self._http.get(f"{r.url}/health/ready") as resp:
                return resp.status == 200
        except (aiohttp.ClientError, TimeoutError):
            return False

    def _lost(self, rt: Runtime, r: Replica, reason: str) -> None:
        """A replica died or stopped answering: out of the pool, stopped, counted, backed off."""
        was_ready = r.state == READY
        self._retire(rt, r, drain=False)
        r.state, r.reason = FAILED, reason
        target = rt.target
        verb = "crashed" if was_ready else "failed to start"
        self.event(rt.rid, "replica", f"Replica {r.node_id} {verb}: {reason}", level="ERROR",
                   nodeId=r.node_id, reason=reason)
        now_ = time.monotonic()
        if target is None or r.key != target.key:
            if r.key == rt.serving_key:  # replaced by _heal_serving, with back-off
                rt.heal_failures += 1
                rt.heal_at = now_ + min(60.0, 0.5 * 2 ** rt.heal_failures)
            return
        target.reason = f"replica {r.node_id} {verb}: {reason}"
        if was_ready:
            target.crashes = [t for t in target.crashes if now_ - t < self.crash_window] + [now_]
            delay = 0.0 if len(target.crashes) <= 1 else min(60.0, 2.0 ** len(target.crashes))
        else:
            target.failures += 1
            delay = min(60.0, 0.5 * 2 ** target.failures)
            if target.failures >= self.max_start_failures:
                self._fail_target(rt, target, f"{target.failures} replicas failed to start; "
                                  f"last: {reason}")
        target.retry_at = now_ + delay

    def _fail_target(self, rt: Runtime, target: Target, reason: str) -> None:
        target.failed, target.reason = True, reason
        self.event(rt.rid, "rollout" if target.what == "Rollout" else "shadow",
                   f"{target.what} of release {target.version} stopped: {reason}",
                   level="WARNING", release=target.version)

    def _retire(self, rt: Runtime, r: Replica, drain: bool = True) -> None:
        """Take a replica out of the pool, let its in-flight requests finish, then stop it."""
        pool = rt.pool or self.gateway.pools.get(rt.rid)
        member = pool.remove(r.node_id) if pool else None
        if r in rt.replicas:
            rt.replicas.remove(r)
        r.state = DRAINING

        async def stop() -> None:
            if member is not None and drain:
                await self.gateway.drain(member, self.drain_timeout)
            if r.url:  # close idle keep-alive connections first: the replica's shutdown waits
                self.gateway.client.forget(r.url)  # for open connections otherwise
            await self.backend.stop(r.handle, grace=self.drain_timeout)
            path = self.backend.log_path(r.handle)
            if path and self.shipper is not None:
                self.shipper.finish(path)

        task = asyncio.get_running_loop().create_task(stop())
        self._stopping.add(task)
        task.add_done_callback(self._stopping.discard)

    def _set_state(self, rt: Runtime, row: Deployment, release: Release | None, want: int) -> None:
        pool = self.gateway.pools[rt.rid]
        ready = [r for r in rt.replicas if r.state == ReplicaState.READY]
        target = rt.target
        ready_current = [r for r in ready if target and r.key == target.key]
        crashing = target is not None and len(target.crashes) > 1 and \
            time.monotonic() < target.retry_at
        failure, serving = "", len(ready)
        if release is None:
            failure, serving = f"no release is tagged {row.environment}", 0  # nothing to serve
        elif target is not None and target.failed:
            failure = f"release {target.version}: {target.reason}" + \
                (f"; {len(ready)} replica(s) of the previous version still serve" if ready else "")
        elif crashing and target is not None:
            failure = f"crash loop ({len(target.crashes)} crashes in {self.crash_window:.0f}s): " \
                      f"{target.reason}; backing off before the next restart"
        settled = len(ready_current) >= want and len(ready) == len(ready_current)
        state, reason = deployment_state(
            enabled=row.enabled, ready=serving, want=want, failure=failure,
            problem=f"cannot start more: {rt.pending_reason}" if rt.pending_reason else "",
            progress=f"{len(ready_current)}/{want} replicas of release "
                     f"{target.version if target else '-'} ready",
            rolling=not settled, settled=rt.settled,
            last_failure=f"last failure: {target.reason}" if target and target.reason else "")
        if state == DeploymentState.ACTIVE and settled:
            rt.was_active, rt.settled = True, want
        self.unavailable(pool, state, reason)
        if ready_current:
            served = target.key[0] if target else None
        elif ready:
            served = ready[0].key[0]
        else:
            served = row.served_release_rid
        self.record_state(rt, row, state, reason, served)
