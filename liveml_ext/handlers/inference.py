"""Inference: ``POST <base>/foundry-ml-live/api/inference/transform/<rid>[/v2]``.

The body streams in with a size limit (413 past it), is checked for a Bearer token with query
rights on the deployment's namespace (a token of another namespace gets the 404 of an unknown
RID), must be JSON (415 for another Content-Type; none at all is taken as JSON), and is
forwarded as bytes to a ready replica.

Two servers of the route share every step (``transform``, and the checks of ``handlers.base``):
``InferenceFront``, the route's target in both servers, answers each query with a plain
tornado ``HTTPMessageDelegate`` (no ``RequestHandler``: the hot path), and ``InferenceHandler``,
a handler mixin, serves what the Jupyter extension must check itself: a request from a browser
or with Jupyter's own token or login cookie, through Jupyter's handler base (its
authentication, host and origin checks and headers).
"""
from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable
from typing import Any

import orjson
import pydantic
import tornado
import tornado.routing
import tornado.web
from tornado import httputil
from tornado.log import app_log

from ..controlplane import ControlPlane
from ..core.auth import PREFIX
from ..core.errors import LiveMLError
from ..core.registry import Principal
from .base import (
    StreamedBody,
    access_log,
    allow_body,
    bearer,
    declared_too_large,
    error_answer,
    require_json,
    too_large,
)

#: The methods tornado's RequestHandler knows: any other is a 405 before authentication.
KNOWN_METHODS = tornado.web.RequestHandler.SUPPORTED_METHODS
SERVER = f"TornadoServer/{tornado.version}"


def too_large_hint(limit: int) -> str:
    """The inference 413's words after "the request body is over"."""
    return f"the {limit} byte limit; send fewer rows per request"


async def transform(cp: ControlPlane, query: Any, rid: str, body: bytes,
                    v2: bool) -> tuple[int, bytes]:
    """One authenticated query (``query.principal``) forwarded to a replica of ``rid``: the
    answer's status and bytes; counted in the request metrics and offered to the capture and
    the mirror (which read ``query.request`` and ``query.principal`` and may
    ``query.set_header``)."""
    pool = cp.gateway.pool(rid)
    if not query.principal.can_see(pool.namespace):  # another namespace's RIDs don't leak
        raise cp.gateway.not_found(rid)
    query.principal.require(pool.namespace, "query")
    started = time.perf_counter()
    node, status, data = "gateway", 500, b""
    try:
        status, data, node = await cp.gateway.forward(pool, body, v2=v2)
    except LiveMLError as err:
        status = err.status
        raise
    finally:
        cp.request_stats.observe(rid, node, status, time.perf_counter() - started)
        cp.capture.offer(query, rid, body, status, data, node, started, v2)
        cp.mirror.offer(query, rid, body, status, data, node, started, v2)
    return status, data


class InferenceHandler(StreamedBody):
    """The route as a RequestHandler mixin (the Jupyter extension's)."""

    def body_limit(self) -> int:
        return self.cp.settings.max_body_bytes

    def too_large_hint(self) -> str:
        return too_large_hint(self.body_limit())

    async def prepare(self) -> None:
        self.start_body()
        await super().prepare()
        self.require_json()
        self.accept_body()

    async def post(self, rid: str, v2: Any = None) -> None:
        body = self.body()  # 413 past the limit
        status, data = await transform(self.cp, self, rid, body, bool(v2))
        self.reply(data, status)


#: Makes the delegate of the route's RequestHandler for one request (its path arguments).
Fallback = Callable[[httputil.HTTPServerRequest, list[Any]], httputil.HTTPMessageDelegate]


class InferenceFront(tornado.routing.Router):
    """The route's target in the route table: a `Query` per request.

    With a ``fallback`` (the Jupyter extension's handler), only a query a script sends with a
    liveml token (``Authorization: Bearer lml_…``, no ``Cookie``, no ``Origin``: no browser)
    is a `Query`; any other request goes to the handler, with Jupyter's own authentication,
    host, origin and CORS checks and headers."""

    def __init__(self, cp: ControlPlane, fallback: Fallback | None = None) -> None:
        self.cp = cp
        self.fallback = fallback

    def find_handler(self, request: httputil.HTTPServerRequest,
                     **kwargs: Any) -> httputil.HTTPMessageDelegate:
        path_args = kwargs.get("path_args", [])
        if self.fallback is not None and not self.scripted(request.headers):
            return self.fallback(request, path_args)
        return Query(self.cp, request, path_args)

    @staticmethod
    def scripted(headers: httputil.HTTPHeaders) -> bool:
        """A query with a liveml token, from no browser (nothing Jupyter's checks guard)."""
        return "Cookie" not in headers and "Origin" not in headers and \
            (bearer(headers) or "").startswith(PREFIX)

    @staticmethod
    def allowed_methods() -> list[str]:
        """The methods the route answers (the ``Allow`` header of its 405)."""
        return InferenceHandler.allowed_methods()


