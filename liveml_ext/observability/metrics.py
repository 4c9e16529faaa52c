"""Metrics: request statistics from the gateway, a sampler, and a SQLite metrics store.

Kinds: ``host`` (CPU and memory of the whole host, percent), ``container`` (RSS bytes and CPU
cores of each replica's process tree) and ``requests`` (per deployment and replica: counts by
status code, p50/p95/p99 latency, in-flight). Samples are kept raw for ``raw_retention`` and as
one-minute averages up to ``retention``. The same request counters feed a Prometheus registry.
"""
from __future__ import annotations

import datetime as dt
import os
import socket
import sqlite3
import threading
import time
from collections import Counter as Tally
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import psutil
from prometheus_client import CollectorRegistry, Counter, Histogram

from ..store.home import private_file

KINDS = ("host", "container", "requests")
UNITS = {"cpu_percent": "%", "memory_percent": "%", "memory_bytes": "bytes", "cpu_cores": "cores",
         "requests_per_second": "requests/s", "p50_ms": "ms", "p95_ms": "ms", "p99_ms": "ms",
         "inflight": "requests", "count": "requests", "errors": "requests"}


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]


class RequestStats:
    """Counts and latencies of inference requests, per deployment and replica.

    ``observe`` is on the query path: a few dictionary and list operations, no I/O.
    """

    def __init__(self, registry: CollectorRegistry | None = None, max_samples: int = 20_000) -> None:
        self.registry = registry or CollectorRegistry()
        self.requests = Counter("liveml_inference_requests", "Inference requests by status code",
                                ["deployment", "node", "code"], registry=self.registry)
        self.latency = Histogram(
            "liveml_inference_latency_seconds", "Inference latency at the gateway",
            ["deployment", "node"], registry=self.registry,
            buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10))
        self.max_samples = max_samples
        self._lock = threading.Lock()
        self._codes: dict[tuple[str, str], Tally] = {}
        self._latencies: dict[tuple[str, str], list[float]] = {}
        self._since = time.monotonic()

    def observe(self, rid: str, node: str, status: int, seconds: float) -> None:
        key = (rid, node)
        with self._lock:
            self._codes.setdefault(key, Tally())[status] += 1
            samples = self._latencies.setdefault(key, [])
            if len(samples) < self.max_samples:
                samples.append(seconds)
        self.requests.labels(rid, node, str(status)).inc()
        self.latency.labels(rid, node).observe(seconds)

    def drain(self) -> tuple[float, dict[tuple[str, str], dict[str, Any]]]:
        """(interval seconds, per (rid, node): codes and sorted latencies) since the last call."""
        with self._lock:
            codes, latencies = self._codes, self._latencies
            self._codes, self._latencies = {}, {}
            now = time.monotonic()
            interval, self._since = now - self._since, now
        out = {key: {"codes": codes[key], "latencies": sorted(latencies.get(key, []))}
               for key in codes}
        return interval, out


class MetricsStore:
    """Samples in SQLite: (time, deployment, node, kind, name, value, resolution)."""

    def __init__(self, path: str | Path, retention: dt.timedelta = dt.timedelta(days=7),
                 raw_retention: dt.timedelta = dt.timedelta(hours=24)) -> None:
        self.retention, self.raw_retention = retention, raw_retention
        self._lock = threading.Lock()
        private_file(Path(path))  # SQLite gives its -wal and -shm files the same mode
        self.db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("""CREATE TABLE IF NOT EXISTS samples (
            ts REAL NOT NULL, deployment_rid TEXT NOT NULL, node_id TEXT NOT NULL,
            kind TEXT NOT NULL, name TEXT NOT NULL, value REAL NOT NULL,
            resolution INTEGER NOT NULL DEFAULT 0)""")
        self.db.execute("CREATE INDEX IF NOT EXISTS samples_by_deployment "
                        "ON samples (deployment_rid, kind, ts)")

    def append(self, rows: Iterable[tuple[float, str, str, str, str, float]]) -> None:
        with self._lock:
            self.db.execute("BEGIN")
            self.db.executemany("INSERT INTO samples (ts, deployment_rid, node_id, kind, name, "
                                "value) VALUES (?, ?, ?, ?, ?, ?)", list(rows))
            self.db.execute("COMMIT")

    def query(self, rid: str, start: dt.datetime, end: dt.datetime, kind: str | None = None,
              node: str | None = None) -> list[dict[str, Any]]:
        """Samples of one deployment (host samples included), oldest first."""
        sql = ("SELECT ts, node_id, kind, name, value, resolution FROM samples "
               "WHERE deployment_rid IN (?, '') AND ts BETWEEN ? AND ?")
        params: list[Any] = [rid, start.timestamp(), end.timestamp()]
        if kind:
            sql += " AND kind = ?"
            params.append(kind)
        if node:
            sql += " AND node_id = ?"
            params.append(node)
        with self._lock:
            rows = self.db.execute(sql + " ORDER BY ts", params).fetchall()
        return [{"time": dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(), "nodeId": n,
                 "kind": k, "name": name, "value": v,
                 "unit": UNITS.get(name, "requests" if name.startswith("status_") else ""),
                 "resolutionSeconds": res} for ts, n, k, name, v, res in rows]

    def sweep(self, now: dt.datetime | None = None) -> int:
        """Fold raw samples older than raw_retention into minutes; drop what is past retention."""
        now = now or dt.datetime.now(dt.UTC)
        raw_cut = (now - self.raw_retention).timestamp()
        cut = (now - self.retention).timestamp()
        with self._lock:
            self.db.execute("BEGIN")
            self.db.execute(
                "INSERT INTO samples (ts, deployment_rid, node_id, kind, name, value, resolution) "
                "SELECT CAST(ts / 60 AS INTEGER) * 60, deployment_rid, node_id, kind, name, "
                "AVG(value), 60 FROM samples WHERE resolution = 0 AND ts < ? "
                "GROUP BY CAST(ts / 60 AS INTEGER), deployment_rid, node_id, kind, name",
                (raw_cut,))
            folded = self.db.execute("DELETE FROM samples WHERE resolution = 0 AND ts < ?",
                                     (raw_cut,)).rowcount
            dropped = self.db.execute("DELETE FROM samples WHERE ts < ?", (cut,)).rowcount
            self.db.execute("COMMIT")
        return folded + dropped

    def close(self) -> None:
        with self._lock:
            self.db.close()


