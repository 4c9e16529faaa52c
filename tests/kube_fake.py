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
from typing import Any

import kubernetes.client
from json_http import JsonHttpServer


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
        self._lock = threading.Lock()
        self.http = JsonHttpServer(self._record, name="kube-fake")

    def _record(self, method: str, path: str, query: dict[str, list[str]],
                headers: dict[str, str], body: bytes) -> tuple[int, Any]:
        request = Request(method, path, query, headers, body)
        with self._lock:
            self.requests.append(request)
        return self.answer(request)

    @property
    def url(self) -> str:
        return self.http.url

    def api_client(self) -> kubernetes.client.ApiClient:
        """A client of the official library pointed at this server (the caller closes it)."""
        return kubernetes.client.ApiClient(kubernetes.client.Configuration(host=self.url))

    def start(self) -> FakeKube:
        self.http.start()
        return self

    def stop(self) -> None:
        self.http.stop()

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
