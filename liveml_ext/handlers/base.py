"""The handlers' shared base: authentication, JSON bodies and the one error mapper.

Handlers are written once as mixins; ``handlers.routes`` combines them with
``tornado.web.RequestHandler`` (standalone server) or Jupyter's ``JupyterHandler`` (extension).
"""
from __future__ import annotations

import asyncio
import hashlib
import inspect
import logging
import os
import tempfile
from typing import TYPE_CHECKING, Any, TypeVar

import orjson
import pydantic
import tornado.web
from tornado.http1connection import HTTP1Connection
from tornado.httputil import HTTPHeaders

from liveml_runtime.api import repeated_key

from ..controlplane import ControlPlane
from ..core.auth import PREFIX
from ..core.errors import (
    CrossSiteRequestRefused,
    DuplicateJsonKey,
    Internal,
    InvalidArgument,
    LiveMLError,
    MalformedRequestBody,
    MethodNotAllowed,
    NotFound,
    PermissionDenied,
    RequestEntityTooLarge,
    Unauthorized,
    UnsupportedMediaType,
    error_class,
)
from ..core.registry import Principal

log = logging.getLogger("liveml.api")
M = TypeVar("M", bound=pydantic.BaseModel)
_HTTP_ERRORS = {401: Unauthorized, 403: PermissionDenied, 404: NotFound, 405: MethodNotAllowed,
                413: RequestEntityTooLarge, 415: UnsupportedMediaType}
METHODS = ("get", "post", "put", "patch", "delete")
#: A refused request with a body up to this size is read before the answer (see ``prepare``).
DRAIN_BYTES = 64 * 1024


def map_error(exc: BaseException | None, status: int = 500, reason: str = "") -> LiveMLError:
    """Any exception -> a LiveMLError with the right status (the one error mapper)."""
    if isinstance(exc, LiveMLError):
        return exc
    if isinstance(exc, pydantic.ValidationError):
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        return InvalidArgument(f"{field}: {first['msg']}" if field else first["msg"],
                               field=field, errors=[
                                   {"field": ".".join(str(p) for p in e["loc"]), "message": e["msg"]}
                                   for e in exc.errors()])
    if isinstance(exc, tornado.web.HTTPError):
        status = exc.status_code
        reason = exc.log_message or exc.reason or reason
    if status in _HTTP_ERRORS:
        return _HTTP_ERRORS[status](reason or "")
    if 400 <= status < 500:
        return error_class("HttpError", status, "INVALID_ARGUMENT")(reason or f"HTTP {status}")
    return Internal("an internal error happened; the server log has the details")


