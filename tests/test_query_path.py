"""The query path's own pieces: the replica's HTTP server (a real replica process on a real
socket) and the batch that is checked and encoded once for all its requests."""
from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httptools
import joblib
import pytest
import requests
from conftest import ROW, start_server, terminate, wait_for
from model_fixtures import Slow, save

from liveml_ext.core.errors import ServiceUnavailable
from liveml_ext.gateway.pool import Gateway, Pool
from liveml_runtime.adapter import ModelRunner, encode, wrap
from liveml_runtime.batching import InferenceQueue, _Item
from liveml_runtime.errors import InferenceFailure
from liveml_runtime.wire import BATCH_PATH, CONTENT_TYPE, pack_queries, unpack_answers

TOKEN = "replica-secret"


class Replica:
    """``python -m liveml_runtime serve`` on 127.0.0.1, as the local backend starts one."""

    def __init__(self, artifact: Path, folder: Path, *args: str) -> None:
        port_file = folder / "port"
        env = {**os.environ, "LIVEML_REPLICA_TOKEN": TOKEN, "OMP_NUM_THREADS": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "liveml_runtime", "serve", "--artifact", str(artifact),
             "--port", "0", "--port-file", str(port_file), *args],
            stdout=open(folder / "replica.log", "wb"), stderr=subprocess.STDOUT, env=env)
        wait_for(lambda: port_file.exists() or self.proc.poll() is not None, timeout=60,
                 what="the replica's port file")
        assert self.proc.poll() is None, (folder / "replica.log").read_text()
        self.port = int(port_file.read_text())
        wait_for(lambda: self.exchange(get("/health/ready"))[0][0] == 200, timeout=60,
                 what="the replica to be ready")

    def connect(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=30)

    def exchange(self, data: bytes, answers: int = 1) -> list[tuple[int, dict, dict]]:
        with self.connect() as sock:
            sock.sendall(data)
            return read_answers(sock, answers)


def post(path: str, body: bytes, token: str = TOKEN, close: bool = False,
         extra: str = "") -> bytes:
    head = (f"POST {path} HTTP/1.1\r\nHost: replica\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nX-LiveML-Replica-Token: {token}\r\n{extra}"
            + ("Connection: close\r\n" if close else "") + "\r\n")
    return head.encode() + body


def get(path: str, close: bool = True) -> bytes:
    return (f"GET {path} HTTP/1.1\r\nHost: replica\r\n"
            + ("Connection: close\r\n" if close else "") + "\r\n").encode()


def v1(*rows: dict) -> bytes:
    return json.dumps({"requestData": list(rows), "requestParams": {}}).encode()


class _Answers:
    """httptools' response callbacks: (status, headers, JSON body) of each answer."""

    def __init__(self) -> None:
        self.done: list[tuple[int, dict, dict]] = []
        self.headers: dict[str, str] = {}
        self.body = b""
        self.parser = httptools.HttpResponseParser(self)

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.decode().lower()] = value.decode()

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        self.done.append((self.parser.get_status_code(), self.headers, json.loads(self.body)))
        self.headers, self.body = {}, b""


def read_answers(sock: socket.socket, count: int) -> list[tuple[int, dict, dict]]:
    """Read ``count`` answers (and, when the server closes, what came before)."""
    answers = _Answers()
    while len(answers.done) < count:
        data = sock.recv(65536)
        if not data:
            break
        answers.parser.feed_data(data)
    return answers.done


def closed_by_server(sock: socket.socket) -> bool:
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


@pytest.fixture(scope="module")
def replica(house_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replica]:
    r = Replica(house_model, tmp_path_factory.mktemp("replica"))
    yield r
    terminate(r.proc)


def test_pipelined_requests_on_one_connection_are_answered_in_order(replica):
    bodies = [v1({**ROW, "bedrooms": n}) for n in (1, 2, 3, 4)]
    answers = replica.exchange(b"".join(post("/v1/transform", b) for b in bodies)
                               + get("/health/live"), answers=5)
    assert [a[0] for a in answers] == [200] * 5
    assert [a[2]["responseData"][0]["bedrooms"] for a in answers[:4]] == [1, 2, 3, 4]
    assert answers[4][2] == {"status": "alive", "state": "ready"}
    assert answers[4][1]["connection"] == "close"


