"""The replica server: one model release behind HTTP (a small HTTP/1.1 server on httptools).

Routes (all JSON, errors in the platform's envelope):
    POST /v1/transform   {"requestData": [rows], "requestParams": {}} -> {"modelUuid", "responseData"}
    POST /v2/transform   {input: rows or value, ...} -> {output: rows or value, ...}
    POST /batch/transform  many queries in one call, each answered as if alone (``wire``)
    GET  /health/live    200 while the process serves
    GET  /health/ready   200 once the model is loaded and its self-test passed, else 503
    GET  /api            the model's declared inputs and outputs

The replica reports ready only after load and self-test; on SIGTERM it stops taking new work,
finishes what is in flight and exits. It exits by itself when its parent goes away.
"""
from __future__ import annotations

import asyncio
import gc
import importlib.metadata
import json
import logging
import os
import signal
import socket
import sys
import time
from collections import deque
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import httptools
import orjson

from . import logs
from .adapter import ModelRunner, encode, load_model, prepare
from .api import MAX_COLUMNS, decode_body
from .batching import InferenceQueue
from .errors import (
    Internal,
    InvalidArgument,
    LiveMLError,
    MethodNotAllowed,
    NotFound,
    RequestEntityTooLarge,
    ServiceUnavailable,
    Unauthorized,
)
from .frames import json_default
from .schema import InputExample
from .wire import BATCH_PATH, CONTENT_TYPE, pack_answers, unpack_queries

log = logging.getLogger("liveml.replica")
_DUMP = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


def dumps(doc: Any) -> bytes:
    return orjson.dumps(doc, option=_DUMP, default=json_default)


@dataclass
class ReplicaConfig:
    artifact: str
    model_uuid: str = ""
    node_id: str = "replica"
    deployment_rid: str = ""
    release: str = ""
    thread_count: int = 1
    max_queue: int = 64
    requirements: str = ""  # a JSON file of {package: version} the model was saved with
    token: str = ""
    input_example: str = ""  # the submission's input example: a JSON file, or inline JSON
    max_columns: int = MAX_COLUMNS  # distinct keys a request's rows may carry (api.check_rows)


