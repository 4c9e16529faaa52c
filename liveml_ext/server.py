"""The standalone control plane: ``liveml server`` (REST API, reconcile loop, inference gateway)."""
from __future__ import annotations

import asyncio
import logging
import signal
import sys
from pathlib import Path

import tornado.httpserver
import tornado.netutil
import tornado.web

from .controlplane import ControlPlane
from .core.errors import HomeInUse, HomeNotPrivate
from .handlers import routes
from .handlers.base import access_log
from .handlers.index import IndexHandler
from .settings import Settings

log = logging.getLogger("liveml.server")


def make_app(cp: ControlPlane, base_url: str = "/") -> tornado.web.Application:
    """The REST API under ``base_url``, and its root: an index of where things are (``GET /``,
    with a token; without one the 401 envelope says how to get it)."""
    prefix = "/" + base_url.strip("/") + "/" if base_url.strip("/") else "/"
    index = type("IndexHandler", (IndexHandler, tornado.web.RequestHandler), {})
    return tornado.web.Application([*routes(cp, base_url), (prefix + "?$", index, {"cp": cp})],
                                   log_function=_access_log)


def _access_log(handler: tornado.web.RequestHandler) -> None:
    access_log(handler.get_status(), handler.request.method, handler.request.uri)


async def serve(host: str = "127.0.0.1", port: int = 8765, home: str | Path | None = None,
                settings: Settings | None = None, ready: asyncio.Event | None = None,
                stop: asyncio.Event | None = None) -> None:
    """Run the control plane until SIGINT/SIGTERM (or ``stop`` is set); without ``settings``,
    the ``LIVEML_*`` environment's (``Settings.load``)."""
    settings = settings or (Settings.load(home=Path(home)) if home else Settings.load())
    try:
        cp = ControlPlane(settings)
    except (HomeInUse, HomeNotPrivate) as exc:  # before any replica or connection file
        raise SystemExit(f"liveml: {exc.message}") from None
    server = tornado.httpserver.HTTPServer(make_app(cp), max_body_size=1 << 30,
                                           max_buffer_size=1 << 30)
    sockets = tornado.netutil.bind_sockets(port, host)
    server.add_sockets(sockets)
    bound = sockets[0].getsockname()[1]
    url = f"http://{host if host not in ('0.0.0.0', '::') else '127.0.0.1'}:{bound}/"
    await cp.start()
    path = cp.write_connection_file(url)
    print(f"liveml control plane at {url} ({cp.role})\n"
          f"  home: {settings.home}\n  connection file (URL and admin token): {path}\n"
          "  next: `liveml objective create NAME`, then `liveml submit NAME MODEL.joblib`; "
          "Ctrl-C stops", file=sys.stderr, flush=True)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):
            pass
    if ready:
        ready.set()
    await stop.wait()
    print("liveml: stopping replicas…", file=sys.stderr, flush=True)
    server.stop()
    await cp.stop()
