"""The handlers' shared base: authentication, JSON bodies and the one error mapper.

Handlers are written once as mixins; ``handlers.routes`` combines them with
``tornado.web.RequestHandler`` (standalone server) or Jupyter's ``JupyterHandler`` (extension).
"""
from __future__ import annotations

import inspect
import logging
from typing import Any, TypeVar

import orjson
import pydantic
import tornado.web

from ..controlplane import ControlPlane
from ..core.errors import (
    Internal,
    InvalidArgument,
    LiveMLError,
    MalformedRequestBody,
    NotFound,
    Unauthorized,
    error_class,
)
from ..core.registry import Principal

log = logging.getLogger("liveml.api")
M = TypeVar("M", bound=pydantic.BaseModel)
_HTTP_ERRORS = {404: NotFound, 405: error_class("MethodNotAllowed", 405, "INVALID_ARGUMENT"),
                401: Unauthorized}


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


class LiveMLHandlerMixin:
    """Mixed into a tornado RequestHandler; ``self.cp`` is the control plane."""

    cp: ControlPlane
    principal: Principal

    def initialize(self, cp: ControlPlane, **kwargs: Any) -> None:  # type: ignore[override]
        self.cp = cp
        super_init = getattr(super(), "initialize", None)
        if super_init is not None and kwargs:
            super_init(**kwargs)

    async def prepare(self) -> None:  # type: ignore[override]
        result = super().prepare()  # type: ignore[misc]
        if inspect.isawaitable(result):
            await result
        if self._finished:  # type: ignore[attr-defined]
            return
        self.principal = self.authenticate()

    def bearer(self) -> str | None:
        header = self.request.headers.get("Authorization", "")  # type: ignore[attr-defined]
        scheme, _, value = header.partition(" ")
        if scheme.lower() in ("bearer", "token") and value.strip():
            return value.strip()
        return None

    def authenticate(self) -> Principal:
        token = self.bearer()
        if token and token.startswith("lml_"):
            return self.cp.tokens.verify(token)
        user = self.current_user  # type: ignore[attr-defined]  # Jupyter's, when hosted there
        if user is not None:
            return Principal(name=str(getattr(user, "username", user)), scope="admin")
        return self.cp.tokens.verify(token)

    def check_xsrf_cookie(self) -> None:
        headers = self.request.headers  # type: ignore[attr-defined]
        if headers.get("Authorization") or not headers.get("Cookie"):
            return None  # no cookie to ride on: nothing to forge cross-site (auth still applies)
        return super().check_xsrf_cookie()  # type: ignore[misc]

    # --- bodies and replies ----------------------------------------------------------------
    def json_body(self) -> Any:
        body = self.request.body  # type: ignore[attr-defined]
        if not body:
            return {}
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise MalformedRequestBody(f"the body is not valid JSON: {exc}") from exc

    def parse(self, model: type[M]) -> M:
        doc = self.json_body()
        if not isinstance(doc, dict):
            raise InvalidArgument("the body must be a JSON object")
        return model.model_validate(doc)

    def reply(self, doc: Any, status: int = 200) -> None:
        self.set_status(status)  # type: ignore[attr-defined]
        self.set_header("Content-Type", "application/json")  # type: ignore[attr-defined]
        self.finish(doc if isinstance(doc, bytes) else  # type: ignore[attr-defined]
                    orjson.dumps(doc, default=str))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        err = map_error(exc, status_code, getattr(self, "_reason", ""))
        if err.status >= 500 and not isinstance(exc, LiveMLError):
            log.error("unhandled error in %s %s", self.request.method,  # type: ignore[attr-defined]
                      self.request.path, exc_info=kwargs.get("exc_info"))  # type: ignore[attr-defined]
        self.clear_header("Content-Type")  # type: ignore[attr-defined]
        self.set_status(err.status)  # type: ignore[attr-defined]
        self.set_header("Content-Type", "application/json")  # type: ignore[attr-defined]
        self.finish(orjson.dumps(err.envelope()))  # type: ignore[attr-defined]

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        if isinstance(value, (LiveMLError, pydantic.ValidationError)):
            return  # an answer to the caller, not a server fault
        super().log_exception(typ, value, tb)  # type: ignore[misc]


class FallbackHandler(LiveMLHandlerMixin):
    """Unknown paths under liveml's prefixes: 404 in the envelope (after authentication)."""

    def _not_found(self, *args: Any) -> None:
        raise NotFound(f"no such endpoint: {self.request.method} {self.request.path}")  # type: ignore[attr-defined]

    get = post = put = patch = delete = _not_found