class Query(httputil.HTTPMessageDelegate):
    """One query of the standalone server, answered as ``InferenceHandler`` would: the same
    checks in the same order, statuses, envelopes, headers and access log."""

    principal: Principal

    def __init__(self, cp: ControlPlane, request: httputil.HTTPServerRequest,
                 path_args: list[Any]) -> None:
        self.cp = cp
        self.request = request
        self.path_args = path_args
        self.limit = cp.settings.max_body_bytes
        self.chunks: list[bytes] = []
        self.size = 0
        self.answered = False
        self.headers: dict[str, str] = {}  # set by the capture and the mirror (X-Request-Id)
        self.task: asyncio.Future[None] | None = None

    def set_header(self, name: str, value: Any) -> None:
        """A header of the answer (what ``RequestHandler.set_header`` is to the capture)."""
        self.headers[name] = str(value)

    def headers_received(self, start_line: httputil.RequestStartLine | httputil.ResponseStartLine,
                         headers: httputil.HTTPHeaders) -> None:
        try:
            if self.request.method not in KNOWN_METHODS:
                raise tornado.web.HTTPError(405)
            self.rid = self._decoded(self.path_args[0])
            self.principal = self.cp.tokens.verify(bearer(headers))
            require_json(headers)
            allow_body(self.request.connection, self.limit)
            if declared_too_large(headers, self.limit):
                raise too_large(self.limit, too_large_hint(self.limit))
        except Exception as exc:  # noqa: BLE001 - answered in the envelope
            self.refuse(exc)

    def data_received(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size <= self.limit and not self.answered:
            self.chunks.append(chunk)

    def finish(self) -> None:
        if not self.answered:
            self.task = asyncio.ensure_future(self.answer())

    async def answer(self) -> None:
        """The body is in: forward it, and write the answer."""
        try:
            if self.request.method != "POST":
                raise tornado.web.HTTPError(405)
            if self.size > self.limit:
                raise too_large(self.limit, too_large_hint(self.limit))
            body = self.chunks[0] if len(self.chunks) == 1 else b"".join(self.chunks)
            status, data = await transform(self.cp, self, self.rid, body,
                                           bool(self.path_args[1]))
        except Exception as exc:  # noqa: BLE001 - answered in the envelope
            self.refuse(exc)
            return
        self.send(status, data, self.headers)

    def refuse(self, exc: BaseException) -> None:
        """The envelope of ``exc``, as ``LiveMLHandlerMixin.write_error`` writes it."""
        status = exc.status_code if isinstance(exc, tornado.web.HTTPError) else 500
        if not isinstance(exc, (LiveMLError, pydantic.ValidationError,
                                tornado.web.HTTPError)):  # as RequestHandler.log_exception
            app_log.error("Uncaught exception %s %s (%s)\n%r", self.request.method,
                          self.request.uri, self.request.remote_ip, self.request,
                          exc_info=sys.exc_info())
        err = error_answer(exc, status, httputil.responses.get(status, "Unknown"),
                           self.request.method, self.request.path, sys.exc_info())
        extra = {"Allow": ", ".join(InferenceFront.allowed_methods())} if err.status == 405 else {}
        self.send(err.status, orjson.dumps(err.envelope()), extra)

    def send(self, status: int, data: bytes, extra: dict[str, str]) -> None:
        """Write the answer (what ``RequestHandler.finish`` writes) and the access log."""
        self.answered = True
        headers = httputil.HTTPHeaders()
        headers["Server"] = SERVER
        headers["Content-Type"] = "application/json"
        headers["Date"] = _date()
        for name, value in extra.items():
            headers[name] = value
        headers["Content-Length"] = str(len(data))
        connection = self.request.connection
        assert connection is not None
        connection.write_headers(
            httputil.ResponseStartLine("", status, httputil.responses.get(status, "Unknown")),
            headers, b"" if self.request.method == "HEAD" else data)
        connection.finish()
        access_log(status, self.request.method, self.request.uri)

    @staticmethod
    def _decoded(value: bytes | None) -> str:
        """A path argument as RequestHandler decodes it (400 for invalid UTF-8)."""
        try:
            return (value or b"").decode("utf-8")
        except UnicodeDecodeError:
            raise tornado.web.HTTPError(
                400, f"Invalid unicode in url: {(value or b'')[:40]!r}") from None


_dates: tuple[int, str] = (0, "")


def _date() -> str:
    """The ``Date`` header's value, worked out once a second."""
    global _dates
    now = int(time.time())
    if _dates[0] != now:
        _dates = (now, httputil.format_timestamp(now))
    return _dates[1]