MetricRow = tuple[float, str, str, str, str, float]
"""(time, deployment rid, node, kind, metric, value): one sample, as the store keeps it."""


class Sampler:
    """Takes one sample of every kind; the control plane calls ``sample()`` every few seconds."""

    def __init__(self, store: MetricsStore, stats: RequestStats) -> None:
        self.store, self.stats = store, stats
        self.host = socket.gethostname()
        self._cpu: dict[int, tuple[float, float]] = {}  # pid -> (cpu seconds, when)
        psutil.cpu_percent(None)

    def rows(self, replicas: list[tuple[str, str, int | None]],
             inflight: dict[tuple[str, str], int], host: bool = True
             ) -> list[MetricRow]:
        """``replicas``: (deployment rid, node id, pid) of the live replicas on this host;
        ``host``: sample this host too (not when replicas run elsewhere)."""
        now = time.time()
        rows = [(now, "", self.host, "host", "cpu_percent", psutil.cpu_percent(None)),
                (now, "", self.host, "host", "memory_percent", psutil.virtual_memory().percent)
                ] if host else []
        seen = set()
        for rid, node, pid in replicas:
            if pid is None:
                continue
            seen.add(pid)
            rss, cpu = tree_usage(pid)
            last = self._cpu.get(pid)
            self._cpu[pid] = (cpu, now)
            rows.append((now, rid, node, "container", "memory_bytes", float(rss)))
            if last is not None and now > last[1]:
                rows.append((now, rid, node, "container", "cpu_cores",
                             max(0.0, (cpu - last[0]) / (now - last[1]))))
        self._cpu = {pid: v for pid, v in self._cpu.items() if pid in seen}
        interval, stats = self.stats.drain()
        keys = set(stats) | set(inflight)
        per_deployment: dict[str, dict[str, Any]] = {}
        for rid, node in keys:
            entry = stats.get((rid, node), {"codes": Tally(), "latencies": []})
            agg = per_deployment.setdefault(rid, {"codes": Tally(), "latencies": [], "inflight": 0})
            agg["codes"].update(entry["codes"])
            agg["latencies"].extend(entry["latencies"])
            agg["inflight"] += inflight.get((rid, node), 0)
            rows += _request_rows(now, rid, node, entry["codes"], entry["latencies"],
                                  inflight.get((rid, node), 0), interval)
        for rid, agg in per_deployment.items():
            rows += _request_rows(now, rid, "*", agg["codes"], sorted(agg["latencies"]),
                                  agg["inflight"], interval)
        return rows


def _request_rows(now: float, rid: str, node: str, codes: Tally, latencies: list[float],
                  inflight: int, interval: float) -> list[tuple[float, str, str, str, str, float]]:
    count = sum(codes.values())
    out = [(now, rid, node, "requests", "count", float(count)),
           (now, rid, node, "requests", "requests_per_second", count / max(interval, 1e-6)),
           (now, rid, node, "requests", "errors",
            float(sum(n for code, n in codes.items() if code >= 400))),
           (now, rid, node, "requests", "inflight", float(inflight))]
    out += [(now, rid, node, "requests", f"status_{code}", float(n)) for code, n in codes.items()]
    if latencies:
        out += [(now, rid, node, "requests", f"p{q}_ms", percentile(latencies, q / 100) * 1000)
                for q in (50, 95, 99)]
    return out


def descendants(pid: int) -> list[int] | None:
    """The process ids below ``pid``, from Linux's ``/proc/<pid>/task/<tid>/children`` (a few
    small reads, where psutil's ``children()`` reads every process of the machine); None where
    the kernel does not offer those files."""
    out: list[int] = []
    todo = [pid]
    while todo:
        parent = todo.pop()
        try:
            tasks = os.listdir(f"/proc/{parent}/task")
        except OSError:
            continue
        for tid in tasks:
            try:
                with open(f"/proc/{parent}/task/{tid}/children") as fh:
                    found = [int(c) for c in fh.read().split()]
            except FileNotFoundError:
                if parent == pid and not out:
                    return None  # no children files in this kernel (CONFIG_PROC_CHILDREN)
                continue
            except OSError:
                continue
            out += found
            todo += found
    return out


def tree_usage(pid: int) -> tuple[int, float]:
    """(RSS bytes, CPU seconds) of a process and its children."""
    try:
        proc = psutil.Process(pid)
        below = descendants(pid)
        procs = [proc, *proc.children(recursive=True)] if below is None else [proc]
    except psutil.Error:
        return 0, 0.0
    for child in below or ():
        try:
            procs.append(psutil.Process(child))
        except psutil.Error:  # gone since
            pass
    rss, cpu = 0, 0.0
    for p in procs:
        try:
            rss += p.memory_info().rss
            times = p.cpu_times()
            cpu += times.user + times.system
        except psutil.Error:
            pass
    return rss, cpu
