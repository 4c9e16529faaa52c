"""Inference: ``POST <base>/foundry-ml-live/api/inference/transform/<rid>[/v2]``.

The body streams in with a size limit (413 past it), is checked for a Bearer token with query
rights on the deployment's namespace (a token of another namespace gets the 404 of an unknown
RID), must be JSON (415 for another Content-Type; none at all is taken as JSON), and is
forwarded as bytes to a ready replica.
"""
from __future__ import annotations

import time
from typing import Any

from ..core.errors import LiveMLError
from .base import StreamedBody


class InferenceHandler(StreamedBody):
    def body_limit(self) -> int:
        return self.cp.settings.max_body_bytes

    def too_large_hint(self) -> str:
        return f"{super().too_large_hint()}; send fewer rows per request"

    async def prepare(self) -> None:
        self.start_body()
        await super().prepare()
        self.require_json()
        self.accept_body()

    async def post(self, rid: str, v2: Any = None) -> None:
        body = self.body()  # 413 past the limit
        pool = self.cp.gateway.pool(rid)
        if not self.principal.can_see(pool.namespace):  # another namespace's RIDs don't leak
            raise self.cp.gateway.not_found(rid)
        self.principal.require(pool.namespace, "query")
        started = time.perf_counter()
        node, status, data = "gateway", 500, b""
        try:
            status, data, node = await self.cp.gateway.forward(pool, body, v2=bool(v2))
        except LiveMLError as err:
            status = err.status
            raise
        finally:
            self.cp.request_stats.observe(rid, node, status, time.perf_counter() - started)
            self.cp.capture.offer(self, rid, body, status, data, node, started, bool(v2))
        self.reply(data, status)
