"""A loopback HTTP server that answers every request from one function, in threads.

The transport of the two Kubernetes API stand-ins (``kube_fake.FakeKube``, ``kube_sim.KubeSim``):
``answer(method, path, query, headers, body)`` gets the raw path, the query as a dict of lists
and lower-cased headers, and returns ``(status, payload)``; a ``str`` payload is sent as
text/plain, an iterator of ``bytes`` is streamed as chunked text/plain (a followed log), anything
else as JSON.
"""
from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

Answer = Callable[[str, str, dict[str, list[str]], dict[str, str], bytes], tuple[int, Any]]


class JsonHttpServer:
    """``start()`` serves on 127.0.0.1 (a free port) until ``stop()``; ``closing()`` true makes
    each answer close its connection (a server going away)."""

    def __init__(self, answer: Answer, name: str = "json-http",
                 closing: Callable[[], bool] = lambda: False) -> None:
        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                code, payload = answer(self.command, parts.path,
                                       parse_qs(parts.query, keep_blank_values=True),
                                       {k.lower(): v for k, v in self.headers.items()}, body)
                if isinstance(payload, Iterator):
                    self._stream(code, payload)
                    return
                text = isinstance(payload, str)
                data = payload.encode() if text else json.dumps(payload).encode()
                self.send_response(code)
                self.send_header("Content-Type", "text/plain" if text else "application/json")
                self.send_header("Content-Length", str(len(data)))
                if closing():
                    self.send_header("Connection", "close")
                    self.close_connection = True
                self.end_headers()
                self.wfile.write(data)

            def _stream(self, code: int, chunks: Iterator[bytes]) -> None:
                self.send_response(code)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                try:
                    for chunk in chunks:
                        if chunk:
                            self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                            self.wfile.flush()
                    self.wfile.write(b"0\r\n\r\n")
                except OSError:  # the client went away
                    self.close_connection = True

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, name=name,
                                        kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        if self._thread.is_alive():
            self.server.shutdown()
        self.server.server_close()