def test_keep_alive_connection_serves_one_request_after_another(replica):
    with replica.connect() as sock:
        for n in (1, 2, 3):
            sock.sendall(post("/v1/transform", v1({**ROW, "bedrooms": n})))
            [(status, headers, doc)] = read_answers(sock, 1)
            assert status == 200 and "connection" not in headers
            assert doc["responseData"][0]["bedrooms"] == n


def test_chunked_body_and_expect_continue(replica):
    body = v1(ROW)
    chunked = (b"POST /v1/transform HTTP/1.1\r\nHost: replica\r\nTransfer-Encoding: chunked\r\n"
               b"Content-Type: application/json\r\nX-LiveML-Replica-Token: " + TOKEN.encode()
               + b"\r\nConnection: close\r\n\r\n"
               + b"".join(b"%x\r\n%s\r\n" % (len(part), part)
                          for part in (body[:10], body[10:30], body[30:])) + b"0\r\n\r\n")
    [(status, _, doc)] = replica.exchange(chunked)
    assert status == 200 and doc["responseData"][0]["house-location"] == "New York"

    with replica.connect() as sock:
        sock.sendall(post("/v1/transform", b"", extra="Expect: 100-continue\r\n").replace(
            b"Content-Length: 0", b"Content-Length: %d" % len(body)))
        assert sock.recv(64).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        sock.sendall(body)
        [(status, _, doc)] = read_answers(sock, 1)
        assert status == 200 and len(doc["responseData"]) == 1


def envelope(answer: tuple[int, dict, dict], status: int, name: str) -> str:
    code, headers, doc = answer
    assert code == status and headers["content-type"] == "application/json", answer
    assert set(doc) == {"errorCode", "errorName", "errorInstanceId", "parameters"}
    assert doc["errorName"] == name
    return str(doc["parameters"]["message"])


def test_unknown_path_wrong_method_and_missing_token_are_envelopes(replica):
    assert "/v1/transform" in envelope(replica.exchange(get("/nope"))[0], 404, "NotFound")
    message = envelope(replica.exchange(get("/v1/transform"))[0], 405, "MethodNotAllowed")
    assert "POST" in message
    message = envelope(replica.exchange(post("/v1/transform", v1(ROW), token="wrong",
                                             close=True))[0], 401, "Unauthorized")
    assert "control plane" in message


def test_malformed_http_gets_a_400_envelope_then_the_connection_closes(replica):
    with replica.connect() as sock:
        sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        [answer] = read_answers(sock, 1)
        assert "malformed HTTP" in envelope(answer, 400, "InvalidArgument")
        assert closed_by_server(sock)
    # the answers due before a malformed request are written first
    with replica.connect() as sock:
        sock.sendall(post("/v1/transform", v1(ROW)) + b"GARBAGE\r\n\r\n")
        first, second = read_answers(sock, 2)
        assert first[0] == 200
        envelope(second, 400, "InvalidArgument")
        assert closed_by_server(sock)


def test_a_full_replica_answers_429(house_model, tmp_path):
    """One worker busy and one request waiting (``--max-queue 1``): the others get a 429."""
    model = save(Slow(2.0), tmp_path / "slow.pkl")
    slow = Replica(model, tmp_path, "--max-queue", "1")
    try:
        socks = [slow.connect() for _ in range(4)]
        for sock in socks:
            sock.sendall(post("/v1/transform", v1({"x": 1.0})))
        answers = [read_answers(sock, 1)[0] for sock in socks]
        for sock in socks:
            sock.close()
        assert sorted(a[0] for a in answers) == [200, 200, 429, 429]
        assert all("at capacity" in envelope(a, 429, "TooManyRequests")
                   for a in answers if a[0] == 429)
    finally:
        terminate(slow.proc)


def test_a_replica_drains_on_sigterm(house_model, tmp_path):
    """A request in flight when SIGTERM comes is answered; the process then exits 0."""
    model = save(Slow(1.0), tmp_path / "slow.pkl")
    slow = Replica(model, tmp_path)
    with slow.connect() as sock:
        sock.sendall(post("/v1/transform", v1({"x": 1.0})))
        wait_for(lambda: slow.exchange(get("/health/ready"))[0][2]["inflight"] == 1,
                 timeout=30, what="the request to be in flight")
        slow.proc.terminate()
        [(status, _, doc)] = read_answers(sock, 1)
    assert status == 200 and doc["responseData"] == [{"x": 1.0}]
    assert slow.proc.wait(30) == 0


