"""The replica server: one model release behind HTTP.

Routes (all JSON, errors in the platform's envelope):
    POST /v1/transform   {"requestData": [rows], "requestParams": {}} -> {"modelUuid", "responseData"}
    POST /v2/transform   {input: rows or value, ...} -> {output: rows or value, ...}
    GET  /health/live    200 while the process serves
    GET  /health/ready   200 once the model is loaded and its self-test passed, else 503
    GET  /api            the model's declared inputs and outputs

The replica reports ready only after load and self-test; on SIGTERM it stops taking new work,
finishes what is in flight and exits. It exits by itself when its parent goes away.
"""
from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import time
from dataclasses import dataclass
from typing import Any

import orjson
import tornado.httpserver
import tornado.netutil
import tornado.web

from . import logs
from .adapter import ModelRunner, encode, load_model
from .batching import InferenceQueue
from .errors import LiveMLError, MalformedRequestBody, ServiceUnavailable

log = logging.getLogger("liveml.replica")
_DUMP = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


def dumps(doc: Any) -> bytes:
    return orjson.dumps(doc, option=_DUMP, default=str)


@dataclass
class ReplicaConfig:
    artifact: str
    model_uuid: str = ""
    node_id: str = "replica"
    deployment_rid: str = ""
    release: str = ""
    thread_count: int = 1
    token: str = ""


class Replica:
    """State of one replica: loading -> ready (or failed) -> draining."""

    def __init__(self, config: ReplicaConfig) -> None:
        self.config = config
        self.state = "loading"
        self.reason = ""
        self.runner: ModelRunner | None = None
        self.queue: InferenceQueue | None = None
        self.inflight = 0

    def load(self) -> None:
        """Load the artifact and run the self-test (on a worker thread)."""
        path = self.config.artifact
        size = os.path.getsize(path)
        logs.step(log, f"Loading model artifact ({size} bytes)", artifact=path, bytes=size)
        start = time.perf_counter()
        adapter = load_model(path)
        runner = ModelRunner(adapter)
        adapter.load()
        logs.step(log, f"Model loaded in {time.perf_counter() - start:.3f}s",
                  adapter=type(adapter).__name__, seconds=time.perf_counter() - start)
        start = time.perf_counter()
        runner.self_test()
        logs.step(log, f"Self-test prediction passed in {time.perf_counter() - start:.3f}s",
                  seconds=time.perf_counter() - start)
        self.runner = runner
        self.queue = InferenceQueue(runner, workers=self.config.thread_count)

    async def transform(self, body: bytes, v2: bool) -> bytes:
        if self.state != "ready" or self.queue is None or self.runner is None:
            raise ServiceUnavailable(f"the replica is {self.state}", replicaState=self.state)
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise MalformedRequestBody(f"the body is not valid JSON: {exc}") from exc
        api = self.runner.api
        inputs = api.decode_v2(doc) if v2 else api.decode_v1(doc)
        outputs = await self.queue.infer(inputs)
        if v2:
            return dumps({name: encode(value) for name, value in outputs.items()})
        return dumps({"modelUuid": self.config.model_uuid,
                      "responseData": encode(next(iter(outputs.values())))})


class _Base(tornado.web.RequestHandler):
    def initialize(self, replica: Replica) -> None:
        self.replica = replica

    def prepare(self) -> None:
        token = self.replica.config.token
        if token and self.request.headers.get("X-LiveML-Replica-Token") != token:
            self.send(401, {"errorCode": "UNAUTHORIZED", "errorName": "Unauthorized",
                            "errorInstanceId": "", "parameters": {}})

    def send(self, status: int, doc: Any) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(doc if isinstance(doc, bytes) else dumps(doc))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None))[1]
        err = exc if isinstance(exc, LiveMLError) else LiveMLError(self._reason)
        self.send(err.status if isinstance(exc, LiveMLError) else status_code, err.envelope())

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        if not isinstance(value, LiveMLError) or value.status >= 500 and value.status != 503:
            super().log_exception(typ, value, tb)


class TransformHandler(_Base):
    def initialize(self, replica: Replica, v2: bool = False) -> None:  # type: ignore[override]
        self.replica, self.v2 = replica, v2

    async def post(self) -> None:
        self.replica.inflight += 1
        try:
            self.send(200, await self.replica.transform(self.request.body, self.v2))
        except LiveMLError as err:
            self.send(err.status, err.envelope())
        finally:
            self.replica.inflight -= 1


class LiveHandler(_Base):
    def get(self) -> None:
        self.send(200, {"status": "alive", "state": self.replica.state})


class ReadyHandler(_Base):
    def get(self) -> None:
        r = self.replica
        self.send(200 if r.state == "ready" else 503,
                  {"ready": r.state == "ready", "state": r.state, "reason": r.reason,
                   "inflight": r.inflight})


class ApiHandler(_Base):
    def get(self) -> None:
        if self.replica.runner is None:
            raise ServiceUnavailable("the model is not loaded yet")
        self.send(200, self.replica.runner.api.to_dict())


def make_app(replica: Replica) -> tornado.web.Application:
    args = {"replica": replica}
    return tornado.web.Application([
        (r"/v1/transform", TransformHandler, args),
        (r"/v2/transform", TransformHandler, {**args, "v2": True}),
        (r"/health/live", LiveHandler, args),
        (r"/health/ready", ReadyHandler, args),
        (r"/api", ApiHandler, args),
    ], log_function=lambda handler: None)


async def serve(config: ReplicaConfig, host: str, port: int, port_file: str | None,
                max_body: int = 1 << 30) -> int:
    replica = Replica(config)
    sockets = tornado.netutil.bind_sockets(port, host)
    server = tornado.httpserver.HTTPServer(make_app(replica), max_body_size=max_body,
                                           max_buffer_size=max_body, xheaders=False)
    server.add_sockets(sockets)
    bound = sockets[0].getsockname()[1]
    logs.step(log, f"Replica listening on {host}:{bound}", port=bound, pid=os.getpid(),
              python=sys.version.split()[0])
    if port_file:
        tmp = f"{port_file}.tmp"
        with open(tmp, "w") as fh:
            fh.write(str(bound))
        os.replace(tmp, port_file)

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    parent = os.getppid()

    async def watch_parent() -> None:
        while not stop.is_set():
            await asyncio.sleep(1.0)
            if os.getppid() != parent:
                log.warning("The control plane went away; stopping")
                stop.set()

    watcher = loop.create_task(watch_parent())
    try:
        await loop.run_in_executor(None, replica.load)
    except Exception as exc:  # noqa: BLE001 - reported, then the process exits non-zero
        replica.state, replica.reason = "failed", f"{type(exc).__name__}: {exc}"
        log.error("Model failed to start: %s", replica.reason, exc_info=True)
        watcher.cancel()
        return 3
    replica.state = "ready"
    logs.step(log, "Replica ready", state="ready")
    await stop.wait()
    replica.state = "draining"
    log.info("Draining: %d request(s) in flight", replica.inflight)
    server.stop()
    deadline = time.monotonic() + 30
    while replica.inflight and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    await server.close_all_connections()
    if replica.queue:
        replica.queue.shutdown()
    watcher.cancel()
    log.info("Replica stopped")
    return 0
