"""Inference: ``POST <base>/foundry-ml-live/api/inference/transform/<rid>[/v2]``.

The body streams in with a size limit (413 past it), is checked for a Bearer token with query
rights on the deployment's namespace (a token of another namespace gets the 404 of an unknown
RID), must be JSON (415 for another Content-Type; none at all is taken as JSON), and is
forwarded as bytes to a ready replica.
"""
from __future__ import annotations

import time
from typing import Any

from ..core.errors import (
    LiveMLError,
    RequestEntityTooLarge,
)
from .base import LiveMLHandlerMixin


class InferenceHandler(LiveMLHandlerMixin):
    _stream_request_body = True  # tornado reads the body through data_received

    async def prepare(self) -> None:  # type: ignore[override]
        self._chunks: list[bytes] = []
        self._size = 0
        limit = self.cp.settings.max_body_bytes
        self.request.connection.set_max_body_size(max(limit * 2, 1 << 20))  # type: ignore[attr-defined]
        await super().prepare()
        self.require_json()
        length = self.request.headers.get("Content-Length")  # type: ignore[attr-defined]
        if length and length.isdigit() and int(length) > limit:
            raise self._too_large()

    def _too_large(self) -> RequestEntityTooLarge:
        limit = self.cp.settings.max_body_bytes
        return RequestEntityTooLarge(
            f"the request body is over the {limit} byte limit; send fewer rows per request",
            maxBytes=limit)

    def data_received(self, chunk: bytes) -> None:
        self._size += len(chunk)
        if self._size <= self.cp.settings.max_body_bytes:
            self._chunks.append(chunk)

    async def post(self, rid: str, v2: Any = None) -> None:
        if self._size > self.cp.settings.max_body_bytes:
            raise self._too_large()
        pool = self.cp.gateway.pool(rid)
        if not self.principal.can_see(pool.namespace):  # another namespace's RIDs don't leak
            raise self.cp.gateway.not_found(rid)
        self.principal.require(pool.namespace, "query")
        body = self._chunks[0] if len(self._chunks) == 1 else b"".join(self._chunks)
        started = time.perf_counter()
        node, status = "gateway", 500
        try:
            status, data, node = await self.cp.gateway.forward(pool, body, v2=bool(v2))
        except LiveMLError as err:
            status = err.status
            raise
        finally:
            self.cp.request_stats.observe(rid, node, status, time.perf_counter() - started)
        self.reply(data, status)
