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
import gc
import importlib.metadata
import json
import logging
import os
import signal
import socket
import sys
import time
from dataclasses import dataclass
from typing import Any

import orjson
import pandas as pd
from aiohttp import web

from . import logs
from .adapter import ModelRunner, encode, load_model, prepare
from .api import MAX_COLUMNS, decode_body
from .batching import InferenceQueue
from .errors import Internal, LiveMLError, ServiceUnavailable, Unauthorized
from .frames import json_default, refuse_infinite
from .schema import InputExample

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
        outputs = await self.queue.infer(inputs)
        for value in outputs.values():
            if isinstance(value, pd.DataFrame):
                refuse_infinite(value)
        if v2:
            return dumps({name: encode(value) for name, value in outputs.items()})
        return dumps({"modelUuid": self.config.model_uuid,
                      "responseData": encode(next(iter(outputs.values())))})


def _reply(status: int, doc: Any) -> web.Response:
    return web.Response(status=status, body=doc if isinstance(doc, bytes) else dumps(doc),
                        content_type="application/json")


def make_app(replica: Replica) -> web.Application:
    """The replica's routes on aiohttp (its C HTTP parser keeps the per-request cost low)."""
    token = replica.config.token

    def authorized(request: web.Request) -> bool:
        return not token or request.headers.get("X-LiveML-Replica-Token") == token

    def unauthorized() -> web.Response:
        err = Unauthorized("the replica takes requests from its control plane only: send them "
                           "to the deployment's inference URL")
        return _reply(err.status, err.envelope())

    def transform(v2: bool) -> Any:
        async def handle(request: web.Request) -> web.Response:
            if not authorized(request):
                return unauthorized()
            replica.inflight += 1
            try:
                return _reply(200, await replica.transform(await request.read(), v2))
            except LiveMLError as err:
                return _reply(err.status, err.envelope())
            except Exception as exc:  # noqa: BLE001 - an envelope, never a bare 500 page
                log.exception("unexpected error in a transform")
                return _reply(500, Internal(f"{type(exc).__name__}: {exc}").envelope())
            finally:
                replica.inflight -= 1
        return handle

    async def live(request: web.Request) -> web.Response:
        return _reply(200, {"status": "alive", "state": replica.state})

    async def ready(request: web.Request) -> web.Response:
        r = replica
        return _reply(200 if r.state == "ready" else 503,
                      {"ready": r.state == "ready", "state": r.state, "reason": r.reason,
                       "inflight": r.inflight})

    async def api(request: web.Request) -> web.Response:
        if not authorized(request):
            return unauthorized()
        if replica.runner is None:
            err = ServiceUnavailable("the model is not loaded yet")
            return _reply(err.status, err.envelope())
        return _reply(200, replica.runner.api.to_dict())

    app = web.Application(client_max_size=1 << 30)
    app.router.add_post("/v1/transform", transform(False))
    app.router.add_post("/v2/transform", transform(True))
    app.router.add_get("/health/live", live)
    app.router.add_get("/health/ready", ready)
    app.router.add_get("/api", api)
    return app


async def serve(config: ReplicaConfig, host: str, port: int, port_file: str | None) -> int:
    replica = Replica(config)
    sock = socket.create_server((host, port), reuse_port=False)
    runner = web.AppRunner(make_app(replica), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.SockSite(runner, sock, shutdown_timeout=30)
    await site.start()
    bound = sock.getsockname()[1]
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
        await runner.cleanup()
        return 3
    # the model's imports leave a large heap: collect it now and keep it out of later full
    # collections, which would otherwise stall the first seconds of serving
    gc.collect()
    gc.freeze()
    replica.state = "ready"
    logs.step(log, "Replica ready", state="ready")
    await stop.wait()
    replica.state = "draining"
    log.info("Draining: %d request(s) in flight", replica.inflight)
    deadline = time.monotonic() + 30
    while replica.inflight and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    await runner.cleanup()
    if replica.queue:
        replica.queue.shutdown()
    watcher.cancel()
    log.info("Replica stopped")
    return 0
