"""The controller: compares desired state (store) with observed replicas (backend) and acts.

One mechanism gives auto-upgrade on a new release, re-roll on a resource edit, scaling, restart
after a crash and recovery after a control-plane restart. A rolling change starts new replicas,
waits until each is ready, adds it to the gateway pool, then drains and stops an old one: never
fewer ready replicas than wanted, and a target that fails to start leaves the old one serving.
"""
from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from ..artifacts import ArtifactStore
from ..backends.base import Backend, ReplicaSpec
from ..core.registry import Registry
from ..gateway.pool import Gateway, Member, Pool
from ..store.db import Deployment, Release, Store, Submission

log = logging.getLogger("liveml.controller")

STARTING, READY, DRAINING, FAILED = "STARTING", "READY", "DRAINING", "FAILED"


@dataclass
class Replica:
    node_id: str
    key: tuple[str, int]  # (release rid, generation)
    release_version: str
    handle: Any
    started: float = field(default_factory=time.monotonic)
    state: str = STARTING
    url: str | None = None
    reason: str = ""
    health_failures: int = 0
    next_check: float = 0.0


@dataclass
class Target:
    key: tuple[str, int]
    failures: int = 0
    reason: str = ""
    retry_at: float = 0.0


@dataclass
class Runtime:
    """What the controller knows of one deployment."""

    rid: str
    namespace: str
    replicas: list[Replica] = field(default_factory=list)
    target: Target | None = None
    was_active: bool = False
    state: str = "STARTING"
    reason: str = ""
    served: str | None = None
    desired: tuple[Any, Any, Any] | None = None  # (deployment, release, submission) as last read
    desired_at: float = 0.0