# --- a batch: checked and encoded once, each request gets its own rows ----------------------
def same_rows(got: list[list[dict]], want: list[list[dict]]) -> bool:
    """Equal rows, predictions to the last few bits (a batch's matrix product may round apart)."""
    def norm(rows: list[dict]) -> list[dict]:
        return [{k: pytest.approx(v) if isinstance(v, float) else v for k, v in row.items()}
                for row in rows]
    return [norm(r) for r in want] == got


def test_a_batch_is_encoded_once_and_split_per_request(house_model):
    runner = ModelRunner(wrap(joblib.load(house_model)))
    queue = InferenceQueue(runner)
    requests = [[{**ROW, "bedrooms": n}] for n in (1, 2)] + [[ROW, {**ROW, "bedrooms": 5}]]

    async def run(rows: list[list[dict]]) -> list:
        batch = [_Item({"input_df": r}, (), len(r)) for r in rows]
        return queue._run(batch)

    results = asyncio.run(run(requests))
    alone = [encode(runner.infer(runner.to_frames({"input_df": r}))["output_df"])
             for r in requests]
    assert same_rows([encode(r["output_df"]) for r in results], alone)
    assert [len(r["output_df"]) for r in results] == [1, 1, 2]

    # +-inf in one request's rows: only that request fails, naming its own row
    bad = [[ROW], [ROW, {**ROW, "bedrooms": 1e308}], [{**ROW, "bedrooms": 2}]]
    results = asyncio.run(run(bad))
    assert encode(results[0]["output_df"])[0]["bedrooms"] == 3
    with pytest.raises(InferenceFailure) as err:
        encode(results[1]["output_df"])
    assert err.value.parameters["errorType"] == {"type": "nonFiniteOutput",
                                                 "column": "prediction", "row": 1}
    assert encode(results[2]["output_df"])[0]["bedrooms"] == 2
    queue.shutdown()


# --- the gateway's timeout ------------------------------------------------------------------
def test_a_query_slower_than_the_inference_timeout_is_a_504(tmp_path):
    """The gateway's one timer per request ends in a 504 ``InferenceTimeout`` that says what to
    do (a timeout is an ``OSError`` too, which once made it a 502 ``ReplicaFailed``)."""
    server = start_server(tmp_path / "home", args=("--inference-timeout", "1"))
    try:
        c = server.client
        c.create_objective("slow")
        c.submit("slow", save(Slow(3.0), tmp_path / "slow.pkl"), name="s")
        c.release("slow", "s", "1", tag="production")
        rid = c.wait(c.deploy("slow", name="Slow", replicas=1)["rid"], timeout=120)["rid"]
        resp = requests.post(server.infer_url(rid), headers=server.headers(), timeout=30,
                             json={"requestData": [{"x": 1.0}], "requestParams": {}})
        assert resp.status_code == 504, resp.text
        doc = resp.json()
        assert doc["errorName"] == "InferenceTimeout"
        assert "--inference-timeout" in doc["parameters"]["message"]
        c.delete(rid)
    finally:
        server.stop()


# --- the gateway's batch call (liveml_runtime.wire) -------------------------------------------
def raw_exchange(replica: Replica, data: bytes) -> tuple[int, dict[str, str], bytes]:
    """One request; the answer's status, headers and raw body (the batch answer is binary)."""
    got: dict = {"headers": {}, "body": b""}

    class Raw:
        def on_header(self, name: bytes, value: bytes) -> None:
            got["headers"][name.decode().lower()] = value.decode()

        def on_body(self, body: bytes) -> None:
            got["body"] += body

        def on_message_complete(self) -> None:
            got["done"] = True

    parser = httptools.HttpResponseParser(Raw())
    with replica.connect() as sock:
        sock.sendall(data)
        while "done" not in got:
            chunk = sock.recv(65536)
            assert chunk, "the replica closed the connection"
            parser.feed_data(chunk)
    return parser.get_status_code(), got["headers"], got["body"]


