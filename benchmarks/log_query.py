"""Log-search benchmark for the LogStore, run by hand.

It fills a fresh store with ``--records`` replica-like records (default 1,000,000) spread over the
last 24 h, ``--deployments`` deployments and ``--nodes`` node ids, appended in batches of
``--batch`` (500) as the log shipper would, and reports the insert throughput. Then it times the
first page (100 rows) of typical searches, each the median of ``--runs`` runs over different
1-hour windows and node ids, and prints a Markdown table next to the 200 ms target.

Usage: ``python benchmarks/log_query.py [--records 1000000] [--runs 9] [--keep]``. The store goes
to a temporary folder that is removed at the end unless ``--keep`` (or ``--path FILE``) is given;
``--reuse`` times the queries on an existing ``--path`` without filling it again.
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import random
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from liveml_ext.observability.logstore import LogStore

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import log  # noqa: E402 - the benchmarks' shared helpers

TARGET_MS = 200.0
PAGE = 100
HOUR = dt.timedelta(hours=1)
COMMON_WORD = "predicting"  # in about 30% of the messages
RARE_WORD = "checkpoint"  # in about 0.05%

# (weight, level, logger, message template, fields, traceback?)
TEMPLATES: list[tuple[float, str, str, str, bool, bool]] = [
    (30.0, "INFO", "model-logger", "predicting house prices for {n} rows", False, False),
    (30.0, "INFO", "tornado.access", "200 POST /transform (127.0.0.1) {ms:.2f}ms", False, False),
    (15.0, "INFO", "liveml.replica", "health check ok", False, False),
    (10.0, "DEBUG", "model-logger", "feature vector built with {n} columns", False, False),
    (8.0, "INFO", "liveml.replica", "Self-test prediction passed in {ms:.1f} ms", True, False),
    (4.0, "WARNING", "liveml.replica", "slow request {rid} took {ms:.0f} ms", True, False),
    (1.5, "INFO", "liveml.replica", "Replica listening on 127.0.0.1:{port}", True, False),
    (1.0, "ERROR", "liveml.replica", "inference failed for request {rid}: ValueError", False, True),
    (0.45, "INFO", "liveml.replica", "Replica ready", True, False),
    (0.05, "INFO", "model-logger", "checkpoint restored from cache {rid}", False, False),
]
TRACEBACK = ('Traceback (most recent call last):\n  File "model.py", line 42, in predict\n'
             "    return self.pipeline.predict(frame)\nValueError: could not convert string to float")


def make_records(count: int, rids: list[str], nodes: list[str], end: dt.datetime,
                 seed: int = 7) -> Iterator[dict[str, Any]]:
    """Replica-like records in time order over the 24 h before ``end``."""
    rnd = random.Random(seed)
    weights = [t[0] for t in TEMPLATES]
    start = (end - dt.timedelta(hours=24)).timestamp()
    step = 86400.0 / count
    for i in range(count):
        _, level, logger, template, with_fields, with_tb = rnd.choices(TEMPLATES, weights)[0]
        node_index = rnd.randrange(len(nodes))
        ms = rnd.uniform(0.5, 900.0)
        doc: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(start + i * step + rnd.random() * step,
                                              dt.UTC).isoformat(),
            "level": level, "logger": logger,
            "message": template.format(n=rnd.randint(1, 500), ms=ms, port=rnd.randint(30000, 60000),
                                       rid=uuid.UUID(int=rnd.getrandbits(128)).hex[:12]),
            "tags": {"node_id": nodes[node_index], "deployment_rid": rids[node_index % len(rids)],
                     "release": "1.0" if node_index % 2 else "2.0"},
        }
        if with_fields:
            doc["fields"] = {"seconds": round(ms / 1000, 4), "port": rnd.randint(30000, 60000)}
        if with_tb:
            doc["traceback"] = TRACEBACK
        yield doc


def fill(store: LogStore, records: Iterator[dict[str, Any]], count: int, batch: int) -> float:
    """Append in batches; returns the seconds spent inside ``append``."""
    spent, done, last_report = 0.0, 0, time.monotonic()
    while done < count:
        chunk = [next(records) for _ in range(min(batch, count - done))]
        t0 = time.perf_counter()
        store.append(chunk)
        spent += time.perf_counter() - t0
        done += len(chunk)
        if time.monotonic() - last_report > 15:
            log(f"  {done:,} records, {done / spent:,.0f} records/s so far")
            last_report = time.monotonic()
    return spent


def time_search(store: LogStore, runs: int, make_args: Callable[[random.Random], dict[str, Any]]
                ) -> tuple[list[float], int]:
    """Milliseconds of each run of ``store.search(**make_args(rnd))`` (one warm-up first)."""
    rnd = random.Random(11)
    store.search(**make_args(rnd), limit=PAGE)
    times, rows = [], 0
    for _ in range(runs):
        args = make_args(rnd)
        t0 = time.perf_counter()
        page = store.search(**args, limit=PAGE)
        times.append((time.perf_counter() - t0) * 1000)
        rows += len(page["data"])
    return times, rows // runs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--deployments", type=int, default=5)
    ap.add_argument("--nodes", type=int, default=20)
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--runs", type=int, default=9)
    ap.add_argument("--path", help="the store file (default: a temporary folder)")
    ap.add_argument("--reuse", action="store_true", help="time the queries on an existing --path")
    ap.add_argument("--keep", action="store_true", help="keep the temporary store")
    a = ap.parse_args()

    tmp = None if a.path else Path(tempfile.mkdtemp(prefix="liveml-logbench-"))
    path = Path(a.path) if a.path else tmp / "logs.db"  # type: ignore[operator]
    rids = [f"ri.foundry-ml-live.main.live-deployment.{uuid.UUID(int=i + 1)}" for i in range(a.deployments)]
    nodes = [f"node-{i:02d}-{uuid.UUID(int=1000 + i).hex[-6:]}" for i in range(a.nodes)]
    end = dt.datetime.now(dt.UTC).replace(microsecond=0)
    insert_rate = None
    try:
        if a.reuse:
            if not path.exists():
                raise SystemExit(f"--reuse: {path} does not exist")
            store = LogStore(path)
            last = sqlite3.connect(path).execute("SELECT max(time) FROM logs").fetchone()[0]
            end = dt.datetime.fromtimestamp(last, dt.UTC)
        else:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
            store = LogStore(path)
            log(f"filling {path} with {a.records:,} records in batches of {a.batch} ...")
            spent = fill(store, make_records(a.records, rids, nodes, end), a.records, a.batch)
            insert_rate = a.records / spent
            log(f"filled in {spent:.1f} s of append time: {insert_rate:,.0f} records/s")
        total = store.count()
        size = sum(os.path.getsize(f"{path}{s}") for s in ("", "-wal") if os.path.exists(f"{path}{s}"))

        def window(rnd: random.Random) -> dict[str, Any]:
            stop = end - dt.timedelta(minutes=rnd.uniform(0, 22 * 60))
            return {"start": stop - HOUR, "end": stop}

        def node_of(rnd: random.Random) -> tuple[str, str]:
            i = rnd.randrange(len(nodes))
            return rids[i % len(rids)], nodes[i]

        def rid_of(rnd: random.Random) -> str:
            return rids[rnd.randrange(len(rids))]

        def by_node(rnd: random.Random) -> dict[str, Any]:
            rid, node = node_of(rnd)
            return {"deployment_rid": rid, "query": f"tags.node_id:{node}", **window(rnd)}

        def by_node_page2(rnd: random.Random) -> dict[str, Any]:
            args = by_node(rnd)
            args["page_token"] = store.search(**args, limit=PAGE)["nextPageToken"]
            return args

        cases: list[tuple[str, Callable[[random.Random], dict[str, Any]], bool]] = [
            ("`tags.node_id:X`, 1-hour window", by_node, True),
            (f"free text `{COMMON_WORD}` (~30% of lines), 1-hour window",
             lambda r: {"deployment_rid": rid_of(r), "query": COMMON_WORD, **window(r)}, True),
            (f"free text `{RARE_WORD}` (~0.05% of lines), 1-hour window",
             lambda r: {"deployment_rid": rid_of(r), "query": RARE_WORD, **window(r)}, True),
            ("no filter, no window (newest records)", lambda r: {"deployment_rid": rid_of(r)}, True),
            ("`tags.node_id:X`, 1-hour window, page 2 (token)", by_node_page2, False),
            ("`level:error AND NOT logger:model-logger`, 1-hour window",
             lambda r: {"deployment_rid": rid_of(r), "query": "level:error AND NOT logger:model-logger",
                        **window(r)}, False),
            (f"free text `{COMMON_WORD}`, no window",
             lambda r: {"deployment_rid": rid_of(r), "query": COMMON_WORD}, False),
            (f"free text `{RARE_WORD}`, no window",
             lambda r: {"deployment_rid": rid_of(r), "query": RARE_WORD}, False),
            ("`fields.seconds>0.5`, 1-hour window",
             lambda r: {"deployment_rid": rid_of(r), "query": "fields.seconds>0.5", **window(r)}, False),
        ]
        results = []
        for name, make_args, required in cases:
            times, rows = time_search(store, a.runs, make_args)
            results.append((name, statistics.median(times), max(times), rows, required))
            log(f"{name}: median {statistics.median(times):.2f} ms")

        t0 = time.perf_counter()
        exported = sum(len(chunk) for chunk in store.export(rids[0], start=end - HOUR, end=end))
        export_s = time.perf_counter() - t0
        oldest = end - dt.timedelta(hours=24)
        t0 = time.perf_counter()
        swept = store.sweep(now=oldest + store.retention + HOUR)  # the oldest hour
        sweep_s = time.perf_counter() - t0
        store.close()
    finally:
        if tmp is not None and not a.keep:
            shutil.rmtree(tmp, ignore_errors=True)

    print(f"\n## Log search: {total:,} records, {a.deployments} deployments, {a.nodes} node ids, 24 h\n")
    print(f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, {os.cpu_count()} cores, "
          f"store {size / 2**20:,.0f} MiB (with the WAL), first page = {PAGE} rows, "
          f"median of {a.runs} runs over random windows and nodes.\n")
    print("| search (first page) | median ms | max ms | rows | target | |")
    print("|---|---:|---:|---:|---|---|")
    for name, median, worst, rows, required in results:
        verdict = ("ok" if median < TARGET_MS else "MISSED") if required else "(extra)"
        target = f"< {TARGET_MS:.0f} ms" if required else "-"
        print(f"| {name} | {median:.2f} | {worst:.2f} | {rows} | {target} | {verdict} |")
    print()
    if insert_rate is not None:
        print(f"- insert: {insert_rate:,.0f} records/s in batches of {a.batch} (time inside `append`)")
    print(f"- export of one deployment's last hour: {exported / 2**20:.1f} MiB in {export_s * 1000:.0f} ms")
    print(f"- sweep of the oldest hour: {swept:,} records in {sweep_s * 1000:.0f} ms")


if __name__ == "__main__":
    main()
