"""The inference history on disk: Parquet files under ``<home>/history``, one folder per day and
deployment (``day=2026-12-01/deployment=<rid>/part-*.parquet``).

Why Parquet files and not DuckDB: pyarrow writes and filters them with no server, no lock
between processes and no new engine (pandas reads them straight into a DataFrame, as does Spark
or DuckDB itself); a file is written whole to a temporary name and renamed, so a reader never
sees half of one; retention drops whole day folders; a download is the bytes of one file. The
writer appends one small file per partition and flush; ``sweep`` merges a partition's small
files into one, under the lock that reads hold, so no read sees a record twice.
"""
from __future__ import annotations

import datetime as dt
import os
import shutil
import threading
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from ..store.home import open_private, private_dir

#: One captured query. Bodies are UTF-8 text (JSON as sent, or null when not captured or past
#: the size limit: ``*_truncated`` then says so, ``*_bytes`` gives the size).
SCHEMA = pa.schema([
    ("time", pa.timestamp("us", tz="UTC")),
    ("deployment_rid", pa.string()),
    ("release", pa.string()),
    ("node_id", pa.string()),
    ("request_id", pa.string()),
    ("status", pa.int32()),
    ("latency_ms", pa.float64()),
    ("api", pa.string()),  # v1 or v2: how to read the request body
    ("request", pa.string()),
    ("request_bytes", pa.int64()),
    ("request_truncated", pa.bool_()),
    ("response", pa.string()),
    ("response_bytes", pa.int64()),
    ("response_truncated", pa.bool_()),
    ("token_id", pa.string()),
])
COLUMNS = tuple(SCHEMA.names)
#: Two releases' answers to one query: ``a`` served it live, ``b`` is the shadow (or the
#: release a replay ran); the comparison (``liveml_ext.compare``) reads these, under
#: ``<home>/comparisons`` with the same layout and retention as the history.
PAIR_SCHEMA = pa.schema([
    ("time", pa.timestamp("us", tz="UTC")),
    ("deployment_rid", pa.string()),
    ("request_id", pa.string()),
    ("source", pa.string()),  # shadow or replay
    ("api", pa.string()),
    ("request", pa.string()),
    ("a_release", pa.string()),
    ("a_node", pa.string()),
    ("a_status", pa.int32()),
    ("a_latency_ms", pa.float64()),
    ("a_response", pa.string()),
    ("b_release", pa.string()),
    ("b_node", pa.string()),
    ("b_status", pa.int32()),
    ("b_latency_ms", pa.float64()),
    ("b_response", pa.string()),
    ("b_error", pa.string()),
    ("truncated", pa.bool_()),  # a body was past the size limit and is not kept
])
#: a partition with more files than this is merged into one by ``sweep``
COMPACT_FILES = 16


def status_filter(status: str | None) -> tuple[int, int] | None:
    """``4xx``, ``5xx``, ``2xx``, ``error`` (400 and above) or one code -> [low, high]."""
    if not status:
        return None
    text = status.strip().lower()
    if text == "error":
        return 400, 599
    if len(text) == 3 and text[0] in "12345" and text[1:] == "xx":
        return int(text[0]) * 100, int(text[0]) * 100 + 99
    if text.isdigit() and 100 <= int(text) <= 599:
        return int(text), int(text)
    raise ValueError(f"status {status!r}: give 2xx, 4xx, 5xx, error or a code such as 404")


