"""A fake Kubernetes API server for contract tests: it records requests and answers canned JSON.

``FakeKube`` listens on 127.0.0.1 (a free port) in a thread. Every request is recorded as a
``Request`` (method, path, query as a dict of lists, headers, raw body and the body parsed as
JSON when it is). Answers come from ``routes``: ``(METHOD, path) -> (status, JSON-able body or
str)``; anything else answers with a Kubernetes ``Status`` 404. Patches and deletes of the
namespaced objects ``KubernetesCluster`` touches answer 200 with the request body (or a
``Status``), so an unrouted apply works as a real apply of a new object would.

It plays only the calls the typed client makes (no discovery documents are needed: the
typed APIs do not use discovery, unlike ``kubernetes.dynamic``).
"""
from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body) if self.body else None

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "")


def status(code: int, reason: str, message: str = "") -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message or reason, "reason": reason, "code": code}


@dataclass
class FakeKube:
    routes: dict[tuple[str, str], tuple[int, Any]] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)

    def __post_init__(self) -> None:
        fake = self
        self._lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                request = Request(self.command, parts.path, parse_qs(parts.query, keep_blank_values=True),
                                  {k.lower(): v for k, v in self.headers.items()}, body)
                with fake._lock:
                    fake.requests.append(request)
                code, answer = fake.answer(request)
                data = answer.encode() if isinstance(answer, str) else json.dumps(answer).encode()
                self.send_response(code)
                self.send_header("Content-Type", "text/plain" if isinstance(answer, str)
                                 else "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> FakeKube:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def answer(self, request: Request) -> tuple[int, Any]:
        routed = self.routes.get((request.method, request.path))
        if routed is not None:
            return routed
        if request.method == "PATCH":  # an apply of a new object: the object as sent
            return 200, request.json
        if request.method == "DELETE":
            return 404, status(404, "NotFound", f"{request.path} not found")
        return 404, status(404, "NotFound", f"{request.path} not found")

    def route(self, method: str, path: str, code: int, body: Any) -> None:
        self.routes[(method, path)] = (code, body)

    def made(self, method: str | None = None, prefix: str = "") -> list[Request]:
        with self._lock:
            return [r for r in self.requests
                    if (method is None or r.method == method) and r.path.startswith(prefix)]

    def clear(self) -> None:
        with self._lock:
            self.requests.clear()
