"""The control plane: wires the store, registry, deployments, submissions, tokens, controller
and gateway into one object.

Plain Python on asyncio: the standalone server and the Jupyter extension both build one
``ControlPlane`` and mount the same handlers on it.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import os
import secrets
from pathlib import Path
from typing import TYPE_CHECKING, Any

from liveml_runtime.process import undumpable

from .artifacts import ArtifactStore
from .backends.base import Backend
from .backends.local import LocalBackend
from .capture import PAIR_SCHEMA, Capture, HistoryStore, query_id, sampled
from .controller.reconciler import Controller

if TYPE_CHECKING:
    from .controller.kubernetes import KubeController
from .core.auth import PREFIX, Tokens
from .core.deployments import Deployments
from .core.profiles import ProfileCatalog
from .core.registry import Registry
from .core.shadows import Shadows
from .core.submissions import Submissions
from .gateway.pool import Gateway
from .gateway.shadow import Mirror
from .observability.logstore import LogStore
from .observability.metrics import MetricsStore, RequestStats, Sampler
from .observability.shipper import LogShipper
from .sandbox import Sandbox
from .settings import Settings
from .store.db import Store
from .store.home import private_dir, secure_home, write_private
from .store.lease import Leadership
from .store.lock import HomeLock


class ControlPlane:
    """Everything behind the REST API; ``start()`` begins reconciling, ``stop()`` ends it."""

    def __init__(self, settings: Settings | None = None, backend: Backend | None = None,
                 profiles: ProfileCatalog | None = None, cluster: Any = None) -> None:
        """``backend`` runs replicas one by one (default: local processes); with
        ``settings.backend == "kubernetes"`` a ``KubernetesCluster`` (``cluster``, else one from
        the kubeconfig or the pod's service account) runs whole deployments instead."""
        self.settings = s = settings or Settings()
        self.lock = HomeLock(secure_home(s.home))  # one control plane per home, a private one
        self.lock.acquire()
        try:
            self._build(s, backend, profiles, cluster)
        except BaseException:
            self.lock.release()
            raise

    def _build(self, s: Settings, backend: Backend | None, profiles: ProfileCatalog | None,
               cluster: Any) -> None:
        self.store = Store(s.database_url)
        self.leadership = Leadership(self.store, str(s.home), ttl=s.lease_ttl)
        self.artifacts = ArtifactStore(s.artifact_url, s.home / "cache")
        self.tokens = Tokens(self.store)
        self.gateway = Gateway(timeout=s.inference_timeout, max_batch=s.gateway_batch)
        self.sandbox = Sandbox(s.home, user=s.replica_user)  # inspect, and local replicas
        kube = s.backend == "kubernetes"
        self.backend: Backend | None = None if kube else \
            (backend or LocalBackend(s.home, pin_cpus=s.pin_cpus, sandbox=self.sandbox))
        self.backend_name = "kubernetes" if self.backend is None else self.backend.name
        limits: dict[str, Any] = {"max_thread_count": s.max_thread_count,
                  "gpu_types": self.backend.gpu_types() if self.backend else [],
                  "check_gpus": not kube}
        profiles_file = s.profiles_file or (s.home / "profiles.json" if (s.home / "profiles.json")
                                            .exists() else "")
        self.profiles = profiles or (ProfileCatalog.from_file(profiles_file, **limits)
                                     if profiles_file else ProfileCatalog(**limits))
        self.registry = Registry(self.store)
        self.logs = LogStore(s.home / "logs.db",
                             retention=dt.timedelta(days=s.log_retention_days))
        private_dir(s.home / "logs")
        self.shipper = LogShipper(self.logs, s.home / "logs" / "offsets.json")
        self.metrics = MetricsStore(s.home / "metrics.db",
                                    retention=dt.timedelta(days=s.metrics_retention_days))
        self.request_stats = RequestStats()
        self.sampler = Sampler(self.metrics, self.request_stats)
        self._tasks: list[asyncio.Task] = []
        self.controller: Controller | KubeController
        if kube:
            self.controller = self._kube_controller(cluster)
        else:
            assert self.backend is not None
            self.controller = Controller(self.store, self.registry, self.artifacts,
                                         self.backend, self.gateway, shipper=self.shipper,
                                         tick=s.tick, startup_timeout=s.startup_timeout,
                                         drain_timeout=s.drain_timeout,
                                         progress_deadline=s.progress_deadline)
        self.history = HistoryStore(s.home / "history",
                                    retention=dt.timedelta(days=s.capture_retention_days))
        self.comparisons = HistoryStore(s.home / "comparisons", schema=PAIR_SCHEMA,
                                        retention=dt.timedelta(days=s.capture_retention_days))
        self.capture = Capture(self.store, self.history, self.controller,
                               pairs=self.comparisons)
        self.mirror = Mirror(self.gateway, self.capture.keep_pair, sampled, query_id,
                             self.capture.release_of)
        self.controller.mirror = self.mirror
        self.deployments = Deployments(self.store, self.registry, self.profiles,
                                       self.capture.watching(self.controller))
        self.shadows = Shadows(self.store, self.registry, self.deployments, self.controller,
                               supported=not kube)
        self.submissions = Submissions(self.store, self.registry, self.artifacts, self.sandbox)
        self.registry.on_tag = self.deployments.on_tag
        self.admin_token = ""

    def _kube_controller(self, cluster: Any) -> KubeController:
        from .backends.kubernetes import KubernetesCluster
        from .controller.kubernetes import KubeController, KubeSettings

        s = self.settings
        cluster = cluster or KubernetesCluster.from_config(
            s.kube_namespace or None, s.kubeconfig or None, s.kube_context or None)
        settings = KubeSettings(image=s.image, spark_image=s.spark_image,
                                replica_token_secret=s.replica_token_secret,
                                control_plane_url=s.control_plane_url,
                                gateway_route=s.gateway_route, poll_interval=s.kube_poll_interval,
                                startup_timeout=s.startup_timeout,
                                progress_deadline=s.progress_deadline)
        return KubeController(self.store, self.registry, self.artifacts, cluster, self.gateway,
                              settings, shipper=self.shipper, tick=s.tick,
                              state_file=s.home / "logs" / "kubernetes-tails.json")

    async def start(self) -> None:
        """Check the sandbox (its warnings go to the server log), then start reconciling."""
        undumpable()
        await asyncio.get_running_loop().run_in_executor(None, self.sandbox.check)
        await self.leadership.start(self.controller.start, self._lost_lease)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self.capture.start)
        s = self.settings
        self._tasks = [loop.create_task(self._every(s.log_flush_interval, self.shipper.flush)),
                       loop.create_task(self._every(s.metrics_interval, self.sample_metrics)),
                       loop.create_task(self._every(3600.0, self.sweep))]

    @property
    def role(self) -> str:
        """``leader`` (reconciles), ``standby`` (waits for the controller lease) or ``lost``."""
        return self.leadership.role

    async def _lost_lease(self) -> None:
        await self.controller.stop()
        if self.backend is not None:
            await self.backend.shutdown()

    async def _every(self, seconds: float, work: Any) -> None:
        """Run blocking ``work`` on a worker thread every ``seconds`` (observability chores)."""
        loop = asyncio.get_running_loop()
        while True:
            try:
                await loop.run_in_executor(None, work)
            except Exception:  # noqa: BLE001 - a chore must never stop the control plane
                logging.getLogger("liveml").exception("background task failed")
            await asyncio.sleep(seconds)

    def sample_metrics(self) -> None:
        inflight = {(rid, m.node_id): m.inflight for rid, pool in list(self.gateway.pools.items())
                    for m in list(pool.members)}
        self.metrics.append(self.controller.sample(self.sampler, inflight))

    def sweep(self) -> None:
        self.logs.sweep()
        self.metrics.sweep()
        self.history.sweep()
        self.comparisons.sweep()

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await self.controller.stop()
        if self.backend is not None:
            await self.backend.shutdown()
        await self.leadership.stop()
        await self.gateway.close()
        self.sandbox.close()
        await asyncio.get_running_loop().run_in_executor(None, self.shipper.flush)
        await self.mirror.close()
        await asyncio.get_running_loop().run_in_executor(None, self.capture.stop)
        self.logs.close()
        self.metrics.close()
        self.store.close()
        self.lock.release()

    # --- connection file -------------------------------------------------------------------
    def write_connection_file(self, url: str) -> Path:
        """Write ``{url, token}`` (mode 0600) so the CLI and kernels find this control plane."""
        path = self.settings.home / "connection.json"
        token = ""
        if path.exists():
            try:
                token = json.loads(path.read_text()).get("token", "")
            except (OSError, ValueError):
                token = ""
        token = token if token.startswith(PREFIX) else PREFIX + secrets.token_urlsafe(32)
        self.tokens.ensure_admin(token)
        self.admin_token = token
        write_private(path, json.dumps({"url": url, "token": token, "pid": os.getpid()}))
        self.lock.record_url(url)
        self.leadership.url = url
        return path
