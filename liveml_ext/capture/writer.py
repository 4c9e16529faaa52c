"""Capture of queries at the gateway, off the query path.

``Capture.offer`` runs on the event loop once per query that passed authentication (success and
error alike). It costs a dict lookup when the deployment's capture is off. When it is on, it
decides (failed queries always; others by ``captureSample``, from a hash of the request id, so
the same ids give the same sample), keeps references to the bodies it captures (none past
``captureMaxBytes``: a truncation flag instead) and appends a tuple to a bounded list. A writer
thread turns the list into Parquet files (``HistoryStore``) every ``interval`` seconds, and
``flush`` (before a read, and at stop) writes what is pending at once. A full list drops the
record and counts it (``dropped``); a query never waits for the disk and never fails for it.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import logging
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import orjson
from sqlalchemy import select

from ..core.deployments import ObservedStatus, Observer
from ..core.models import RuntimeConfiguration
from ..store.db import Deployment, Release, Store
from .store import HistoryStore

if TYPE_CHECKING:
    from ..gateway.shadow import Pair

log = logging.getLogger("liveml.capture")

#: a caller's X-Request-Id is kept when it is this short and printable, else a new one is made
MAX_REQUEST_ID = 128
#: a compared query's bodies are kept up to this size each (past it: ``truncated``)
PAIR_MAX_BYTES = 1024 * 1024


@dataclass(frozen=True)
class CaptureConfig:
    """One deployment's capture settings (from its runtime configuration)."""

    mode: str = "off"  # off | request | response | both
    sample: float = 1.0
    max_bytes: int = 65536
    served: str = ""  # the release version the deployment serves (for gateway-side errors)

    @classmethod
    def of(cls, runtime: dict[str, Any], served: str = "") -> CaptureConfig:
        try:
            rc = RuntimeConfiguration.model_validate(runtime)
        except ValueError:  # not a configuration this version reads: capture nothing
            return cls(served=served)
        return cls(rc.capture, rc.capture_sample, rc.capture_max_bytes, served)


