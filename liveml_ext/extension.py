"""The Jupyter server extension: the control plane hosted by a Jupyter server.

The same handlers as ``liveml server`` are mounted under the server's base URL. Requests may
authenticate with a liveml Bearer token or with Jupyter's own token or login cookie.
"""
from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from jupyter_server.base.handlers import JupyterHandler
from jupyter_server.extension.application import ExtensionApp
from jupyter_server.utils import url_path_join
from tornado.httputil import HTTPMessageDelegate, HTTPServerRequest
from tornado.ioloop import IOLoop
from tornado.web import Application
from traitlets import Bool, Enum, Float, Int, TraitType, Type, Unicode, default

from .backends.base import Backend
from .backends.local import LocalBackend
from .controlplane import ControlPlane
from .handlers import routes
from .handlers.inference import InferenceFront, InferenceHandler
from .settings import Settings


def _setting_traits() -> dict[str, Any]:
    """A configurable trait per ``Settings`` option, with its help text, its default the
    option's ``LIVEML_*`` environment variable when set (read when the extension starts)."""
    out: dict[str, Any] = {}
    for o in Settings.options():
        kw: dict[str, Any] = {"config": True, "help": o.describe(), "allow_none": o.nullable}
        if o.choices:
            trait: TraitType[Any, Any] = Enum(list(o.choices), o.default, **kw)
        else:
            trait = {bool: Bool, int: Int, float: Float, str: Unicode}[o.kind](o.default, **kw)
        out[o.trait] = trait
        out[f"_default_{o.trait}"] = default(o.trait)(lambda self, o=o: o.initial())
    return out


def _allow_own_auth(cls: type) -> None:
    """Let Jupyter pass requests through; the liveml mixin authenticates (401 in the envelope)."""
    for method in ("get", "post", "put", "patch", "delete"):
        fn = getattr(cls, method, None)
        if fn is not None:
            setattr(fn, "__allow_unauthenticated", True)


def _delegate(webapp: Application, cls: type, kwargs: dict[str, Any],
              request: HTTPServerRequest, path_args: list[Any]) -> HTTPMessageDelegate:
    """The handler ``cls``'s delegate for one request (``InferenceFront``'s fallback)."""
    return webapp.get_handler_delegate(request, cls, kwargs, path_args)


class LiveMLExtension(ExtensionApp):
    name = "liveml_ext"

    backend_class = Type(LocalBackend, klass=Backend, config=True,
                         help="Backend class that runs replicas (with backend = local)")
    locals().update(_setting_traits())  # one trait per Settings option (runtime_image, ...)
    if TYPE_CHECKING:  # the traits the code below reads
        backend: str

    def liveml_settings(self) -> Settings:
        """The ``Settings`` its traits make (each one's default: the ``LIVEML_*`` variable's;
        not ``settings``, which ``ExtensionApp`` keeps for the web application's settings)."""
        return Settings(**{o.name: getattr(self, o.trait) for o in Settings.options()})

    def initialize_settings(self) -> None:
        backend = None  # a LocalBackend is made by the control plane, with its sandbox
        if self.backend == "local" and self.backend_class is not LocalBackend:
            backend = self.backend_class()
        self.cp = ControlPlane(self.liveml_settings(), backend=backend)

    def initialize_handlers(self) -> None:
        specs = routes(self.cp, "/", base=JupyterHandler)
        for _pattern, cls, _kw in specs:
            _allow_own_auth(cls)
        # the inference route: a script's query with a liveml token skips the RequestHandler
        # (InferenceFront), anything else gets Jupyter's handler. ExtensionApp and Jupyter's
        # add_handlers take handler classes only (Jupyter's checks each one's methods for
        # authentication; both of this route's paths authenticate every request themselves),
        # so this route goes to tornado's Application.add_handlers directly.
        webapp = self.serverapp.web_app if self.serverapp is not None else None
        if webapp is not None:
            for pattern, cls, kw in [x for x in specs if issubclass(x[1], InferenceHandler)]:
                specs.remove((pattern, cls, kw))
                Application.add_handlers(webapp, ".*$", [(url_path_join(
                    webapp.settings["base_url"], pattern.lstrip("/")), InferenceFront(
                        self.cp, functools.partial(_delegate, webapp, cls, kw)))])
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
