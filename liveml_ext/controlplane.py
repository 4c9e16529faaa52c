"""The control plane: wires the store, registry, deployments, submissions, tokens, controller
and gateway into one object.

Plain Python on asyncio: the standalone server and the Jupyter extension both build one
``ControlPlane`` and mount the same handlers on it.
"""
from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import functools
import json
import logging
import os
import secrets
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .artifacts import ArtifactStore
from .backends.base import Backend
from .backends.local import LocalBackend
from .controller.reconciler import Controller

if TYPE_CHECKING:
    from .controller.kubernetes import KubeController
from .core.auth import PREFIX, Tokens
from .core.deployments import Deployments
from .core.profiles import ProfileCatalog
from .core.registry import Registry
from .core.submissions import Submissions
from .gateway.pool import Gateway
from .observability.logstore import LogStore
from .observability.metrics import MetricsStore, RequestStats, Sampler
from .observability.shipper import LogShipper
from .sandbox import Sandbox, make_undumpable
from .store.db import Store
from .store.home import private_dir, secure_home, write_private
from .store.lease import Leadership
from .store.lock import HomeLock


def default_home() -> Path:
    return Path(os.environ.get("LIVEML_HOME") or Path.home() / ".liveml")


@dataclass(frozen=True)
class Option:
    """One ``Settings`` field as ``liveml server`` (``flags``), the Jupyter extension
    (``trait``) and the environment (``env``) name it; all three take the same values."""

    name: str
    kind: type  # str, int, float or bool (a Path is given as str)
    nullable: bool
    default: Any
    help: str
    flags: tuple[str, ...]
    trait: str
    env: str
    choices: tuple[str, ...] = ()
    kubernetes: bool = False  # applies to the Kubernetes backend only

    def describe(self) -> str:
        """The help text, with the default and the environment variable."""
        shown = "" if "(default" in self.help or self.default in ("", None) else \
            f" (default {self.default})"
        return f"{self.help}{shown}; env {self.env}"

    def parse(self, text: str) -> Any:
        """A value given as text (an environment variable); ``ValueError`` says what fits."""
        if self.kind is bool:
            if text.strip().lower() in ("1", "true", "yes", "on"):
                return True
            if text.strip().lower() in ("", "0", "false", "no", "off"):
                return False
            raise ValueError(f"{self.env}={text!r}: use true or false")
        try:
            return self.kind(text)
        except ValueError:
            raise ValueError(f"{self.env}={text!r}: give a {self.kind.__name__} "
                             f"(like {self.default!r})") from None

    def initial(self, environ: Mapping[str, str] | None = None) -> Any:
        """Its value before a flag or a trait sets it: the environment's, else the default."""
        environ = os.environ if environ is None else environ
        return self.parse(environ[self.env]) if self.env in environ else self.default


def option(default: Any, help: str, *, flags: tuple[str, ...] = (), trait: str = "",
           choices: tuple[str, ...] = (), kubernetes: bool = False) -> Any:
    """A ``Settings`` field declared once: its default, help text and, when they differ from
    the field's name, its extra CLI flags (aliases) and trait name."""
    return field(default=default, metadata={"help": help, "flags": flags, "trait": trait,
                                            "choices": choices, "kubernetes": kubernetes})