def bearer(headers: HTTPHeaders) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` (or ``token <token>``) header."""
    scheme, _, value = headers.get("Authorization", "").partition(" ")
    if scheme.lower() in ("bearer", "token") and value.strip():
        return value.strip()
    return None


def require_json(headers: HTTPHeaders) -> None:
    """JSON only: ``application/json`` or ``application/*+json``, or no Content-Type (415
    otherwise)."""
    media = headers.get("Content-Type", "").partition(";")[0].strip().lower()
    if media and media != "application/json" and not (
            media.startswith("application/") and media.endswith("+json")):
        raise UnsupportedMediaType(
            f"this endpoint takes JSON, not {media!r}: send `Content-Type: application/json`"
            " (with curl: -H 'Content-Type: application/json' --data-binary @body.json)",
            contentType=media)


def error_answer(exc: BaseException | None, status: int, reason: str, method: str | None,
                 path: str, exc_info: Any = None) -> LiveMLError:
    """``map_error``, and the server log's line for an unexpected 5xx (what ``write_error``
    and the inference front answer)."""
    err = map_error(exc, status, reason)
    if err.status >= 500 and not isinstance(exc, LiveMLError):
        log.error("unhandled error in %s %s", method, path, exc_info=exc_info)
    return err


def access_log(status: int, method: str | None, uri: str | None) -> None:
    """The standalone server's access log: one warning line per 5xx answer."""
    if status >= 500:
        logging.getLogger("liveml.server").warning("%d %s %s", status, method, uri)


def too_large(limit: int, hint: str) -> LiveMLError:
    """The 413 for a body over ``limit`` bytes; ``hint``: the words after "is over"."""
    return RequestEntityTooLarge(f"the request body is over {hint}", maxBytes=limit)


def declared_too_large(headers: HTTPHeaders, limit: int) -> bool:
    """Whether the Content-Length says the body is over ``limit`` bytes."""
    length = headers.get("Content-Length", "")
    return length.isdigit() and int(length) > limit


def allow_body(connection: Any, limit: int) -> None:
    """Let tornado stream up to twice ``limit`` (past that it drops the connection; up to it
    the route answers 413)."""
    if isinstance(connection, HTTP1Connection):  # always, in tornado's and Jupyter's server
        connection.set_max_body_size(max(2 * limit, 1 << 20))


if TYPE_CHECKING:  # what the mixins are mixed into (handlers.routes), for the type checker
    _Handler = tornado.web.RequestHandler
else:
    _Handler = object


class LiveMLHandlerMixin(_Handler):
    """Mixed into a tornado RequestHandler; ``self.cp`` is the control plane."""

    cp: ControlPlane
    principal: Principal

    def initialize(self, cp: ControlPlane, **kwargs: Any) -> None:
        self.cp = cp
        super_init = getattr(super(), "initialize", None)
        if super_init is not None and kwargs:
            super_init(**kwargs)

    async def prepare(self) -> None:
        result = super().prepare()
        if inspect.isawaitable(result):
            await result
        if self._finished:
            return
        self.principal = self.authenticate()
        if self.cookie_authenticated() and not self._origin_ok():
            raise self._cross_site()

    def bearer(self) -> str | None:
        return bearer(self.request.headers)

    def authenticate(self) -> Principal:
        token = self.bearer()
        if token and token.startswith(PREFIX):
            return self.cp.tokens.verify(token)
        user = self.current_user  # Jupyter's, when hosted there
        if user is not None:
            return Principal(name=str(getattr(user, "username", user)), scope="admin")
        return self.cp.tokens.verify(token)

    def by_token(self) -> bool:
        """Whether a valid liveml token or Jupyter's own token (not a cookie) authenticates."""
        token = self.bearer()
        if token and token.startswith(PREFIX):
            try:
                self.cp.tokens.verify(token)
                return True
            except LiveMLError:
                return False
        return bool(getattr(self, "_token_authenticated", False))  # set by Jupyter's identity

    def cookie_authenticated(self) -> bool:
        """Whether Jupyter's login cookie (which a browser sends by itself) authenticates."""
        return (getattr(self, "current_user", None) is not None
                and not self.by_token())

    def _origin_ok(self) -> bool:
        check = getattr(super(), "check_origin", None)  # jupyter_server's (allow_origin, ...)
        return True if check is None else bool(check())

    def _cross_site(self) -> LiveMLError:
        return CrossSiteRequestRefused(
            "cross-site request refused: a cookie-authenticated call must come from this "
            "server's own pages (same Origin) and send the _xsrf cookie's value in an "
            "X-XSRFToken header; scripts should send `Authorization: Bearer <token>` instead")

    def check_xsrf_cookie(self) -> None:
        """Jupyter's XSRF and Origin checks, skipped only when a token authenticates."""
        if not self.request.headers.get("Cookie") or self.by_token():
            return None  # no cookie to ride on: nothing to forge cross-site (auth still applies)
        try:
            return super().check_xsrf_cookie()
        except tornado.web.HTTPError as exc:
            raise self._cross_site() from exc

    @classmethod
    def allowed_methods(cls) -> list[str]:
        """The HTTP methods this handler answers (the ``Allow`` header of a 405)."""
        return [name.upper() for name in METHODS
                if any(name in vars(k) for k in cls.__mro__
                       if issubclass(k, LiveMLHandlerMixin))]

    # --- bodies and replies ----------------------------------------------------------------
    def body(self) -> bytes:
        return self.request.body

    def json_body(self) -> Any:
        body = self.body()
        if not body:
            return {}
        self.require_json()
        return loads_strict(body)

    def require_json(self) -> None:
        """415 unless the body is JSON (``require_json``)."""
        require_json(self.request.headers)

    def parse(self, model: type[M]) -> M:
        doc = self.json_body()
        if not isinstance(doc, dict):
            raise InvalidArgument("the body must be a JSON object")
        return model.model_validate(doc)

    def reply(self, doc: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(doc if isinstance(doc, bytes) else
                    orjson.dumps(doc, default=str))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        err = error_answer(exc, status_code, getattr(self, "_reason", ""), self.request.method,
                           self.request.path, kwargs.get("exc_info"))
        self.clear_header("Content-Type")
        if err.status == 405:
            self.set_header("Allow", ", ".join(self.allowed_methods()))
        self.set_status(err.status)
        self.set_header("Content-Type", "application/json")
        self.finish(orjson.dumps(err.envelope()))

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        if isinstance(value, (LiveMLError, pydantic.ValidationError)):
            return  # an answer to the caller, not a server fault
        super().log_exception(typ, value, tb)


def loads_strict(body: bytes) -> Any:
    """JSON that is valid (orjson's rules: no NaN) and has no key twice in one object."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise MalformedRequestBody(f"the body is not valid JSON: {exc}") from exc
    try:
        written: bytes | None = orjson.dumps(doc)  # most bodies: cleared by counting colons
    except orjson.JSONEncodeError:
        written = None  # deeper than orjson writes: the exact check
    key = repeated_key(body, written)
    if key is not None:
        raise DuplicateJsonKey(f"the key {key!r} is given twice in one JSON object; give it "
                               "once", key=key)
    return doc


class StreamedBody(LiveMLHandlerMixin):
    """A route whose body streams in through ``data_received`` (after ``prepare``, so the
    caller is authenticated from the headers first), kept up to ``body_limit()`` bytes; past it
    ``body()`` raises 413 ``RequestEntityTooLarge``."""

    _stream_request_body = True

    def body_limit(self) -> int:
        raise NotImplementedError

    def too_large_hint(self) -> str:
        """The 413's words after "the request body is over": the limit, and what to do."""
        return f"the {self.body_limit()} byte limit"

    def start_body(self) -> None:
        self._chunks: list[bytes] = []
        self._size = 0

    def accept_body(self) -> None:
        """Let tornado stream up to twice the limit (past that it drops the connection; up to
        it we answer 413), and refuse at once a declared length over the limit."""
        allow_body(self.request.connection, self.body_limit())
        if declared_too_large(self.request.headers, self.body_limit()):
            raise self.too_large()

    def too_large(self) -> LiveMLError:
        return too_large(self.body_limit(), self.too_large_hint())

    def data_received(self, chunk: bytes) -> None:
        self._size += len(chunk)
        if self._size <= self.body_limit():
            self._chunks.append(chunk)

    def body(self) -> bytes:
        if self._size > self.body_limit():
            raise self.too_large()
        return self._chunks[0] if len(self._chunks) == 1 else b"".join(self._chunks)


class ManagementHandler(StreamedBody):
    """A management route: the caller is authenticated from the headers before any of the body
    is read (``prepare`` runs before the body streams in), and JSON bodies are capped
    (``Settings.max_json_bytes``; 413 ``RequestEntityTooLarge`` past it)."""

    #: The least scope a caller needs before anything else is looked at (namespaces are checked
    #: by the core); None: ``read`` to GET, ``manage`` for the other methods.
    least_scope: str | None = None

    def body_limit(self) -> int:
        return self.cp.settings.max_json_bytes

    async def prepare(self) -> None:
        self.start_body()
        self._refusal: LiveMLError | None = None
        try:
            await super().prepare()
            if self._finished:
                return
            method = self.request.method
            self.principal.require_scope(self.least_scope or
                                         ("read" if method in ("GET", "HEAD") else "manage"))
        except (LiveMLError, tornado.web.HTTPError) as exc:
            if not self._small_body():
                raise  # answered at once; the connection closes with the body unread
            # a small body is read (and dropped) first, so the client reads the answer
            # instead of a reset connection
            self._refusal = map_error(exc)
            setattr(self, self.request.method.lower(), self._refuse)
            return
        self.accept_body()

    def _small_body(self) -> bool:
        length = self.request.headers.get("Content-Length", "")
        return length.isdigit() and 0 < int(length) <= DRAIN_BYTES

    def _refuse(self, *args: Any) -> None:
        assert self._refusal is not None
        raise self._refusal

    def too_large_hint(self) -> str:
        return f"this endpoint's {self.body_limit()} byte limit"

    def data_received(self, chunk: bytes) -> None:
        if self._refusal is None:
            super().data_received(chunk)
        else:
            self._size += len(chunk)


class UploadHandler(ManagementHandler):
    """A route whose body streams to a temporary file (hashed on the way), never into memory,
    up to ``Settings.max_artifact_bytes``; the file is gone when the request ends."""

    def body_limit(self) -> int:
        return self.cp.settings.max_artifact_bytes

    async def prepare(self) -> None:
        self._upload: Any = None
        self._sha = hashlib.sha256()
        await super().prepare()
        if not self._finished and self._refusal is None:
            folder = self.cp.settings.home / "uploads"
            folder.mkdir(mode=0o700, exist_ok=True)
            self._upload = tempfile.NamedTemporaryFile(dir=folder, prefix="upload-",
                                                       delete=False)

    def data_received(self, chunk: bytes) -> None:
        self._size += len(chunk)
        if self._upload is not None and self._size <= self.body_limit():
            self._upload.write(chunk)
            self._sha.update(chunk)

    async def stored_upload(self, store: Any) -> Any:
        """``store(temporary file, sha256, size)`` of the uploaded body, in a worker thread;
        413 past the limit. The temporary file is gone before the answer is sent."""
        try:
            if self._size > self.body_limit():
                raise self.too_large()
            self._upload.close()
            args = (self._upload.name, self._sha.hexdigest(), self._size)
            return await asyncio.get_running_loop().run_in_executor(None, store, *args)
        finally:
            self._discard()

    def on_finish(self) -> None:
        self._discard()

    def on_connection_close(self) -> None:
        self._discard()
        super().on_connection_close()

    def _discard(self) -> None:
        upload = getattr(self, "_upload", None)
        if upload is not None:
            upload.close()
            try:
                os.unlink(upload.name)
            except FileNotFoundError:
                pass
            self._upload = None


class FallbackHandler(ManagementHandler):
    """Unknown paths under liveml's prefixes: 404 in the envelope (after authentication)."""

    least_scope = "query"

    def _not_found(self, *args: Any) -> None:
        raise NotFound(f"no such endpoint: {self.request.method} {self.request.path}")

    get = post = put = patch = delete = _not_found
