"""The Jupyter server extension: the control plane hosted by a Jupyter server.

The same handlers as ``liveml server`` are mounted under the server's base URL. Requests may
authenticate with a liveml Bearer token or with Jupyter's own token or login cookie.
"""
from __future__ import annotations

from pathlib import Path

from jupyter_server.base.handlers import JupyterHandler
from jupyter_server.extension.application import ExtensionApp
from tornado.ioloop import IOLoop
from traitlets import Bool, Enum, Float, Int, Type, Unicode

from .backends.base import Backend
from .backends.local import LocalBackend
from .controlplane import ControlPlane, Settings, default_home
from .handlers import routes


def _allow_own_auth(cls: type) -> None:
    """Let Jupyter pass requests through; the liveml mixin authenticates (401 in the envelope)."""
    for method in ("get", "post", "put", "patch", "delete"):
        fn = getattr(cls, method, None)
        if fn is not None:
            setattr(fn, "__allow_unauthenticated", True)


class LiveMLExtension(ExtensionApp):
    name = "liveml_ext"

    home = Unicode("", config=True, help="liveml home (default $LIVEML_HOME or ~/.liveml)")
    database_url = Unicode("", config=True, help="SQLAlchemy URL (default SQLite in home)")
    artifact_url = Unicode("", config=True, help="fsspec URL of the artifact store")
    backend_class = Type(LocalBackend, klass=Backend, config=True,
                         help="Backend class that runs replicas")
    max_body_bytes = Int(50 * 1024 * 1024, config=True, help="inference body limit (bytes)")
    max_json_bytes = Int(4 * 1024 * 1024, config=True,
                         help="management JSON body limit (bytes)")
    max_artifact_bytes = Int(2 * 1024 ** 3, config=True,
                             help="model upload limit (bytes), streamed to disk")
    inference_timeout = Float(60.0, config=True, help="seconds a replica may take to answer")
    pin_cpus = Bool(False, config=True, help="pin each replica to ceil(cpu) cores")
    replica_user = Unicode(None, allow_none=True, config=True,
                           help="user that runs model code when the server runs as root "
                                "(default nobody; \"\" = the server's own user)")
    backend = Enum(["local", "kubernetes"], "local", config=True,
                   help="where replicas run: local processes (backend_class) or Kubernetes")
    kube_namespace = Unicode("", config=True, help="Kubernetes namespace of the replicas' "
                             "objects (default: own namespace in a pod, else the context's)")
    kubeconfig = Unicode("", config=True, help="kubeconfig file (default: in-cluster config, "
                         "else $KUBECONFIG or ~/.kube/config)")
    kube_context = Unicode("", config=True, help="kubeconfig context (default: current)")
    runtime_image = Unicode("", config=True, help="replica image (runtime/Dockerfile)")
    spark_runtime_image = Unicode("", config=True, help="replica image for Spark releases "
                                  "(runtime/Dockerfile with WITH_SPARK=true)")
    replica_token_secret = Unicode("liveml-replica-token", config=True,
                                   help="Secret holding the gateway/replica shared token")
    control_plane_url = Unicode("", config=True, help="URL pods reach this server at, to "
                                "download artifacts when the store is local disk")
    gateway_route = Enum(["pods", "service"], "pods", config=True,
                         help="route queries to ready pod IPs or to each deployment's Service")
    kube_poll_interval = Float(2.0, config=True, help="seconds between reads of the cluster")

    def initialize_settings(self) -> None:
        settings = Settings(home=Path(self.home) if self.home else default_home(),
                            database_url=self.database_url, artifact_url=self.artifact_url,
                            max_body_bytes=self.max_body_bytes,
                            max_json_bytes=self.max_json_bytes,
                            max_artifact_bytes=self.max_artifact_bytes,
                            inference_timeout=self.inference_timeout, pin_cpus=self.pin_cpus,
                            replica_user=self.replica_user,
                            backend=self.backend, kube_namespace=self.kube_namespace,
                            kubeconfig=self.kubeconfig, kube_context=self.kube_context,
                            image=self.runtime_image, spark_image=self.spark_runtime_image,
                            replica_token_secret=self.replica_token_secret,
                            control_plane_url=self.control_plane_url,
                            gateway_route=self.gateway_route,
                            kube_poll_interval=self.kube_poll_interval)
        backend = None  # a LocalBackend is made by the control plane, with its sandbox
        if self.backend == "local" and self.backend_class is not LocalBackend:
            backend = self.backend_class()
        self.cp = ControlPlane(settings, backend=backend)

    def initialize_handlers(self) -> None:
        specs = routes(self.cp, "/", base=JupyterHandler)
        for _pattern, cls, _kw in specs:
            _allow_own_auth(cls)
        # patterns are prefixed with the server's base_url by ExtensionApp
        self.handlers.extend((p.lstrip("/"), cls, kw) for p, cls, kw in specs)
        IOLoop.current().add_callback(self._start_control_plane)

    async def _start_control_plane(self) -> None:
        await self.cp.start()
        url = self.serverapp.connection_url if self.serverapp else ""
        path = self.cp.write_connection_file(url)
        self.log.info("liveml control plane at %s (connection file %s)", url, path)

    async def stop_extension(self) -> None:
        await self.cp.stop()
