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
    """The connection broke after the request was sent, before a whole response arrived: the
    replica may have received the request (and died of it), so it must not be sent elsewhere."""


class ReplicaUnreachable(ConnectionError):
    """The request never reached the replica (connection refused): another replica may take it."""


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

    def _fail(self, exc: BaseException) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc)

    def _timed_out(self) -> None:
        self._fail(TimeoutError())
        self.close()

    async def send(self, head: bytes, body: bytes, timeout: float) -> tuple[int, bytes]:
        """Write one request and wait for its answer (``TimeoutError`` after ``timeout``
        seconds: one timer per request, not ``asyncio.wait_for``'s extra future)."""
        self.body, self.status, self.got_bytes = [], 0, False
        loop = asyncio.get_running_loop()
        self.waiter = waiter = loop.create_future()
        assert self.transport is not None
        if len(body) < 1 << 16:
            self.transport.write(head + body)  # one write for the common small query
        else:
            self.transport.writelines((head, body))  # no copy of a large body
        timer = loop.call_later(timeout, self._timed_out)
        try:
            result: tuple[int, bytes] = await waiter
            return result
        finally:
            timer.cancel()

    def close(self) -> None:
        self.open = False
        if self.transport is not None:
            self.transport.close()


class ReplicaClient:
    """POSTs to replicas over pooled keep-alive connections."""

    def __init__(self, headers: dict[str, str] | None = None) -> None:
        self.extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items()).encode()
        self.idle: dict[tuple[str, int], list[_Connection]] = defaultdict(list)
        self._heads: dict[tuple[str, str, str], tuple[tuple[str, int], bytes, bytes]] = {}

    def _head(self, url: str, path: str, token: str) -> tuple[tuple[str, int], bytes, bytes]:
        """(host, port), and the request head before and after its Content-Length value:
        worked out once per replica, path and token."""
        known = self._heads.get((url, path, token))
        if known is None:
            parts = urlsplit(url)
            key = (parts.hostname or "127.0.0.1", parts.port or 80)
            before = (f"POST {path} HTTP/1.1\r\nHost: {key[0]}:{key[1]}\r\n"
                      "Content-Type: application/json\r\nContent-Length: ").encode()
            after = b"\r\n" + (f"X-LiveML-Replica-Token: {token}\r\n".encode() if token
                                else self.extra) + b"\r\n"
            if len(self._heads) > 4096:  # replicas come and go: never grow without bound
                self._heads.clear()
            known = self._heads[(url, path, token)] = (key, before, after)
        return known

    async def _connect(self, host: str, port: int) -> _Connection:
        loop = asyncio.get_running_loop()
        _, conn = await loop.create_connection(_Connection, host, port)
        return conn

    async def post(self, url: str, path: str, body: bytes, timeout: float,
                   token: str = "") -> tuple[int, bytes]:
        """One request (with the replica's own ``token``, else the client's headers); a pooled
        connection found closed is skipped, and one that breaks with no
        byte of answer is replaced once by a fresh connection to the same replica (an idle
        connection the replica closed as the request went out). Raises ``ReplicaUnreachable``
        when the request was never sent, ``ReplicaGone`` when it may have been received."""
        key, before, after = self._head(url, path, token)
        head = b"%s%d%s" % (before, len(body), after)
        pool = self.idle[key]
        sent = False
        while True:
            conn = None
            while pool and not sent and conn is None:
                conn = pool.pop()
                conn = conn if conn.open else None  # found closed: nothing was sent on it
            reused = conn is not None
            if conn is None:
                try:
                    conn = await self._connect(*key)
                except OSError as exc:
                    if sent:  # the first try went out and broke: the replica is gone since
                        raise ReplicaGone("the replica went away while handling the request") \
                            from exc
                    raise ReplicaUnreachable(f"cannot connect to the replica: {exc}") from exc
            try:
                status, data = await conn.send(head, body, timeout)
            except ReplicaGone:
                conn.close()
                if reused and not conn.got_bytes and not sent:
                    sent = True
                    continue  # maybe an idle connection it had just closed: once more, fresh
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