def test_a_batch_call_answers_each_query_as_if_it_came_alone(replica):
    """Queries of one batch call: each gets exactly the status and body it gets alone, in
    order, a bad one included (it costs the others nothing)."""
    rows = [dict(ROW, bedrooms=n) for n in (1, 2, 3)]
    queries = [(False, v1(rows[0])), (False, v1({"bedrooms": "many"})), (True, json.dumps(
        {"input_df": [rows[1], rows[2]]}).encode()), (False, b"{not json")]
    alone = [raw_exchange(replica, post("/v2/transform" if v2 else "/v1/transform", body))
             for v2, body in queries]
    status, headers, data = raw_exchange(replica, post(BATCH_PATH, pack_queries(queries)))
    assert status == 200 and headers["content-type"] == CONTENT_TYPE
    answers = unpack_answers(data, len(queries))
    assert [s for s, _ in answers] == [a[0] for a in alone] == [200, 400, 200, 422]
    for (s, body), (_, _, want) in zip(answers, alone):
        got, expected = json.loads(body), json.loads(want)
        if s != 200:  # an error's instance id is its own
            got.pop("errorInstanceId"), expected.pop("errorInstanceId")
            assert got == expected
        else:
            assert same_rows([got.popitem()[1]], [expected.popitem()[1]]) and got == expected


def test_a_malformed_or_unauthenticated_batch_call_is_an_envelope(replica):
    good = pack_queries([(False, v1(ROW))])
    bad = raw_exchange(replica, post(BATCH_PATH, good[:-3]))  # cut short
    assert bad[0] == 400 and json.loads(bad[2])["errorName"] == "InvalidArgument"
    assert "malformed batch call" in json.loads(bad[2])["parameters"]["message"]
    kinds = raw_exchange(replica, post(BATCH_PATH, b"\x07" + good[1:]))
    assert kinds[0] == 400 and "unknown kind 7" in json.loads(kinds[2])["parameters"]["message"]
    denied = raw_exchange(replica, post(BATCH_PATH, good, token="wrong"))
    assert denied[0] == 401 and json.loads(denied[2])["errorName"] == "Unauthorized"


def test_concurrent_queries_share_batch_calls_and_each_gets_its_own_rows(replica):
    """64 queries at once to a replica that takes one call at a time: they go out in a few
    batch calls, and each caller gets the prediction of its own row."""
    counted: list[str] = []

    async def scenario() -> list[tuple[int, bytes, str]]:
        gateway = Gateway(timeout=60)
        post_ = gateway.client.post

        async def counting(url: str, path: str, body: bytes, timeout: float,
                           token: str = "") -> tuple[int, bytes]:
            counted.append(path)
            return await post_(url, path, body, timeout, token=token)

        gateway.client.post = counting  # type: ignore[method-assign]
        pool = Pool("rid", "default")
        pool.add("only", f"http://127.0.0.1:{replica.port}", token=TOKEN)
        try:
            return await asyncio.gather(*(gateway.forward(pool, v1(dict(ROW, bedrooms=n)),
                                                          v2=False) for n in range(64)))
        finally:
            await gateway.close()

    answers = asyncio.run(scenario())
    alone = [json.loads(raw_exchange(replica, post("/v1/transform", v1(dict(
        ROW, bedrooms=n))))[2])["responseData"] for n in range(64)]
    assert same_rows([json.loads(data)["responseData"] for _, data, _ in answers], alone)
    assert {status for status, _, _ in answers} == {200}
    assert BATCH_PATH in counted and len(counted) < 64 / 4, counted


def test_queries_waiting_for_a_replica_that_leaves_the_pool_hear_why(tmp_path):
    """Queries wait in the pool while its one replica is busy; when that replica leaves the
    pool (retired, lost), they get the pool's 503 at once instead of waiting for it."""
    replica = Replica(save(Slow(2.0), tmp_path / "slow.pkl"), tmp_path)
    body = v1({"x": 1.0})

    async def scenario() -> list:
        gateway = Gateway(timeout=60)
        pool = Pool("rid", "default", unavailable_reason="the deployment is disabled")
        pool.add("only", f"http://127.0.0.1:{replica.port}", token=TOKEN)
        try:
            busy = asyncio.ensure_future(gateway.forward(pool, body, v2=False))
            await asyncio.sleep(0.2)  # its call is in flight: the next queries wait
            waiting = [asyncio.ensure_future(gateway.forward(pool, body, v2=False))
                       for _ in range(3)]
            await asyncio.sleep(0.2)
            assert len(pool.waiting) == 3 and not any(w.done() for w in waiting)
            pool.remove("only")
            answers = await asyncio.gather(*waiting, return_exceptions=True)
            assert not busy.done()  # the replica still finishes what it holds
            answers.append(await busy)
            return answers
        finally:
            await gateway.close()

    try:
        *refused, served = asyncio.run(scenario())
    finally:
        terminate(replica.proc)
    assert all(isinstance(a, ServiceUnavailable) and a.status == 503 and
               "disabled" in a.message for a in refused), refused
    assert served[0] == 200