class Replica:
    """State of one replica: loading -> ready (or failed) -> draining."""

    def __init__(self, config: ReplicaConfig) -> None:
        self.config = config
        self.state = "loading"
        self.reason = ""
        self.runner: ModelRunner | None = None
        self.queue: InferenceQueue | None = None
        self.inflight = 0

    def check_environment(self) -> None:
        """Log the packages the release needs against what this replica has installed."""
        source = self.config.requirements or os.environ.get("LIVEML_REQUIREMENTS", "")
        if not source:
            return
        try:
            if source.lstrip().startswith("{"):
                needed = json.loads(source)  # given inline (a pod's environment)
            else:
                with open(source) as fh:
                    needed = json.load(fh)
        except (OSError, ValueError) as exc:
            log.warning("Cannot read the release's requirements: %s", exc)
            return
        mismatches = []
        for package, version in sorted(needed.items()):
            try:
                installed = importlib.metadata.version(package)
            except importlib.metadata.PackageNotFoundError:
                installed = None
            if installed != version:
                mismatches.append(package)
                log.warning("Environment: %s %s is required but %s", package, version,
                            f"{installed} is installed" if installed else "it is not installed",
                            extra={"fields": {"package": package, "required": version,
                                              "installed": installed}})
        logs.step(log, f"Environment checked: {len(needed) - len(mismatches)} of {len(needed)} "
                  "required packages match", python=sys.version.split()[0],
                  required=needed, mismatches=mismatches)

    @staticmethod
    def fetch(artifact: str) -> str:
        """A local path for the artifact: the path itself, or a download of an fsspec URL."""
        if "://" not in artifact or artifact.startswith("file://"):
            return artifact.removeprefix("file://")
        import tempfile

        import fsspec

        start = time.perf_counter()
        fd, target = tempfile.mkstemp(prefix="liveml-artifact-")
        os.close(fd)
        if artifact.startswith(("http://", "https://")):
            # the control plane's artifact download: it knows replicas by their shared secret
            import urllib.request

            token = os.environ.get("LIVEML_REPLICA_TOKEN", "")
            request = urllib.request.Request(
                artifact, headers={"X-LiveML-Replica-Token": token} if token else {})
            src_cm: Any = urllib.request.urlopen(request, timeout=60)
        else:
            src_cm = fsspec.open(artifact, "rb")
        with src_cm as src, open(target, "wb") as dst:
            while chunk := src.read(1 << 20):
                dst.write(chunk)
        size = os.path.getsize(target)
        logs.step(log, f"Downloaded the model artifact ({size} bytes) in "
                  f"{time.perf_counter() - start:.3f}s", url=artifact, bytes=size)
        return target

    def load(self) -> None:
        """Check the environment, load the artifact and run the self-test (on a worker thread)."""
        self.check_environment()
        path = self.fetch(self.config.artifact)
        size = os.path.getsize(path)
        logs.step(log, f"Loading model artifact ({size} bytes)", artifact=path, bytes=size)
        start = time.perf_counter()
        adapter = load_model(path)
        example = InputExample.load(self.config.input_example)
        runner = ModelRunner(adapter, example)
        if example is not None:
            logs.step(log, f"Input example: {len(example.columns)} columns, "
                      f"{len(example.rows)} rows for the self-test",
                      columns=[c.name for c in example.columns], rows=len(example.rows))
        prepare(adapter, self.config.thread_count)  # local Spark first, when the model needs it
        logs.step(log, f"Model loaded in {time.perf_counter() - start:.3f}s",
                  adapter=type(adapter).__name__, seconds=time.perf_counter() - start)
        start = time.perf_counter()
        runner.self_test()
        logs.step(log, f"Self-test prediction passed in {time.perf_counter() - start:.3f}s",
                  seconds=time.perf_counter() - start)
        self.runner = runner
        # LIVEML_MAX_BATCH_ROWS=1 turns batching off (benchmarks/spark_query.py compares)
        self.queue = InferenceQueue(runner, workers=self.config.thread_count,
                                    max_queue=self.config.max_queue,
                                    max_batch_rows=int(os.environ.get("LIVEML_MAX_BATCH_ROWS",
                                                                      "4096")))

    async def transform(self, body: bytes, v2: bool) -> bytes:
        if self.state != "ready" or self.queue is None or self.runner is None:
            raise ServiceUnavailable(f"the replica is {self.state}", replicaState=self.state)
        doc = decode_body(body)
        api, limit = self.runner.api, self.config.max_columns
        inputs = api.decode_v2(doc, limit) if v2 else api.decode_v1(doc, limit)
        outputs = await self.queue.infer(inputs)  # encode() refuses +-inf
        if v2:
            return dumps({name: encode(value) for name, value in outputs.items()})
        return dumps({"modelUuid": self.config.model_uuid,
                      "responseData": encode(next(iter(outputs.values())))})


# --- HTTP: a small HTTP/1.1 server on httptools ------------------------------------------------
#: The largest request body a replica reads (the control plane's own limit is far lower).
MAX_BODY_BYTES = 1 << 30
#: Pipelined requests a connection may queue before the server stops reading from it.
MAX_PIPELINED = 16
_PHRASES = {s.value: s.phrase for s in HTTPStatus}
_BATCH_TYPE = CONTENT_TYPE.encode()
Answer = tuple[int, bytes]


def answer(status: int, doc: Any) -> Answer:
    """A status and a JSON body (bytes pass through)."""
    return status, doc if isinstance(doc, bytes) else dumps(doc)


def error_answer(err: LiveMLError) -> Answer:
    return answer(err.status, err.envelope())


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    keep_alive: bool
    too_large: bool = False