def sampled(request_id: str, fraction: float) -> bool:
    """Whether a request id falls in the sample: its hash as a number in [0, 1)."""
    if fraction >= 1.0:
        return True
    if fraction <= 0.0:
        return False
    digest = hashlib.blake2b(request_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0 ** 64 < fraction


def query_id(handler: Any) -> str:
    """The query's request id: the caller's X-Request-Id when short and printable, else a new
    one; the same for every reader of one query, and sent back as the X-Request-Id header."""
    given = getattr(handler, "_liveml_request_id", None)
    if given is not None:
        return str(given)
    found = handler.request.headers.get("X-Request-Id", "")
    if not found or len(found) > MAX_REQUEST_ID or not found.isprintable():
        found = uuid.uuid4().hex
    handler._liveml_request_id = found
    handler.set_header("X-Request-Id", found)
    return str(found)


class Replicas(Protocol):
    def replicas(self, rid: str) -> list[Any]: ...


class Capture:
    """Per-deployment capture settings, the bounded list of records, and the writer thread."""

    def __init__(self, store: Store, history: HistoryStore, replicas: Replicas, *,
                 pairs: HistoryStore | None = None, interval: float = 2.0, refresh: float = 5.0,
                 max_records: int = 20_000,
                 max_queued_bytes: int = 256 * 1024 * 1024) -> None:
        self.store = store
        self.history = history
        self.replicas = replicas  # the controller: which release each node serves
        self.interval = interval
        self.refresh = refresh
        self.max_records = max_records
        self.max_queued_bytes = max_queued_bytes
        self.configs: dict[str, CaptureConfig] = {}
        self.dropped: Counter[str] = Counter()
        self.captured: Counter[str] = Counter()
        self._releases: dict[tuple[str, str], str] = {}
        self.pairs = pairs  # where two releases' answers go (shadow, replay)
        self._pending: list[tuple[Any, ...]] = []
        self._pairs: list[dict[str, Any]] = []
        self._pending_bytes = 0
        self._lock = threading.Lock()  # the pending list
        self._write_lock = threading.Lock()  # one batch written at a time
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- settings --------------------------------------------------------------------------
    def load(self, rid: str | None = None) -> None:
        """Read the capture settings of one deployment (or all) from the store."""
        with self.store.session() as s:
            q = select(Deployment.rid, Deployment.runtime_configuration, Release.version) \
                .outerjoin(Release, Release.rid == Deployment.served_release_rid)
            if rid is not None:
                q = q.where(Deployment.rid == rid)
            found = {r: CaptureConfig.of(config or {}, version or "")
                     for r, config, version in s.execute(q)}
        if rid is None:
            self.configs = found
        elif rid in found:
            self.configs = {**self.configs, rid: found[rid]}
        else:
            self.configs = {k: v for k, v in self.configs.items() if k != rid}

    def changed(self, rid: str, event: str) -> None:
        """A deployment changed (the services notify): read its settings again now."""
        self.load(rid)

    def watching(self, observer: Observer) -> Observer:
        """``observer`` (the controller) that also tells this capture of every change."""
        return _Both(observer, self)

    # --- the query path --------------------------------------------------------------------
    def offer(self, handler: Any, rid: str, body: bytes, status: int, data: bytes, node: str,
              started: float, v2: bool) -> None:
        """One answered (or failed) query; called by the inference handler, never raises."""
        config = self.configs.get(rid)
        if config is None or config.mode == "off":
            return
        try:
            self._offer(handler, config, rid, body, status, data, node, started, v2)
        except Exception:  # noqa: BLE001 - capture never fails a query
            log.exception("capture of a query of %s failed", rid)

    def _offer(self, handler: Any, config: CaptureConfig, rid: str, body: bytes, status: int,
               data: bytes, node: str, started: float, v2: bool) -> None:
        latency = time.perf_counter() - started
        request_id = query_id(handler)
        failed = status >= 400
        if not failed and not sampled(request_id, config.sample):
            return
        if failed and not data:  # the gateway's own error: the envelope the caller gets
            data, node = self._envelope(node)
        mode, limit = config.mode, config.max_bytes
        want_request = mode in ("request", "both")
        want_response = failed or mode in ("response", "both")
        request = body if want_request and len(body) <= limit else None
        response = data if want_response and len(data) <= limit else None
        record = (time.time(), rid, self._release(rid, node, config), node, request_id,
                  status, latency * 1000.0, "v2" if v2 else "v1", request, len(body),
                  want_request and request is None, response, len(data),
                  want_response and response is None,
                  getattr(getattr(handler, "principal", None), "token_id", None))
        size = (len(request) if request else 0) + (len(response) if response else 0)
        with self._lock:
            if len(self._pending) >= self.max_records or \
                    self._pending_bytes + size > self.max_queued_bytes:
                self.dropped[rid] += 1
                return
            self._pending.append(record)
            self._pending_bytes += size

    @staticmethod
    def _envelope(node: str) -> tuple[bytes, str]:
        """The envelope of the error being raised (pinned on it, so the error mapper sends the
        same errorInstanceId the record keeps), and the replica it names (a ReplicaFailed's)."""
        err = sys.exc_info()[1]
        envelope = getattr(err, "envelope", None)
        if err is None or envelope is None:
            return orjson.dumps({"errorCode": "INTERNAL", "errorName": "Internal",
                                 "errorInstanceId": str(uuid.uuid4()), "parameters": {}}), node
        doc = envelope()
        err.envelope = lambda: doc  # type: ignore[attr-defined]
        return orjson.dumps(doc, default=str), str(doc["parameters"].get("nodeId") or node)

    def release_of(self, rid: str, node: str) -> str:
        """The release version replica ``node`` of deployment ``rid`` serves."""
        return self._release(rid, node, self.configs.get(rid) or CaptureConfig())

    def _release(self, rid: str, node: str, config: CaptureConfig) -> str:
        """The release version ``node`` serves (the deployment's served one for the gateway)."""
        version = self._releases.get((rid, node))
        if version is None and node != "gateway":
            for r in self.replicas.replicas(rid):
                self._releases[(rid, r.node_id)] = r.release_version
            version = self._releases.get((rid, node))
        return version or config.served

    # --- the writer ------------------------------------------------------------------------
    def start(self) -> None:
        self.load()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="liveml-capture", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        last_refresh = time.monotonic()
        while not self._stop.is_set():
            self._wake.wait(self.interval)
            self._wake.clear()
            try:
                self.flush()
                if time.monotonic() - last_refresh >= self.refresh:
                    last_refresh = time.monotonic()
                    self.load()  # changes another control plane made (a shared database)
                    self._releases = {}
            except Exception:  # noqa: BLE001 - the writer goes on; the next flush retries
                log.exception("writing the inference history failed")

    def flush(self) -> int:
        """Write every pending record now (before a read, and at stop); returns how many."""
        with self._write_lock:
            with self._lock:
                batch, self._pending, self._pending_bytes = self._pending, [], 0
                pairs, self._pairs = self._pairs, []
            if pairs and self.pairs is not None:
                self.pairs.write(pairs)
            if not batch:
                return 0
            self.history.write_rows(batch)
            for r in batch:
                self.captured[r[1]] += 1
            return len(batch)

    def keep_pair(self, pair: Pair) -> None:
        """Two releases' answers to one query (the mirror's and the replay's), written with
        the next flush; past ``max_records`` pending it is dropped and counted."""
        record = pair_record(pair)
        with self._lock:
            if len(self._pairs) >= self.max_records:
                self.dropped[pair.deployment_rid] += 1
                return
            self._pairs.append(record)
        if len(self._pairs) > self.max_records // 2:
            self._wake.set()  # write them now rather than at the next interval

    def stop(self) -> None:
        """Stop the writer and write what is pending (blocking: run it on a worker thread)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(30)
        self.flush()


def _text(data: bytes | None) -> str | None:
    return None if data is None else data.decode("utf-8", "replace")


def pair_record(pair: Pair) -> dict[str, Any]:
    """A pair as the comparison store keeps it (PAIR_SCHEMA): bodies as text, none of them
    when one is past ``PAIR_MAX_BYTES`` (``truncated``)."""
    big = max(len(pair.request), len(pair.a_response), len(pair.b_response)) > PAIR_MAX_BYTES
    return {"time": dt.datetime.fromtimestamp(pair.time, dt.UTC),
            "deployment_rid": pair.deployment_rid, "request_id": pair.request_id,
            "source": pair.source, "api": pair.api,
            "request": None if big else _text(pair.request),
            "a_release": pair.a_release, "a_node": pair.a_node, "a_status": pair.a_status,
            "a_latency_ms": pair.a_latency_ms,
            "a_response": None if big else _text(pair.a_response),
            "b_release": pair.b_release, "b_node": pair.b_node, "b_status": pair.b_status,
            "b_latency_ms": pair.b_latency_ms,
            "b_response": None if big else _text(pair.b_response),
            "b_error": pair.b_error, "truncated": big}


class _Both:
    """The controller as the deployments service's observer, with the capture told too."""

    def __init__(self, observer: Observer, capture: Capture) -> None:
        self.observer, self.capture = observer, capture

    def changed(self, rid: str, event: str) -> None:
        self.observer.changed(rid, event)
        self.capture.changed(rid, event)

    def observed(self, rid: str) -> ObservedStatus:
        return self.observer.observed(rid)
