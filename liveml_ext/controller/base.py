"""What every controller shares: the loop, desired state from the store, events, recorded state.

A controller keeps one runtime per live deployment, reads what the deployment should run from the
store (``desired``), makes it so on its backend, and records what it sees (state, reason, served
release) in the store and as events. ``Controller`` (reconciler.py) does it replica by replica on
the local backend; ``KubeController`` (kubernetes.py) hands whole deployments to Kubernetes.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ..artifacts import ArtifactStore
from ..backends.base import typed_runtime
from ..core.models import DescribeShadow, RuntimeConfiguration
from ..core.registry import Registry
from ..core.states import DeploymentState
from ..gateway.pool import Gateway, Pool
from ..gateway.shadow import Mirror
from ..store.db import Deployment, Event, Release, Shadow, Store, Submission, now

log = logging.getLogger("liveml.controller")

DISABLED_REASON = "the live deployment is disabled; enable it to query"
MESSAGES = {"created": "Deployment created", "updated": "Deployment edited",
            "disabled": "Deployment disabled", "enabled": "Deployment enabled",
            "tag": "A release tag moved", "shadow": "Shadow requested"}



@dataclass(frozen=True)
class ShadowDesired:
    """A deployment's shadow as the store has it: the release (and its submission) that gets
    copies of a sample of the live queries, on ``replicas`` replicas of its own."""

    release: Release
    submission: Submission
    sample: float
    replicas: int
    timeout: float
    started_at: dt.datetime
    until: dt.datetime | None
    overrides: dict[str, Any] = field(default_factory=dict)  # camelCase runtime configuration

    def runtime(self, deployment: RuntimeConfiguration) -> RuntimeConfiguration:
        """The deployment's runtime configuration with the shadow's own values."""
        if not self.overrides:
            return deployment
        return RuntimeConfiguration.model_validate({**deployment.dump(), **self.overrides})

    @property
    def key(self) -> tuple[str, int]:
        """What the shadow's replicas run: a new start (or release) is a new key."""
        return self.release.rid, int(self.started_at.timestamp() * 1000)

    def expired(self) -> bool:
        return self.until is not None and now() >= self.until


@dataclass(frozen=True)
class Desired:
    """What one deployment should run, as the store has it: its row (read, then detached), the
    release it should serve and that release's submission, and its runtime configuration as the
    model (``runtime``; None when the deployment is gone). Unpacks as (row, release, submission).
    """

    row: Deployment | None = None
    release: Release | None = None
    submission: Submission | None = None
    runtime: RuntimeConfiguration | None = None
    shadow: ShadowDesired | None = None

    def __iter__(self) -> Iterator[Any]:
        return iter((self.row, self.release, self.submission))


@dataclass
class RuntimeBase:
    """What a controller knows of one deployment, whatever the backend."""

    rid: str
    namespace: str
    state: DeploymentState = DeploymentState.STARTING
    reason: str = ""
    served: str | None = None
    desired: Desired | None = None  # (deployment, release, submission) as last read
    desired_at: float = 0.0
    changes: int = 0  # desired-state changes notified so far (a pass that awaited checks it)