class HistoryStore:
    """Writes batches of records, reads them back with filters, sweeps old days."""

    def __init__(self, root: Path, retention: dt.timedelta = dt.timedelta(days=7),
                 schema: pa.Schema = SCHEMA) -> None:
        self.root = Path(root)
        self.retention = retention
        self.schema = schema  # SCHEMA (the history) or PAIR_SCHEMA (the comparisons); its first
        # columns: time, deployment_rid
        self.lock = threading.RLock()  # reads and merges; writes only add whole files

    # --- layout ----------------------------------------------------------------------------
    def partition(self, day: dt.date, rid: str) -> Path:
        return self.root / f"day={day.isoformat()}" / f"deployment={rid}"

    def days(self) -> list[dt.date]:
        out = []
        if self.root.is_dir():
            for entry in self.root.iterdir():
                if entry.name.startswith("day="):
                    try:
                        out.append(dt.date.fromisoformat(entry.name[4:]))
                    except ValueError:
                        continue
        return sorted(out)

    def files(self, rid: str, start: dt.datetime, end: dt.datetime) -> list[Path]:
        """The deployment's files of the days from ``start`` to ``end`` (UTC)."""
        out: list[Path] = []
        day = start.astimezone(dt.UTC).date()
        while day <= end.astimezone(dt.UTC).date():
            folder = self.partition(day, rid)
            if folder.is_dir():
                out += sorted(p for p in folder.iterdir() if p.name.endswith(".parquet"))
            day += dt.timedelta(days=1)
        return out

    # --- writing ---------------------------------------------------------------------------
    def write(self, records: Sequence[dict[str, Any]]) -> int:
        """Append records (dicts with the SCHEMA's names; bodies as text or bytes): one new
        file per day and deployment. Returns the number of files written."""
        names = self.schema.names[1:]
        return self.write_rows([(r["time"].timestamp(), *(r[name] for name in names))
                                for r in records])

    def write_rows(self, rows: Sequence[tuple[Any, ...]]) -> int:
        """Append records given as tuples in the schema's order, the time in Unix seconds, text
        columns as str or bytes (UTF-8; the bodies) or None. Column by column, so the
        conversion is quick and holds the interpreter briefly (the event loop serves queries
        meanwhile)."""
        groups: dict[tuple[dt.date, str], list[tuple[Any, ...]]] = {}
        for r in rows:
            key = (dt.datetime.fromtimestamp(r[0], dt.UTC).date(), r[1])
            groups.setdefault(key, []).append(r)
        for (day, rid), group in groups.items():
            columns = list(zip(*group))
            arrays = [pa.array([round(t * 1e6) for t in columns[0]], pa.int64())
                      .cast(self.schema.field("time").type)]
            for f, values in zip(list(self.schema)[1:], columns[1:]):
                arrays.append(_text(values) if f.type == pa.string() else
                              pa.array(values, f.type))
            self._write_file(self.partition(day, rid),
                             pa.Table.from_arrays(arrays, schema=self.schema))
        return len(groups)

    def _write_file(self, folder: Path, table: pa.Table) -> Path:
        """One Parquet file, written to a hidden temporary name (0600) and renamed."""
        private_dir(folder)
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%f")
        path = folder / f"part-{stamp}-{uuid.uuid4().hex[:8]}.parquet"
        tmp = folder / f".{path.name}.tmp"
        with open_private(tmp, "wb") as fh:
            pq.write_table(table, fh, compression="zstd")
        os.replace(tmp, path)
        return path

    # --- reading ---------------------------------------------------------------------------
    def read(self, rid: str, start: dt.datetime, end: dt.datetime, status: str | None = None,
             release: str | None = None, limit: int | None = None) -> pa.Table:
        """The deployment's records in [start, end], newest first, filtered by status class
        (``status_filter``) and release version; at most ``limit`` of them."""
        codes = status_filter(status)
        with self.lock:
            files = self.files(rid, start, end)
            if not files:
                return self.schema.empty_table()
            expr = (pc.field("time") >= pa.scalar(start, self.schema.field("time").type)) & \
                   (pc.field("time") <= pa.scalar(end, self.schema.field("time").type))
            if codes is not None:
                expr &= (pc.field("status") >= codes[0]) & (pc.field("status") <= codes[1])
            if release:
                expr &= pc.field("release" if "release" in self.schema.names
                                 else "b_release") == release
            table = ds.dataset([str(f) for f in files], schema=self.schema,
                               format="parquet").to_table(filter=expr)
        table = table.sort_by([("time", "descending")])
        return table.slice(0, limit) if limit is not None else table

    # --- retention -------------------------------------------------------------------------
    def sweep(self, now: dt.datetime | None = None) -> list[dt.date]:
        """Drop each day whose whole day is older than the retention; merge small files.
        Returns the days dropped."""
        now = now or dt.datetime.now(dt.UTC)
        cutoff = now - self.retention
        dropped = []
        with self.lock:
            for day in self.days():
                end_of_day = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(),
                                                 dt.UTC)
                folder = self.root / f"day={day.isoformat()}"
                if end_of_day <= cutoff:
                    shutil.rmtree(folder, ignore_errors=True)
                    dropped.append(day)
                    continue
                for part in folder.iterdir():
                    if part.is_dir():
                        self._compact(part)
        return dropped

    def _compact(self, folder: Path) -> None:
        files = sorted(p for p in folder.iterdir() if p.name.endswith(".parquet"))
        if len(files) <= COMPACT_FILES:
            return
        table = ds.dataset([str(f) for f in files], schema=self.schema, format="parquet").to_table()
        self._write_file(folder, table.sort_by([("time", "ascending")]))
        for f in files:
            f.unlink(missing_ok=True)


def _text(values: Sequence[bytes | str | None]) -> pa.Array:
    """A text column from str, UTF-8 bytes (the bodies, checked by Arrow) or None; bytes that
    are not UTF-8 are decoded with replacement characters."""
    raw = pa.array([v.encode() if isinstance(v, str) else v for v in values], pa.binary())
    try:
        return raw.cast(pa.string())
    except pa.ArrowInvalid:
        return pa.array([v.decode("utf-8", "replace") if isinstance(v, bytes) else v
                         for v in values], pa.string())


def to_parquet_bytes(table: pa.Table) -> bytes:
    """A table as the bytes of one Parquet file (the history download)."""
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    return bytes(sink.getvalue().to_pybytes())


def rows(table: pa.Table, columns: Iterable[str] = COLUMNS) -> list[dict[str, Any]]:
    """A table's records as dicts (for the JSON answer)."""
    return table.select(list(columns)).to_pylist()
