"""Replica log records in their own SQLite file: append in batches, search, export, sweep.

One row per record in ``logs``: the time (epoch seconds), the deployment (a small id into
``deployments``), ``node_id``, ``level``, ``logger``, ``message``, ``release`` and ``extra``, the
JSON of everything else in the record (``fields``, ``traceback``, other tags). ``logs_fts`` is an
FTS5 index of the message, kept in sync by triggers. Searches go newest first with keyset paging on
``(time, id)``; the indexes ``(dep, time)`` and ``(dep, node_id, time)`` serve the first page of a
deployment's (or one replica's) window without a sort. See :mod:`.logquery` for the query language.
"""
from __future__ import annotations

import base64
import binascii
import datetime as dt
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from liveml_ext.core.errors import InvalidArgument, error_class
from liveml_ext.store.home import private_file

from . import logquery
from .logquery import DEPLOYMENT_TABLE, FTS_TABLE, LOG_TABLE

InvalidLogColumn = error_class("InvalidLogColumn", 400, "INVALID_ARGUMENT")

DEFAULT_COLUMNS = ("time", "level", "node_id", "logger", "message")
MAX_LIMIT = 10_000
EXPORT_CHUNK = 1000
SWEEP_CHUNK = 5000
#: A time window with more rows than this is not worth bounding the FTS lookups by rowid.
RANGE_SCAN_CAP = 200_000
_OWN_TAGS = ("node_id", "deployment_rid", "release")
_OWN_KEYS = ("time", "level", "logger", "message", "tags")
_TSV_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r", "\x0b": "\\x0b",
                              "\x0c": "\\x0c", "\x1c": "\\x1c", "\x1d": "\\x1d", "\x1e": "\\x1e",
                              "\x85": "\\x85", "\u2028": "\\u2028", "\u2029": "\\u2029"})

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS {DEPLOYMENT_TABLE} (id INTEGER PRIMARY KEY, rid TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS {LOG_TABLE} (
    id INTEGER PRIMARY KEY,
    time REAL NOT NULL,
    dep INTEGER NOT NULL,
    node_id TEXT,
    level TEXT,
    logger TEXT,
    message TEXT,
    release TEXT,
    extra TEXT
);
CREATE INDEX IF NOT EXISTS logs_time ON {LOG_TABLE} (time);
CREATE INDEX IF NOT EXISTS logs_dep_time ON {LOG_TABLE} (dep, time);
CREATE INDEX IF NOT EXISTS logs_dep_node_time ON {LOG_TABLE} (dep, node_id, time);
"""
_FTS_SCHEMA = f"""
CREATE VIRTUAL TABLE IF NOT EXISTS {FTS_TABLE} USING fts5(
    message, content='{LOG_TABLE}', content_rowid='id', tokenize='unicode61', columnsize=0);
CREATE TRIGGER IF NOT EXISTS logs_fts_insert AFTER INSERT ON {LOG_TABLE} BEGIN
    INSERT INTO {FTS_TABLE} (rowid, message) VALUES (new.id, new.message);
END;
CREATE TRIGGER IF NOT EXISTS logs_fts_delete AFTER DELETE ON {LOG_TABLE} BEGIN
    INSERT INTO {FTS_TABLE} ({FTS_TABLE}, rowid, message) VALUES ('delete', old.id, old.message);
END;
"""


def fts5_available() -> bool:
    """Whether this Python's SQLite has the FTS5 module."""
    try:
        with sqlite3.connect(":memory:") as conn:
            conn.execute("CREATE VIRTUAL TABLE probe USING fts5(x)")
        return True
    except sqlite3.OperationalError:
        return False


def _epoch(value: Any) -> float:
    """Epoch seconds of an ISO 8601 string, a datetime (naive = UTC) or a number; else now."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value)
        except ValueError:
            return time.time()
    if isinstance(value, dt.datetime):
        return (value if value.tzinfo else value.replace(tzinfo=dt.UTC)).timestamp()
    return time.time()


def _iso(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).isoformat(timespec="microseconds")


def _text(value: Any) -> str | None:
    return None if value is None else value if isinstance(value, str) else str(value)


def _tsv(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        value = orjson.dumps(value).decode()
    return str(value).translate(_TSV_ESCAPES)


def _encode_token(epoch: float, rowid: int) -> str:
    return base64.urlsafe_b64encode(f"{epoch!r},{rowid}".encode()).decode().rstrip("=")


def _decode_token(token: str) -> tuple[float, int]:
    try:
        text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        epoch, rowid = text.split(",")
        return float(epoch), int(rowid)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InvalidArgument("invalid page token", field="pageToken", value=token) from None


@dataclass(frozen=True)
class _Column:
    name: str
    kind: str  # time, value, json, rid
    sql: str = "NULL"
    params: tuple[Any, ...] = ()


def _column(name: Any) -> _Column:
    ref = logquery.resolve_field(name) if isinstance(name, str) else None
    if ref is None:
        raise InvalidLogColumn(f"unknown column {name!r}; use time, {logquery.FIELD_HINT}",
                               column=name)
    if ref.json_path is not None:
        return _Column(name, "json", "extra -> ?", (ref.json_path,))
    if ref.column == "time":
        return _Column(name, "time", "time")
    if ref.column == "deployment_rid":
        return _Column(name, "rid")
    return _Column(name, "value", str(ref.column))


@dataclass
class _Plan:
    """A validated search: what to select and the conditions, before paging."""

    rid: str
    columns: list[_Column]
    empty: bool = False
    dep: int = 0
    low: float | None = None
    high: float | None = None
    where: str = ""  # after the deployment and the window
    params: list[Any] = field(default_factory=list)

    def values(self, row: tuple[Any, ...]) -> list[Any]:
        out = []
        for col, value in zip(self.columns, row[2:]):
            if col.kind == "time":
                value = _iso(value)
            elif col.kind == "json" and value is not None:
                value = orjson.loads(value)
            elif col.kind == "rid":
                value = self.rid
            out.append(value)
        return out


class LogStore:
    """Log records of every deployment in one SQLite file (WAL), with a retention period.

    Safe to use from one writer thread and any number of reader threads: writes share one
    connection under a lock; each reading thread gets its own connection.
    """

    def __init__(self, path: str | Path, retention: dt.timedelta = dt.timedelta(days=7)) -> None:
        self.path = Path(path)
        self.retention = retention
        self._write_lock = threading.Lock()
        self._readers_lock = threading.Lock()
        self._readers: list[sqlite3.Connection] = []
        self._local = threading.local()
        self._deps: dict[str, int] = {}
        self._closed = False
        self.path.parent.mkdir(parents=True, exist_ok=True)
        private_file(self.path)  # SQLite gives its -wal and -shm files the same mode
        self._db = self._connect(cache_kib=65536)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)
        self.fts = fts5_available()
        if self.fts:
            fresh = self._db.execute("SELECT 1 FROM sqlite_master WHERE name = ?",
                                     (FTS_TABLE,)).fetchone() is None
            self._db.executescript(_FTS_SCHEMA)
            if fresh:  # a store written without FTS5 gets its index now
                self._db.execute(f"INSERT INTO {FTS_TABLE} ({FTS_TABLE}) VALUES ('rebuild')")

    def _connect(self, cache_kib: int = 16384) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute(f"PRAGMA cache_size=-{int(cache_kib)}")
        conn.execute("PRAGMA temp_store=MEMORY")
        return conn

    def _reader(self) -> sqlite3.Connection:
        if self._closed:
            raise RuntimeError("the log store is closed")
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            conn.execute("PRAGMA query_only=1")
            self._local.conn = conn
            with self._readers_lock:
                self._readers.append(conn)
        return conn

    # --- writing ------------------------------------------------------------------------------
    def append(self, records: Iterable[dict[str, Any]]) -> int:
        """Insert a batch of records (dicts shaped like a replica's JSON log line) in one transaction.

        ``time`` may be ISO 8601 (naive = UTC), a datetime or epoch seconds; a missing or unreadable
        time becomes now. Returns how many records were stored.
        """
        rows: list[tuple[Any, ...]] = []
        for record in records:
            tags = record.get("tags")
            tags = tags if isinstance(tags, dict) else {}
            extra = {k: v for k, v in record.items() if k not in _OWN_KEYS}
            other_tags = {k: v for k, v in tags.items() if k not in _OWN_TAGS}
            if other_tags:
                extra["tags"] = other_tags
            rows.append((_epoch(record.get("time")), _text(tags.get("deployment_rid")) or "",
                         _text(tags.get("node_id")), _text(record.get("level")),
                         _text(record.get("logger")), _text(record.get("message")),
                         _text(tags.get("release")),
                         orjson.dumps(extra, default=str, option=orjson.OPT_NON_STR_KEYS).decode()
                         if extra else None))
        if not rows:
            return 0
        with self._write_lock:
            if self._closed:
                raise RuntimeError("the log store is closed")
            deps = self._dep_ids({row[1] for row in rows})
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(
                    f"INSERT INTO {LOG_TABLE} (time, dep, node_id, level, logger, message, release, "
                    "extra) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    [(row[0], deps[row[1]], *row[2:]) for row in rows])
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return len(rows)

    def _dep_ids(self, rids: set[str]) -> dict[str, int]:
        """The ids of deployment RIDs, adding new ones (ids are never reused: always safe to cache)."""
        for rid in rids - self._deps.keys():
            self._db.execute(f"INSERT OR IGNORE INTO {DEPLOYMENT_TABLE} (rid) VALUES (?)", (rid,))
            self._deps[rid] = self._db.execute(f"SELECT id FROM {DEPLOYMENT_TABLE} WHERE rid = ?",
                                               (rid,)).fetchone()[0]
        return self._deps

    def sweep(self, now: dt.datetime | None = None) -> int:
        """Delete records older than the retention (in chunks, so writers wait little)."""
        cutoff = _epoch(now or dt.datetime.now(dt.UTC)) - self.retention.total_seconds()
        total = 0
        while True:
            with self._write_lock:
                if self._closed:
                    raise RuntimeError("the log store is closed")
                cur = self._db.execute(
                    f"DELETE FROM {LOG_TABLE} WHERE id IN "
                    f"(SELECT id FROM {LOG_TABLE} WHERE time < ? LIMIT ?)", (cutoff, SWEEP_CHUNK))
            total += cur.rowcount
            if cur.rowcount < SWEEP_CHUNK:
                return total

    # --- reading ------------------------------------------------------------------------------
    def count(self, deployment_rid: str | None = None) -> int:
        """How many records are stored (for one deployment, or all)."""
        db = self._reader()
        if deployment_rid is None:
            return db.execute(f"SELECT count(*) FROM {LOG_TABLE}").fetchone()[0]
        return db.execute(f"SELECT count(*) FROM {LOG_TABLE} WHERE dep = (SELECT id FROM "
                          f"{DEPLOYMENT_TABLE} WHERE rid = ?)", (deployment_rid,)).fetchone()[0]

    def search(self, deployment_rid: str, query: str = "", start: dt.datetime | None = None,
               end: dt.datetime | None = None, columns: list[str] | None = None, limit: int = 100,
               page_token: str | None = None) -> dict[str, Any]:
        """One page of matching records, newest first: ``{"data": [...], "nextPageToken": ...}``.

        Each row is a dict of ``columns`` in that order (default: time, level, node_id, logger,
        message); ``time`` is ISO 8601 UTC. The window is ``start <= time <= end``.
        """
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
            raise InvalidArgument(f"limit must be between 1 and {MAX_LIMIT}", field="limit",
                                  value=limit)
        plan = self._plan(deployment_rid, query, start, end, columns)
        after = _decode_token(page_token) if page_token else None
        rows = self._fetch(plan, after, limit + 1)
        token = _encode_token(rows[limit - 1][0], rows[limit - 1][1]) if len(rows) > limit else None
        names = [c.name for c in plan.columns]
        return {"data": [dict(zip(names, plan.values(row))) for row in rows[:limit]],
                "nextPageToken": token}

    def export(self, deployment_rid: str, query: str = "", start: dt.datetime | None = None,
               end: dt.datetime | None = None, columns: list[str] | None = None) -> Iterator[str]:
        """Every matching record as tab-separated lines, newest first, after a header line.

        Checks the arguments at once (raising before anything is yielded), then yields the header,
        then chunks of whole ``\\n``-terminated lines. Tabs, line breaks and backslashes in values
        are escaped (``\\t``, ``\\n``, ``\\\\``); objects are JSON; a missing value is empty.
        """
        plan = self._plan(deployment_rid, query, start, end, columns)
        return self._export(plan)

    def _export(self, plan: _Plan) -> Iterator[str]:
        yield "\t".join(_tsv(c.name) for c in plan.columns) + "\n"
        after = None
        while True:
            rows = self._fetch(plan, after, EXPORT_CHUNK)
            if rows:
                yield "".join("\t".join(_tsv(v) for v in plan.values(row)) + "\n" for row in rows)
            if len(rows) < EXPORT_CHUNK:
                return
            after = (rows[-1][0], rows[-1][1])

    def _plan(self, rid: str, query: str, start: dt.datetime | None, end: dt.datetime | None,
              columns: list[str] | None) -> _Plan:
        if isinstance(columns, str):
            columns = [c.strip() for c in columns.split(",") if c.strip()]
        names = list(DEFAULT_COLUMNS if columns is None else columns)
        if not names:
            raise InvalidLogColumn("choose at least one column", column="")
        if len(set(names)) != len(names):
            dup = next(n for n in names if names.count(n) > 1)
            raise InvalidLogColumn(f"column {dup!r} is given twice", column=dup)
        plan = _Plan(rid, [_column(n) for n in names])
        node = logquery.parse(query or "")
        where, qparams = logquery.to_sql(node, query, fts=self.fts)  # all query errors, before any I/O
        low = None if start is None else _epoch(start)
        high = None if end is None else _epoch(end)
        if low is not None and high is not None and low > high:
            raise InvalidArgument("start is after end", field="start")
        db = self._reader()
        found = db.execute(f"SELECT id FROM {DEPLOYMENT_TABLE} WHERE rid = ?", (rid,)).fetchone()
        if found is None:
            plan.empty = True
            return plan
        plan.dep, plan.low, plan.high = found[0], low, high
        conds: list[str] = []
        params: list[Any] = []
        if self.fts and low is not None and logquery.has_fulltext(node):
            # bound the FTS lookups by the ids in the window: cheap to find, and it keeps a common
            # word from producing every matching id of the whole store
            window, wparams = self._window(plan, None)
            n, first, last = db.execute(
                f"SELECT count(*), min(id), max(id) FROM (SELECT id FROM {LOG_TABLE} WHERE "
                f"{window} LIMIT ?)", (*wparams, RANGE_SCAN_CAP + 1)).fetchone()
            if n == 0:
                plan.empty = True
                return plan
            if n <= RANGE_SCAN_CAP:
                where, qparams = logquery.to_sql(node, query, fts=True, rowid_range=(first, last))
                # rows appended from now on fall outside the range: leave them out (a NOT would
                # let them in); '+' keeps the planner on the (dep, time) indexes
                conds.append("+id BETWEEN ? AND ?")
                params += [first, last]
        if where != "1":
            conds.append(where)
            params += qparams
        plan.where, plan.params = " AND ".join(conds), params
        return plan

    @staticmethod
    def _window(plan: _Plan, after: tuple[float, int] | None) -> tuple[str, list[Any]]:
        """The deployment, the time window and the page token, as one range on the indexes."""
        conds: list[str] = ["dep = ?"]
        params: list[Any] = [plan.dep]
        high = plan.high
        if after is not None:
            high = after[0] if high is None else min(high, after[0])
        if plan.low is not None:
            conds.append("time >= ?")
            params.append(plan.low)
        if high is not None:
            # one upper bound: two (end and token) make SQLite pick (dep, time) over (dep, node_id, time)
            conds.append("time <= ?")
            params.append(high)
        if after is not None:
            conds.append("(time < ? OR (time = ? AND id < ?))")
            params += [after[0], after[0], after[1]]
        return " AND ".join(conds), params

    def _fetch(self, plan: _Plan, after: tuple[float, int] | None, limit: int) -> list[tuple[Any, ...]]:
        if plan.empty:
            return []
        select = "".join(f", {c.sql}" for c in plan.columns)
        window, wparams = self._window(plan, after)
        where = f"{window} AND {plan.where}" if plan.where else window
        params = [p for c in plan.columns for p in c.params] + wparams + plan.params
        sql = (f"SELECT time, id{select} FROM {LOG_TABLE} WHERE {where} "
               "ORDER BY time DESC, id DESC LIMIT ?")
        return self._reader().execute(sql, [*params, limit]).fetchall()

    # --- lifecycle ----------------------------------------------------------------------------
    def close(self) -> None:
        """Close every connection (the file stays; open it again with a new LogStore)."""
        with self._write_lock:
            if self._closed:
                return
            self._closed = True
            self._db.close()
        with self._readers_lock:
            for conn in self._readers:
                conn.close()
            self._readers.clear()

    def __enter__(self) -> LogStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