class ControllerBase:
    """The loop, the runtimes and the bookkeeping; subclasses define ``reconcile(rt)``."""

    runtime_class: type[RuntimeBase] = RuntimeBase

    def __init__(self, store: Store, registry: Registry, artifacts: ArtifactStore,
                 gateway: Gateway, *, shipper: Any = None, tick: float = 0.2,
                 refresh: float = 5.0) -> None:
        self.store = store
        self.registry = registry
        self.artifacts = artifacts
        self.gateway = gateway
        self.shipper = shipper  # log records of replicas and of this controller
        self.tick = tick
        self.refresh = refresh  # re-read desired state at least this often (changes also notify)
        self.runtimes: dict[str, Any] = {}
        self.mirror: Mirror | None = None  # set by the control plane: where shadows are served
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # --- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
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

    def changed(self, rid: str, event: str) -> None:
        """Called by the services after a desired-state change."""
        rt = self.runtimes.get(rid)
        if rt is not None:
            rt.desired = None  # read it again on the next pass
            rt.changes += 1
        if event == "deleted":
            self.runtimes.pop(rid, None)
            self.gateway.pools.pop(rid, None)
            if rt is not None:
                self.deleted(rt)
            with self.store.session() as s:
                s.query(Event).filter(Event.deployment_rid == rid).delete()
        else:
            if event == "disabled" and rt is not None:
                # queries get 503 from now on, not from the next pass
                self.gateway.pools[rid].unavailable_reason = DISABLED_REASON
                self.disabled(rt)
            if event == "created":
                with self.store.session() as s:
                    row = s.get(Deployment, rid)
                    if row:
                        self._runtime(rid, row.namespace)
            self.event(rid, event, MESSAGES.get(event, event))
        self._wake.set()

    def deleted(self, rt: Any) -> None:
        """The deployment is gone from the store: stop everything it ran."""

    def disabled(self, rt: Any) -> None:
        """The deployment was just disabled: stop serving now."""

    def shadow_status(self, rid: str) -> DescribeShadow | None:
        """The deployment's shadow as the controller runs it (None: no shadow runs here)."""
        return None

    def end_shadow(self, rid: str, why: str) -> None:
        """Remove a deployment's shadow from the store (it ended: ``why``), with an event that
        gives its figures; the next pass stops its replicas."""
        status = self.shadow_status(rid)
        with self.store.session() as s:
            found = s.get(Shadow, rid)
            if found is None:
                return
            version = found.release_version
            s.delete(found)
        figures = f" ({status.mirrored} mirrored, {status.answered} answered, " \
                  f"{status.errors} errors)" if status is not None else ""
        self.event(rid, "shadow", f"Shadow of release {version} stopped: {why}{figures}",
                   release=version)
        rt = self.runtimes.get(rid)
        if rt is not None:
            rt.desired = None
        self._wake.set()

    def event(self, rid: str, kind: str, message: str, level: str = "INFO",
              **fields: Any) -> None:
        """Record one event of a deployment: in the store (`liveml events`) and its logs."""
        log.info("deployment %s: %s", rid, message)
        if self.shipper is not None:
            self.shipper.emit(rid, message, level=level, event=kind, **fields)
        try:
            with self.store.session() as s:
                if s.get(Deployment, rid) is not None:
                    s.add(Event(deployment_rid=rid, at=now(), kind=kind, message=message,
                                fields=fields))
        except Exception:  # noqa: BLE001 - an event must never stop the controller
            log.exception("could not record an event")

    def _runtime(self, rid: str, namespace: str) -> Any:
        rt = self.runtimes.get(rid)
        if rt is None:
            rt = self.runtimes[rid] = self.runtime_class(rid, namespace)
            self.gateway.pools[rid] = Pool(rid, namespace)
        return rt

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

    async def reconcile(self, rt: Any) -> None:
        raise NotImplementedError

    def outdated(self, rt: RuntimeBase, changes: int) -> bool:
        """Whether a pass that read the desired state at ``changes`` must stop after an await:
        the deployment was changed (disabled, edited) or deleted meanwhile. The next pass reads
        it again; acting on the old read would undo what the change just did."""
        return rt.changes != changes or self.runtimes.get(rt.rid) is not rt

    def desired(self, rt: RuntimeBase) -> Desired:
        """The deployment row, the release it should serve and its submission (cached for
        ``refresh`` seconds or until ``changed``)."""
        now_ = time.monotonic()
        if rt.desired is None or now_ - rt.desired_at > self.refresh:
            rt.desired, rt.desired_at = self._read_desired(rt.rid), now_
        return rt.desired

    def _read_desired(self, rid: str) -> Desired:
        with self.store.session() as s:
            row = s.get(Deployment, rid)
            if row is None:
                return Desired()
            release = self.registry.tagged_release(s, row.objective_rid, row.environment)
            if release is None and row.served_release_rid:
                release = s.get(Release, row.served_release_rid)  # tag gone: keep serving
            sub = s.get(Submission, release.submission_rid) if release else None
            shadow = None
            found = s.get(Shadow, rid)
            other = s.get(Release, found.release_rid) if found else None
            other_sub = s.get(Submission, other.submission_rid) if other else None
            if found is not None and other is not None and other_sub is not None:
                shadow = ShadowDesired(other, other_sub, found.sample, found.replicas,
                                       found.timeout, found.started_at, found.until,
                                       dict(found.overrides or {}))
            s.expunge_all()
            return Desired(row, release, sub, typed_runtime(row.runtime_configuration), shadow)

    def record_state(self, rt: RuntimeBase, row: Deployment, state: DeploymentState, reason: str,
                     served: str | None) -> None:
        """Keep state, reason and served release in the runtime and the store; a changed state
        is an event."""
        if (state, reason, served) != (rt.state, rt.reason, rt.served) or \
                (state, reason, served) != (row.state, row.reason, row.served_release_rid):
            if state != rt.state:
                self.event(rt.rid, "state", f"State {rt.state} -> {state}"
                           + (f": {reason}" if reason else ""), state=state)
            rt.state, rt.reason, rt.served = state, reason, served
            row.state, row.reason, row.served_release_rid = state, reason, served
            with self.store.session() as s:
                db = s.get(Deployment, rt.rid)
                if db is not None:
                    db.state, db.reason, db.served_release_rid = state, reason, served

    def desired_count(self, rt: RuntimeBase, want: int) -> int:
        """The replica count the controller wants (``want``, 0: not chosen yet), within the
        deployment's bounds as the store has them now (the controller may not have acted on an
        edit yet); 0 when disabled."""
        desired = self.desired(rt)
        if desired.row is None or desired.runtime is None:
            return want
        if not desired.row.enabled:
            return 0
        low, high = desired.runtime.min_replicas, desired.runtime.max_replicas
        return min(max(want or low, low), high)

    @staticmethod
    def unavailable(pool: Pool, state: DeploymentState, reason: str) -> None:
        """Why queries get 503 while the pool is empty."""
        pool.unavailable_reason = DISABLED_REASON if state == DeploymentState.DISABLED else (
            f"the deployment has no ready replica ({state}: {reason}); see `liveml status`")