class Controller:
    """The reconcile loop. ``changed(rid, event)`` asks for a prompt pass over one deployment."""

    def __init__(self, store: Store, registry: Registry, artifacts: ArtifactStore,
                 backend: Backend, gateway: Gateway, *, tick: float = 0.2,
                 startup_timeout: float = 300.0, max_start_failures: int = 3,
                 drain_timeout: float = 30.0, refresh: float = 5.0) -> None:
        self.store = store
        self.registry = registry
        self.artifacts = artifacts
        self.backend = backend
        self.gateway = gateway
        self.tick = tick
        self.startup_timeout = startup_timeout
        self.max_start_failures = max_start_failures
        self.drain_timeout = drain_timeout
        self.refresh = refresh  # re-read desired state at least this often (changes also notify)
        self.runtimes: dict[str, Runtime] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._stopping: set[asyncio.Task] = set()
        self._http: aiohttp.ClientSession | None = None

    # --- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2.0),
                                           headers=self.gateway.headers)
        with self.store.session() as s:
            for row in s.query(Deployment):
                self._runtime(row.rid, row.namespace)
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        for rt in self.runtimes.values():
            for r in list(rt.replicas):
                self._retire(rt, r, drain=False)
        if self._stopping:
            await asyncio.gather(*self._stopping, return_exceptions=True)
        if self._http:
            await self._http.close()

    def changed(self, rid: str, event: str) -> None:
        """Called by the services after a desired-state change."""
        if rid in self.runtimes:
            self.runtimes[rid].desired = None  # read it again on the next pass
        if event == "deleted":
            rt = self.runtimes.pop(rid, None)
            self.gateway.pools.pop(rid, None)
            if rt:
                for r in list(rt.replicas):
                    self._retire(rt, r, drain=True)
        elif event == "disabled":
            pool = self.gateway.pools.get(rid)
            if pool:
                pool.unavailable_reason = "the live deployment is disabled; enable it to query"
        if event == "created":
            with self.store.session() as s:
                row = s.get(Deployment, rid)
                if row:
                    self._runtime(rid, row.namespace)
        self._wake.set()

    def _runtime(self, rid: str, namespace: str) -> Runtime:
        rt = self.runtimes.get(rid)
        if rt is None:
            rt = self.runtimes[rid] = Runtime(rid, namespace)
            self.gateway.pools[rid] = Pool(rid, namespace)
        return rt

    def replicas(self, rid: str) -> list[dict[str, Any]]:
        rt = self.runtimes.get(rid)
        if rt is None:
            return []
        return [{"nodeId": r.node_id, "state": r.state,
                 "health": "HEALTHY" if r.state == READY else
                 ("UNHEALTHY" if r.state == FAILED else "UNKNOWN"),
                 "releaseVersion": r.release_version, "url": r.url or "", "reason": r.reason}
                for r in rt.replicas]

    # --- the loop --------------------------------------------------------------------------
    async def _loop(self) -> None:
        while True:
            try:
                await self.reconcile_all()
            except Exception:  # noqa: BLE001 - the loop must survive any single failure
                log.exception("reconcile pass failed")
            try:
                await asyncio.wait_for(self._wake.wait(), self.tick)
            except TimeoutError:
                pass
            self._wake.clear()

    async def reconcile_all(self) -> None:
        for rid in list(self.runtimes):
            rt = self.runtimes.get(rid)
            if rt is not None:
                await self.reconcile(rt)

    def _desired(self, rid: str) -> tuple[Deployment | None, Release | None, Submission | None]:
        with self.store.session() as s:
            row = s.get(Deployment, rid)
            if row is None:
                return None, None, None
            release = self.registry.tagged_release(s, row.objective_rid, row.environment)
            if release is None and row.served_release_rid:
                release = s.get(Release, row.served_release_rid)  # tag gone: keep serving
            sub = s.get(Submission, release.submission_rid) if release else None
            s.expunge_all()
            return row, release, sub

    async def reconcile(self, rt: Runtime) -> None:
        now = time.monotonic()
        if rt.desired is None or now - rt.desired_at > self.refresh:
            rt.desired, rt.desired_at = self._desired(rt.rid), now
        row, release, sub = rt.desired
        if row is None:
            return
        pool = self.gateway.pools[rt.rid]
        await self._observe(rt, pool)
        now = time.monotonic()
        want = row.runtime_configuration["minReplicas"] if row.enabled else 0
        key = (release.rid, row.generation) if (row.enabled and release) else None
        if key is None or rt.target is None or rt.target.key != key:
            rt.target = Target(key) if key else None

        live = [r for r in rt.replicas if r.state in (STARTING, READY)]
        current = [r for r in live if r.key == key]
        old = [r for r in live if r.key != key]
        ready_current = [r for r in current if r.state == READY]
        target = rt.target
        blocked = target is None or target.failures >= self.max_start_failures or \
            now < target.retry_at

        # start what is missing for the target
        if not blocked and release and sub:
            for _ in range(want - len(current)):
                await self._start(rt, row, release, sub)
        # surplus of the target: not-ready ones first, then the newest ready ones
        surplus = len(current) - want
        for r in sorted(current, key=lambda r: (r.state == READY, r.started))[:max(0, surplus)]:
            self._retire(rt, r)
        # old replicas: stop the ones not serving; keep ready ones only while needed
        for r in [r for r in old if r.state != READY]:
            self._retire(rt, r)
        keep_old = max(0, want - len(ready_current)) if key else 0
        old_ready = sorted([r for r in old if r.state == READY], key=lambda r: r.started)
        for r in old_ready[:max(0, len(old_ready) - keep_old)]:
            self._retire(rt, r)

        self._set_state(rt, row, release, want)

    async def _start(self, rt: Runtime, row: Deployment, release: Release,
                     sub: Submission) -> None:
        node_id = f"{row.api_name[:40]}-{uuid.uuid4().hex[:8]}"
        spec = ReplicaSpec(
            node_id=node_id, deployment_rid=rt.rid, namespace=rt.namespace,
            release_rid=release.rid, release_version=release.version,
            model_uuid=sub.model_uuid,
            artifact_uri=self.artifacts.local_path(sub.artifact_sha256),
            runtime_configuration=dict(row.runtime_configuration), generation=row.generation)
        handle = await self.backend.start(spec)
        rt.replicas.append(Replica(node_id, (release.rid, row.generation), release.version,
                                   handle))
        log.info("deployment %s: started replica %s of release %s", rt.rid, node_id,
                 release.version)

    async def _observe(self, rt: Runtime, pool: Pool) -> None:
        now = time.monotonic()
        checks = []
        for r in list(rt.replicas):
            if r.state not in (STARTING, READY):
                continue
            seen = self.backend.observe(r.handle)
            r.url = seen.url or r.url
            if not seen.alive:
                self._lost(rt, pool, r, seen.exit_reason)
            elif r.state == STARTING and now - r.started > self.startup_timeout:
                self._lost(rt, pool, r, f"not ready within {self.startup_timeout:.0f}s")
            elif r.url and now >= r.next_check:
                checks.append(r)
        if checks:
            results = await asyncio.gather(*(self._ready(r) for r in checks))
            for r, ok in zip(checks, results):
                if r.state == STARTING and ok:
                    r.state = READY
                    pool.add(r.node_id, r.url)
                    if rt.target and r.key == rt.target.key:
                        rt.target.failures = 0
                    log.info("deployment %s: replica %s is ready", rt.rid, r.node_id)
                elif r.state == READY:
                    r.health_failures = 0 if ok else r.health_failures + 1
                    r.next_check = now + 2.0
                    if r.health_failures >= 3:
                        self._lost(rt, pool, r, "failed 3 health checks in a row")

    async def _ready(self, r: Replica) -> bool:
        assert self._http is not None
        try:
            async with self._http.get(f"{r.url}/health/ready") as resp:
                return resp.status == 200
        except (TimeoutError, aiohttp.ClientError):
            return False

    def _lost(self, rt: Runtime, pool: Pool, r: Replica, reason: str) -> None:
        """A replica died or stopped answering: out of the pool, stopped, counted."""
        was_ready = r.state == READY
        self._retire(rt, r, drain=False)
        r.state, r.reason = FAILED, reason
        target = rt.target
        if target and r.key == target.key:
            if not was_ready:
                target.failures += 1
            target.reason = reason
            target.retry_at = time.monotonic() + min(30.0, 0.5 * 2 ** target.failures)
        log.warning("deployment %s: replica %s %s: %s", rt.rid, r.node_id,
                    "crashed" if was_ready else "failed to start", reason)

    def _retire(self, rt: Runtime, r: Replica, drain: bool = True) -> None:
        """Take a replica out of the pool, let its in-flight requests finish, then stop it."""
        pool = self.gateway.pools.get(rt.rid)
        member = pool.remove(r.node_id) if pool else None
        if r in rt.replicas:
            rt.replicas.remove(r)
        r.state = DRAINING

        async def stop() -> None:
            if member is not None and drain:
                await self.gateway.drain(member, self.drain_timeout)
            await self.backend.stop(r.handle, grace=self.drain_timeout)
            if r.url:
                self.gateway.client.forget(r.url)

        task = asyncio.get_running_loop().create_task(stop())
        self._stopping.add(task)
        task.add_done_callback(self._stopping.discard)

    def _set_state(self, rt: Runtime, row: Deployment, release: Release | None, want: int) -> None:
        pool = self.gateway.pools[rt.rid]
        ready = [r for r in rt.replicas if r.state == READY]
        target = rt.target
        ready_current = [r for r in ready if target and r.key == target.key]
        failed = target is not None and target.failures >= self.max_start_failures
        if not row.enabled:
            state, reason = "DISABLED", ""
            pool.unavailable_reason = "the live deployment is disabled; enable it to query"
        elif release is None:
            state, reason = "FAILED", f"no release is tagged {row.environment}"
        elif failed:
            state = "DEGRADED" if ready else "FAILED"
            reason = (f"release {release.version} failed to start "
                      f"{target.failures} times: {target.reason}")
        elif len(ready_current) >= want and len(ready) == len(ready_current):
            state, reason = "ACTIVE", ""
            rt.was_active = True
        elif ready and len(ready) >= want:
            state = "ACTIVE"
            reason = (f"rolling out release {release.version}: {len(ready_current)}/{want} "
                      "new replicas ready")
        elif rt.was_active:
            state = "DEGRADED" if ready else "STARTING"
            reason = f"{len(ready)}/{want} replicas ready" + (
                f"; last failure: {target.reason}" if target and target.reason else "")
        else:
            state = "STARTING"
            reason = f"{len(ready)}/{want} replicas ready" + (
                f"; last failure: {target.reason}" if target and target.reason else "")
        if state != "DISABLED":
            pool.unavailable_reason = (reason or "the deployment has no ready replica") + \
                " (see `liveml status`)"
        served = None
        if ready_current:
            served = target.key[0] if target else None
        elif ready:
            served = ready[0].key[0]
        else:
            served = row.served_release_rid
        if (state, reason, served) != (rt.state, rt.reason, rt.served) or \
                (state, reason, served) != (row.state, row.reason, row.served_release_rid):
            rt.state, rt.reason, rt.served = state, reason, served
            row.state, row.reason, row.served_release_rid = state, reason, served
            with self.store.session() as s:
                db = s.get(Deployment, rt.rid)
                if db is not None:
                    db.state, db.reason, db.served_release_rid = state, reason, served


__all__ = ["Controller", "Member"]
