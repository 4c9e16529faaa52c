"""A lean keep-alive HTTP/1.1 client for the gateway's one hop to its replicas.

The gateway sends one kind of request (a POST with a JSON body of known length) to servers it
started itself, so it needs neither redirects, cookies nor chunked uploads. Responses are parsed by
``httptools`` (the C parser uvicorn uses); connections are pooled per replica. This keeps the hop to
a fraction of a general-purpose client's cost on the query path.
"""
from __future__ import annotations

import asyncio
from collections import defaultdict
from urllib.parse import urlsplit

import httptools


class ReplicaGone(ConnectionError):
    """The connection broke before a whole response arrived."""


class _Connection(asyncio.Protocol):
    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future | None = None
        self.body: list[bytes] = []
        self.status = 0
        self.open = True
        self.got_bytes = False

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.got_bytes = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(ReplicaGone(f"bad response from the replica: {exc}"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.open = False
        self._fail(ReplicaGone("the replica closed the connection"))

    # httptools callbacks
    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        if not self.parser.should_keep_alive():
            self.open = False
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result((self.status, b"".join(self.body)))

    def _fail(self, exc: Exception) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc)

    def send(self, head: bytes, body: bytes) -> asyncio.Future:
        self.body, self.status, self.got_bytes = [], 0, False
        self.waiter = asyncio.get_running_loop().create_future()
        assert self.transport is not None
        self.transport.writelines((head, body))
        return self.waiter

    def close(self) -> None:
        self.open = False
        if self.transport is not None:
            self.transport.close()


class ReplicaClient:
    """POSTs to replicas over pooled keep-alive connections."""

    def __init__(self, headers: dict[str, str] | None = None) -> None:
        self.extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items()).encode()
        self.idle: dict[tuple[str, int], list[_Connection]] = defaultdict(list)

    async def _connect(self, host: str, port: int) -> _Connection:
        loop = asyncio.get_running_loop()
        _, conn = await loop.create_connection(_Connection, host, port)
        return conn

    async def post(self, url: str, path: str, body: bytes, timeout: float,
                   token: str = "") -> tuple[int, bytes]:
        """One request (with the replica's own ``token``, else the client's headers); a pooled
        connection found stale is replaced once, transparently."""
        parts = urlsplit(url)
        key = (parts.hostname or "127.0.0.1", parts.port or 80)
        head = (f"POST {path} HTTP/1.1\r\nHost: {key[0]}:{key[1]}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n").encode() + \
            (f"X-LiveML-Replica-Token: {token}\r\n".encode() if token else self.extra) + b"\r\n"
        pool = self.idle[key]
        while True:
            reused = bool(pool)
            conn = pool.pop() if reused else await self._connect(*key)
            if not conn.open:
                continue
            try:
                status, data = await asyncio.wait_for(conn.send(head, body), timeout)
            except ReplicaGone:
                conn.close()
                if reused and not conn.got_bytes:
                    continue  # the replica had closed an idle connection: use a fresh one
                raise
            except BaseException:
                conn.close()
                raise
            if conn.open:
                pool.append(conn)
            return status, data

    def forget(self, url: str) -> None:
        """Close the idle connections to a replica that is gone."""
        parts = urlsplit(url)
        for conn in self.idle.pop((parts.hostname or "127.0.0.1", parts.port or 80), []):
            conn.close()

    def close(self) -> None:
        for conns in self.idle.values():
            for conn in conns:
                conn.close()
        self.idle.clear()
