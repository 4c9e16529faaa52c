"""Ships log records into the log store in batches, off the query path.

Replicas write JSON lines to files (the local backend's ``<home>/logs/<deployment>/<node>.log``);
the shipper tails them, adds what the control plane itself has to say about a deployment
(rollouts, scaling, failures), and appends everything in one transaction per pass. A line that is
not JSON (a model's ``print``) becomes a record of logger ``stdout``. Offsets are kept in a file so
that a restarted control plane ingests the rest of what it had not read, once.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from ..store.home import write_private

log = logging.getLogger("liveml.logs")


@dataclass
class _Source:
    path: Path
    tags: dict[str, str]
    offset: int = 0
    final: bool = False  # the replica stopped: read to the end, then forget the file


class LogShipper:
    """Collects records from replica log files and the control plane into a LogStore."""

    def __init__(self, store: Any, offsets_path: Path, max_batch: int = 5000) -> None:
        self.store = store
        self.offsets_path = offsets_path
        self.max_batch = max_batch
        self.sources: dict[str, _Source] = {}
        self.pending: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._load_offsets()

    def _load_offsets(self) -> None:
        """Leftovers of a previous run: read what is unread, then forget those files."""
        try:
            saved = json.loads(self.offsets_path.read_text())
        except (OSError, ValueError):
            return
        for path, doc in saved.items():
            if Path(path).exists():
                self.sources[path] = _Source(Path(path), doc.get("tags", {}),
                                             doc.get("offset", 0), final=True)

    def watch(self, path: str, tags: dict[str, str]) -> None:
        with self._lock:
            self.sources.setdefault(path, _Source(Path(path), dict(tags)))

    def finish(self, path: str) -> None:
        """The replica writing ``path`` is gone: ship the rest, then delete the file."""
        with self._lock:
            source = self.sources.get(path)
            if source is not None:
                source.final = True

    def emit(self, deployment_rid: str, message: str, level: str = "INFO",
             logger: str = "liveml.controller", node_id: str = "control-plane",
             time: str | None = None, **fields: Any) -> None:
        """A record from the control plane itself (tags.node_id ``control-plane``), or what it
        learnt of a replica (e.g. a Kubernetes event of a pod: ``node_id`` the pod)."""
        record = {"time": time or dt.datetime.now(dt.UTC).isoformat(), "level": level,
                  "logger": logger, "message": message,
                  "tags": {"node_id": node_id, "deployment_rid": deployment_rid},
                  "fields": fields}
        with self._lock:
            self.pending.append(record)

    def flush(self) -> int:
        """One pass (on a worker thread): read new lines, append them, save offsets."""
        with self._lock:
            batch, self.pending = self.pending, []
            sources = list(self.sources.values())
        done = []
        for source in sources:
            # decided before reading: a finish() that lands during the read waits for the next
            # pass, or lines written after the read would be deleted with the file
            final = source.final
            batch.extend(self._read(source, final))
            if final:
                done.append(source)
        written = 0
        for start in range(0, len(batch), self.max_batch):
            written += self.store.append(batch[start:start + self.max_batch])
        with self._lock:
            for source in done:
                self.sources.pop(str(source.path), None)
            state = {str(s.path): {"offset": s.offset, "tags": s.tags}
                     for s in self.sources.values()}
        for source in done:
            source.path.unlink(missing_ok=True)
        write_private(self.offsets_path, json.dumps(state))
        return written

    @staticmethod
    def _read(source: _Source, final: bool) -> list[dict[str, Any]]:
        try:
            with open(source.path, "rb") as fh:
                fh.seek(source.offset)
                data = fh.read()
        except OSError:
            return []
        end = data.rfind(b"\n") + 1 if not final else len(data)
        source.offset += end
        return parse_lines(data[:end].splitlines(), source.tags)

    def ingest(self, lines: list[bytes], tags: dict[str, str],
               times: list[str | None] | None = None) -> None:
        """Lines read elsewhere (e.g. the Kubernetes pod log API) with the tags of their replica;
        ``times`` (one per line, optional) dates lines that are not JSON records."""
        records = parse_lines(lines, tags, times)
        with self._lock:
            self.pending.extend(records)


def parse_lines(lines: list[bytes], tags: dict[str, str],
                times: list[str | None] | None = None) -> list[dict[str, Any]]:
    """Replica output lines as log records: JSON records as they are (tags merged), any other
    line (a model's ``print``) as a record of logger ``stdout``."""
    records = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            doc = orjson.loads(line)
        except orjson.JSONDecodeError:
            doc = None
        if not isinstance(doc, dict) or "message" not in doc:
            when = times[i] if times and times[i] else dt.datetime.now(dt.UTC).isoformat()
            doc = {"time": when, "level": "INFO", "logger": "stdout",
                   "message": line.decode(errors="replace")}
        doc["tags"] = {**tags, **(doc.get("tags") or {})}
        records.append(doc)
    return records