class Routes:
    """The replica's routes: (method, path) -> an answer; authentication, 404, 405, 413."""

    def __init__(self, replica: Replica) -> None:
        self.replica = replica
        self.token = replica.config.token
        self.table: dict[str, dict[str, Any]] = {
            "/v1/transform": {"POST": self.transform_v1},
            "/v2/transform": {"POST": self.transform_v2},
            BATCH_PATH: {"POST": self.transform_batch},
            "/health/live": {"GET": self.live},
            "/health/ready": {"GET": self.ready},
            "/api": {"GET": self.api},
        }

    async def __call__(self, request: Request) -> Answer:
        methods = self.table.get(request.path)
        if methods is None:
            return error_answer(NotFound(f"no such endpoint: {request.path}; the replica serves "
                                         f"{', '.join(self.table)}"))
        handler = methods.get(request.method) or methods.get(
            "GET" if request.method == "HEAD" else "")
        if handler is None:
            return error_answer(MethodNotAllowed(
                f"{request.path} takes {', '.join(methods)}, not {request.method}"))
        if request.too_large:
            return error_answer(RequestEntityTooLarge(
                f"the request body is over the replica's {MAX_BODY_BYTES} byte limit; send "
                "fewer rows per request", maxBytes=MAX_BODY_BYTES))
        result: Answer = await handler(request)
        return result

    def authorized(self, request: Request) -> bool:
        return not self.token or request.headers.get("x-liveml-replica-token") == self.token

    @staticmethod
    def unauthorized() -> Answer:
        return error_answer(Unauthorized("the replica takes requests from its control plane "
                                         "only: send them to the deployment's inference URL"))

    async def transform_v1(self, request: Request) -> Answer:
        return await self.transform(request, False)

    async def transform_v2(self, request: Request) -> Answer:
        return await self.transform(request, True)

    async def transform(self, request: Request, v2: bool) -> Answer:
        if not self.authorized(request):
            return self.unauthorized()
        return await self.answer_query(request.body, v2)

    async def transform_batch(self, request: Request) -> Answer:
        """The gateway's batch call (``wire``): each query answered as if it came alone."""
        if not self.authorized(request):
            return self.unauthorized()
        try:
            queries = unpack_queries(request.body)
        except ValueError as exc:
            return error_answer(InvalidArgument(f"malformed batch call: {exc}"))
        answers = await asyncio.gather(*(self.answer_query(body, v2) for v2, body in queries))
        return 200, pack_answers(answers)

    async def answer_query(self, body: bytes, v2: bool) -> Answer:
        """One query's answer: its result, or its error in the envelope (never raises)."""
        replica = self.replica
        replica.inflight += 1
        try:
            return 200, await replica.transform(body, v2)
        except LiveMLError as err:
            return error_answer(err)
        except Exception as exc:  # noqa: BLE001 - an envelope, never a bare 500 page
            log.exception("unexpected error in a transform")
            return error_answer(Internal(f"{type(exc).__name__}: {exc}"))
        finally:
            replica.inflight -= 1

    async def live(self, request: Request) -> Answer:
        return answer(200, {"status": "alive", "state": self.replica.state})

    async def ready(self, request: Request) -> Answer:
        r = self.replica
        return answer(200 if r.state == "ready" else 503,
                      {"ready": r.state == "ready", "state": r.state, "reason": r.reason,
                       "inflight": r.inflight})

    async def api(self, request: Request) -> Answer:
        if not self.authorized(request):
            return self.unauthorized()
        if self.replica.runner is None:
            return error_answer(ServiceUnavailable("the model is not loaded yet"))
        return answer(200, self.replica.runner.api.to_dict())