@dataclass
class Settings:
    """Where things live and how the control plane behaves; all have embedded defaults.

    Each field is an option of ``liveml server`` (``--max-json-bytes``), a trait of the Jupyter
    extension (``c.LiveMLExtension.max_json_bytes``) and an environment variable
    (``LIVEML_MAX_JSON_BYTES``): ``Settings.options()`` lists them; a flag or a trait wins over
    the environment, which wins over the default."""

    home: Path = option("", "liveml home folder (default $LIVEML_HOME or ~/.liveml)")
    database_url: str = option("", "SQLAlchemy URL, e.g. postgresql://user@host/liveml "
                               "(default SQLite in the home)")
    artifact_url: str = option("", "fsspec URL of the artifact store, e.g. s3://bucket/liveml "
                               "(default <home>/artifacts)")
    max_body_bytes: int = option(50 * 1024 * 1024, "largest inference request body "
                                 "(413 past it)")
    max_json_bytes: int = option(4 * 1024 * 1024, "largest JSON body of a management call "
                                 "(413 past it)")
    max_artifact_bytes: int = option(2 * 1024 ** 3, "largest model upload, streamed to disk "
                                     "(413 past it)")
    inference_timeout: float = option(60.0, "seconds a replica may take to answer a query")
    tick: float = option(0.2, "seconds between passes of the reconcile loop")
    startup_timeout: float = option(300.0, "seconds a replica may take to become ready")
    drain_timeout: float = option(30.0, "seconds a replica being replaced may take to finish "
                                  "its queries")
    progress_deadline: float = option(600.0, "seconds a rollout may take before it is stopped")
    profiles_file: str = option("", "JSON file of replica and resource profiles "
                                "(default <home>/profiles.json when present)",
                                flags=("--profiles",))
    max_thread_count: int = option(16, "largest threadCount a deployment may ask for")
    log_retention_days: float = option(7.0, "days service logs are kept")
    metrics_retention_days: float = option(7.0, "days metric samples are kept")
    metrics_interval: float = option(5.0, "seconds between metric samples")
    log_flush_interval: float = option(0.5, "seconds between moves of replica log files into "
                                       "the log store")
    pin_cpus: bool = option(False, "pin each replica to ceil(cpu) cores (for machines with "
                            "cores to spare)")
    replica_user: str | None = option(None, "user that runs model code (inspection and local "
                                      "replicas) when the server runs as root (default nobody; "
                                      "\"\" = the server's own user)")
    backend: str = option("local", "where replicas run: local processes or a Kubernetes cluster",
                          choices=("local", "kubernetes"))
    kube_namespace: str = option("", "namespace of the replicas' objects (default: the control "
                                 "plane's own namespace in a cluster, else the kubeconfig "
                                 "context's, else default)", kubernetes=True)
    kubeconfig: str = option("", "kubeconfig file (default: in-cluster service account, else "
                             "$KUBECONFIG or ~/.kube/config)", kubernetes=True)
    kube_context: str = option("", "kubeconfig context (default: current)", kubernetes=True)
    image: str = option("", "replica image built from runtime/Dockerfile (default "
                        "liveml/runtime:<liveml version>)", trait="runtime_image", kubernetes=True)
    spark_image: str = option("", "replica image for Spark releases, built with WITH_SPARK=true "
                              "(default: the image tag with -spark appended)",
                              trait="spark_runtime_image", kubernetes=True)
    replica_token_secret: str = option("liveml-replica-token", "Secret (key `token`) shared by "
                                       "the gateway and the replicas; created when missing",
                                       kubernetes=True)
    control_plane_url: str = option("", "URL pods reach this control plane at, to download "
                                    "artifacts when the artifact store is not a URL pods can "
                                    "read (e.g. http://liveml.liveml.svc:8765)", kubernetes=True)
    gateway_route: str = option("pods", "send queries to ready pod IPs (retried across pods) or "
                                "to each deployment's Service", choices=("pods", "service"),
                                kubernetes=True)
    kube_poll_interval: float = option(2.0, "seconds between reads of the cluster's state",
                                       kubernetes=True)
    lease_ttl: float = option(10.0, "seconds the controller lease lasts on a shared database "
                              "(PostgreSQL) before a standby takes over")

    def __post_init__(self) -> None:
        self.home = Path(self.home or default_home()).expanduser().resolve()
        self.database_url = self.database_url or f"sqlite:///{self.home / 'liveml.db'}"
        self.artifact_url = self.artifact_url or str(self.home / "artifacts")
        for o in self.options():
            if o.choices and getattr(self, o.name) not in o.choices:
                raise ValueError(f"unknown {o.name} {getattr(self, o.name)!r}: use "
                                 + " or ".join(o.choices))

    @classmethod
    def options(cls) -> list[Option]:
        """Every option, in declaration order."""
        return list(_options(cls))

    @classmethod
    def load(cls, environ: Mapping[str, str] | None = None, **given: Any) -> Settings:
        """``given`` values, else the ``LIVEML_*`` environment's, else the defaults."""
        return cls(**{o.name: given[o.name] if o.name in given else o.initial(environ)
                      for o in cls.options()})


@functools.cache
def _options(cls: type) -> tuple[Option, ...]:
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        kinds = [k for k in typing.get_args(hints[f.name]) or (hints[f.name],) if k is not
                 type(None)]
        kind = str if kinds[0] is Path else kinds[0]
        flag = "--" + f.name.replace("_", "-")
        out.append(Option(f.name, kind, type(None) in typing.get_args(hints[f.name]), f.default,
                          f.metadata["help"], (flag, *f.metadata["flags"]),
                          f.metadata["trait"] or f.name, f"LIVEML_{f.name.upper()}",
                          f.metadata["choices"], f.metadata["kubernetes"]))
    return tuple(out)


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
        self.gateway = Gateway(timeout=s.inference_timeout)
        self.sandbox = Sandbox(s.home, user=s.replica_user)  # inspect, and local replicas
        kube = s.backend == "kubernetes"
        self.backend: Backend | None = None if kube else \
            (backend or LocalBackend(s.home, pin_cpus=s.pin_cpus, sandbox=self.sandbox))
        self.backend_name = "kubernetes" if kube else self.backend.name  # type: ignore[union-attr]
        limits = {"max_thread_count": s.max_thread_count,
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
        self.deployments = Deployments(self.store, self.registry, self.profiles, self.controller)
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
        make_undumpable()
        await asyncio.get_running_loop().run_in_executor(None, self.sandbox.check)
        await self.leadership.start(self.controller.start, self._lost_lease)
        loop = asyncio.get_running_loop()
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
