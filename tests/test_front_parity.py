"""The standalone server's inference route (``InferenceFront``: no RequestHandler) answers each
case as the RequestHandler route (``InferenceHandler``, the Jupyter extension's) does: the same
status line, headers (but Date), envelope (but its errorInstanceId) and connection handling.

One real control plane serves both routes, on two ports of one process (run as a script,
below): ``make_app`` on the first, the same route table with a RequestHandler subclass as the
handlers' base (so the inference route is ``InferenceHandler``) on the second.
"""
from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from conftest import ROW, Server, deploy_reference, free_port, terminate, wait_for

from liveml_ext.handlers.inference import InferenceFront
from liveml_ext.server import make_app

LIMIT = 4096  # max_body_bytes of the server below
ENVELOPE = {"errorCode", "errorName", "errorInstanceId", "parameters"}


@pytest.fixture(scope="module")
def two(tmp_path_factory, house_model):
    """(fast-path Server, RequestHandler base URL, RID of a ready deployment)."""
    home = tmp_path_factory.mktemp("parity")
    fast, plain = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVEML_")}
    env["LIVEML_MAX_BODY_BYTES"] = str(LIMIT)
    log = open(home / "server.log", "ab")
    proc = subprocess.Popen([sys.executable, __file__, str(home), str(fast), str(plain)],
                            stdout=log, stderr=subprocess.STDOUT, env=env)
    conn = home / "connection.json"
    wait_for(lambda: conn.exists() or proc.poll() is not None, timeout=60, what="control plane")
    assert proc.poll() is None, (home / "server.log").read_text()
    doc = json.loads(conn.read_text())
    srv = Server(home, fast, proc, doc["url"], doc["token"])
    rid = deploy_reference(srv, house_model, "parity", "Parity", replicas=1)["rid"]
    # capture on: it reads the request's X-Request-Id and sets the answer's
    srv.client.update(rid, runtimeConfiguration={"capture": "both", "captureSample": 1.0})
    yield srv, f"http://127.0.0.1:{plain}/", rid
    terminate(proc)


def answer(resp: requests.Response) -> dict:
    """What must be equal through both routes."""
    headers = {k: v for k, v in resp.headers.items() if k != "Date"}
    if re.fullmatch(r"[0-9a-f]{32}", headers.get("X-Request-Id", "")):
        headers["X-Request-Id"] = "<a new one>"
    try:
        body = resp.json()
    except ValueError:
        body = resp.content
    if isinstance(body, dict) and set(body) == ENVELOPE:
        assert body.pop("errorInstanceId")
    return {"status": resp.status_code, "reason": resp.reason, "headers": headers, "body": body}


def cases(srv: Server, rid: str, other: str) -> dict[str, dict]:
    """name -> requests.request keywords (the URL is relative to the server's base)."""
    path = f"foundry-ml-live/api/inference/transform/{rid}"
    good = {"Authorization": f"Bearer {srv.token}", "Content-Type": "application/json"}
    body = json.dumps({"requestData": [ROW], "requestParams": {}})
    post = {"method": "POST", "path": path, "headers": good, "data": body}
    big = json.dumps({"requestData": [ROW] * 80, "requestParams": {}})
    assert len(big) > LIMIT
    return {
        "ok v1": post,
        "ok v2": {**post, "path": path + "/v2", "data": json.dumps({"input_df": [ROW]})},
        "ok, trailing slash": {**post, "path": path + "/"},
        "ok, +json": {**post, "headers": {**good, "Content-Type": "application/vnd.x+json"}},
        "ok, no content type": {**post, "headers": {"Authorization": good["Authorization"]}},
        "request id kept": {**post, "headers": {**good, "X-Request-Id": "parity-1"}},
        "no token": {**post, "headers": {"Content-Type": "application/json"}},
        "bad liveml token": {**post, "headers": {**good, "Authorization": "Bearer lml_nope"}},
        "other scheme": {**post, "headers": {**good, "Authorization": "token garbage"}},
        "other namespace": {**post, "headers": {**good, "Authorization": f"Bearer {other}"}},
        "unknown rid": {**post, "path": path.replace(rid, "ri.nothing.here")},
        "text/plain": {**post, "headers": {**good, "Content-Type": "text/plain"}},
        "declared too large": {**post, "data": big},
        "chunked too large": {**post, "data": iter([big.encode()])},
        "not JSON": {**post, "data": "{nope"},
        "invalid input": {**post, "data": json.dumps({"requestData": [{"x": 1}]})},
        "GET": {**post, "method": "GET", "data": None},
        "HEAD": {**post, "method": "HEAD", "data": None},
        "PUT": {**post, "method": "PUT"},
        "TRACE": {**post, "method": "TRACE", "data": None},
        "GET without token": {"method": "GET", "path": path},
    }