class HttpConnection(asyncio.Protocol):
    """One client connection: requests parsed by httptools (the C parser uvicorn uses), keep-alive
    and pipelining (answers in request order, one request handled at a time), chunked bodies,
    ``Expect: 100-continue``; a malformed request gets a 400 envelope and the connection closes."""

    def __init__(self, routes: Routes, connections: set[HttpConnection]) -> None:
        self.routes = routes
        self.connections = connections
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.queue: deque[Request] = deque()
        self.task: asyncio.Task[None] | None = None
        self.paused = False
        self.refusal: Answer | None = None
        self._start()

    def _start(self) -> None:
        self.url = b""
        self.headers: dict[str, str] = {}
        self.chunks: list[bytes] = []
        self.size = 0

    @property
    def idle(self) -> bool:
        return self.task is None and not self.queue

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.connections.add(self)

    def data_received(self, data: bytes) -> None:
        if self.refusal is not None:
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._refuse("the replica does not upgrade connections")
        except httptools.HttpParserError as exc:
            self._refuse(f"malformed HTTP request: {exc}")

    def connection_lost(self, exc: Exception | None) -> None:
        self.connections.discard(self)
        self.queue.clear()  # nobody to answer; a request being handled still finishes

    # httptools callbacks
    def on_message_begin(self) -> None:
        self._start()

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        if self.headers.get("expect", "").lower() == "100-continue" and self.transport:
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        self.size += len(body)
        if self.size <= MAX_BODY_BYTES:
            self.chunks.append(body)
        else:
            self.chunks.clear()

    def on_message_complete(self) -> None:
        chunks = self.chunks
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        path = self.url.decode("latin-1").partition("?")[0]
        self.queue.append(Request(self.parser.get_method().decode(), path, self.headers, body,
                                  self.parser.should_keep_alive(),
                                  too_large=self.size > MAX_BODY_BYTES))
        if len(self.queue) >= MAX_PIPELINED and self.transport and not self.paused:
            self.paused = True
            self.transport.pause_reading()
        if self.task is None:
            self.task = asyncio.get_running_loop().create_task(self._serve())

    # answers
    async def _serve(self) -> None:
        try:
            while self.queue:
                request = self.queue.popleft()
                status, body = await self.routes(request)
                self._write(status, body, request.keep_alive, request.method == "HEAD",
                            _BATCH_TYPE if request.path == BATCH_PATH and status == 200
                            else b"application/json")
                if not request.keep_alive:
                    return
                if self.paused and self.refusal is None and self.transport and \
                        len(self.queue) < MAX_PIPELINED // 2:
                    self.paused = False
                    self.transport.resume_reading()
            if self.refusal is not None:
                self._write(*self.refusal, keep_alive=False)
        finally:
            self.task = None

    def _write(self, status: int, body: bytes, keep_alive: bool, head: bool = False,
               content_type: bytes = b"application/json") -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        transport.write(b"HTTP/1.1 %d %s\r\nContent-Type: %s\r\n"
                        b"Content-Length: %d\r\n%s\r\n%s" % (
                            status, _PHRASES.get(status, "Unknown").encode(), content_type,
                            len(body),
                            b"" if keep_alive else b"Connection: close\r\n",
                            b"" if head else body))
        if not keep_alive:
            transport.close()

    def _refuse(self, message: str) -> None:
        """A 400 for what the parser rejects, written after the answers due before it; then the
        connection closes."""
        self.refusal = error_answer(InvalidArgument(message))
        if self.transport is not None:
            self.transport.pause_reading()
        if self.task is None:
            self._write(*self.refusal, keep_alive=False)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def serve(config: ReplicaConfig, host: str, port: int, port_file: str | None) -> int:
    """Listen, load the model, serve until SIGTERM/SIGINT (or the parent goes), then drain."""
    replica = Replica(config)
    routes = Routes(replica)
    connections: set[HttpConnection] = set()
    loop = asyncio.get_running_loop()
    sock = socket.create_server((host, port), reuse_port=False)
    server = await loop.create_server(lambda: HttpConnection(routes, connections), sock=sock,
                                      backlog=1024)
    bound = sock.getsockname()[1]
    logs.step(log, f"Replica listening on {host}:{bound}", port=bound, pid=os.getpid(),
              python=sys.version.split()[0])
    if port_file:
        tmp = f"{port_file}.tmp"
        with open(tmp, "w") as fh:
            fh.write(str(bound))
        os.replace(tmp, port_file)

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

    def close_all() -> None:
        server.close()
        for conn in list(connections):
            conn.close()

    watcher = loop.create_task(watch_parent())
    try:
        await loop.run_in_executor(None, replica.load)
    except Exception as exc:  # noqa: BLE001 - reported, then the process exits non-zero
        replica.state, replica.reason = "failed", f"{type(exc).__name__}: {exc}"
        log.error("Model failed to start: %s", replica.reason, exc_info=True)
        watcher.cancel()
        close_all()
        return 3
    # the model's imports leave a large heap: collect it now and keep it out of later full
    # collections, which would otherwise stall the first seconds of serving
    gc.collect()
    gc.freeze()
    replica.state = "ready"
    logs.step(log, "Replica ready", state="ready")
    await stop.wait()
    replica.state = "draining"  # new queries get a 503, which the gateway sends elsewhere
    server.close()  # no new connection
    log.info("Draining: %d request(s) in flight", replica.inflight)
    deadline = time.monotonic() + 30
    while (replica.inflight or not all(c.idle for c in connections)) and \
            time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    close_all()
    if replica.queue:
        replica.queue.shutdown()
    watcher.cancel()
    log.info("Replica stopped")
    return 0