def test_the_standalone_route_table_serves_inference_without_a_request_handler():
    app = make_app(None)  # type: ignore[arg-type]  # the rules only
    first = app.wildcard_router.rules[0]
    assert isinstance(first.target, InferenceFront)
    assert not isinstance(first.target, type)  # not a tornado.web.RequestHandler class


def test_every_case_answers_the_same_through_both_routes(two):
    srv, plain, rid = two
    other = srv.client.create_token(namespace="elsewhere", scope="query")["token"]
    wrong = []
    for name, kw in cases(srv, rid, other).items():
        got = []
        for base in (srv.url, plain):
            kw2 = dict(kw)
            url = base + kw2.pop("path")
            if name == "chunked too large":  # a generator is used up by the first call
                kw2["data"] = iter([json.dumps({"requestData": [ROW] * 80}).encode()])
            got.append(answer(requests.request(url=url, timeout=30, **kw2)))
        if got[0] != got[1]:
            wrong.append(f"{name}:\n  fast  {got[0]}\n  plain {got[1]}")
        elif name.startswith("ok"):
            assert got[0]["status"] == 200, got[0]
            assert got[0]["headers"]["X-Request-Id"] == "<a new one>", got[0]
        elif name == "request id kept":
            assert got[0]["headers"]["X-Request-Id"] == "parity-1", got[0]
    assert not wrong, "\n".join(wrong)


def raw(base: str, head: str, body: bytes = b"") -> list[bytes]:
    """Send one raw HTTP request and read until the server closes or 2 s idle: the bytes."""
    host, port = base.removeprefix("http://").rstrip("/").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(head.encode() + body)
        chunks = []
        sock.settimeout(2)
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except TimeoutError:
            chunks.append(b"<still open>")
    return chunks


def test_keep_alive_and_early_refusals_treat_the_connection_the_same(two):
    """Two pipelined queries on one connection are both answered and it stays open; a refusal
    before the body is read closes it (the unread body is not taken as the next request)."""
    srv, plain, rid = two
    body = json.dumps({"requestData": [ROW], "requestParams": {}}).encode()
    path = f"/foundry-ml-live/api/inference/transform/{rid}"

    def head(auth: str, extra: str = "") -> str:
        return (f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                f"Authorization: Bearer {auth}\r\nContent-Length: {len(body)}\r\n{extra}\r\n")

    def shape(chunks: list[bytes]) -> list[str]:
        text = b"".join(chunks).decode(errors="replace")
        return [line for line in text.split("\r\n")
                if line.startswith("HTTP/") or line == "<still open>"]

    for name, (h, b) in {
        "pipelined": (head(srv.token), body + head(srv.token).encode() + body),
        "refused": (head("lml_nope"), body),
        "refused, 100-continue": (head("lml_nope", "Expect: 100-continue\r\n"), b""),
    }.items():
        fast, slow = shape(raw(srv.url, h, b)), shape(raw(plain, h, b))
        assert fast == slow, (name, fast, slow)


def _serve(home: str, fast: int, plain: int) -> None:
    """The script: one control plane on ``home``, its routes on two ports, until SIGTERM."""
    import asyncio

    import tornado.httpserver
    import tornado.web

    from liveml_ext.controlplane import ControlPlane
    from liveml_ext.handlers import routes
    from liveml_ext.server import _access_log
    from liveml_ext.settings import Settings

    class Plain(tornado.web.RequestHandler):
        """A RequestHandler base that is not tornado's own: no fast path."""

    async def main() -> None:
        cp = ControlPlane(Settings.load(home=Path(home)))
        apps = {fast: make_app(cp),
                plain: tornado.web.Application(routes(cp, "/", base=Plain),
                                               log_function=_access_log)}
        servers = []
        for port, app in apps.items():
            server = tornado.httpserver.HTTPServer(app, max_body_size=1 << 30,
                                                   max_buffer_size=1 << 30)
            server.listen(port, "127.0.0.1")
            servers.append(server)
        await cp.start()
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        cp.write_connection_file(f"http://127.0.0.1:{fast}/")
        await stop.wait()
        for server in servers:
            server.stop()
        await cp.stop()

    asyncio.run(main())


if __name__ == "__main__":
    _serve(*sys.argv[1:2], *map(int, sys.argv[2:4]))  # type: ignore[call-arg]
