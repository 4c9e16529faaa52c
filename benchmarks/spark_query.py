"""Spark model queries: latency by rows against an in-process transform, and batching's gain.

Trains a StringIndexer + OneHotEncoder + VectorAssembler + LinearRegression pipeline on the
reference house frame in this process (its own local Spark, warm), then, on a private
``liveml server``: deploy -> ready (JVM start included), p50/p99 of 1-, 100- and 10,000-row
queries through the gateway next to the same rows through ``transform`` in this process, and
the throughput of 16 clients with batching on and with it off (``LIVEML_MAX_BATCH_ROWS=1``).
"""
from __future__ import annotations

import argparse
import asyncio
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from common import (  # noqa: E402
    ROW,
    ControlPlaneProcess,
    ReportHeader,
    add_output_options,
    default_reference,
    finish,
    fmt,
    gateway_url,
    load_reference,
    load_test,
    log,
    markdown_header,
    markdown_notes,
    markdown_targets,
    parser,
    percentile,
    report_header,
    run_in_temp_home,
)

LOCATIONS = ["New York", "San Francisco", "Austin", "Chicago"]


@dataclass
class Report(ReportHeader):
    deploy_s: float = 0.0
    rows: list[dict[str, Any]] = field(default_factory=list)
    batching: list[dict[str, Any]] = field(default_factory=list)
    targets: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def rows(n: int) -> list[dict[str, Any]]:
    return [{**ROW, "house-location": LOCATIONS[i % 4], "bedrooms": 1 + i % 5} for i in range(n)]


def timed(call: Any, seconds: float) -> list[float]:
    """Latencies (ms) of ``call()`` repeated for ``seconds`` (at least 5 calls)."""
    out, deadline = [], time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(out) < 5:
        t0 = time.perf_counter()
        call()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def in_process(spark: Any, model: Any, adapter: Any, body_rows: list[dict],
               seconds: float) -> tuple[list[float], list[float]]:
    """Latencies (ms) on this process's warm session of the same rows through pyspark's
    ``model.transform`` (createDataFrame from Arrow, transform, toArrow) and through the
    replica's own path (``SparkModelAdapter.predict``: the JVM's model in one call)."""
    import pandas as pd

    from liveml_runtime.schema import infer_columns
    from liveml_runtime.spark_frames import to_pandas, to_spark

    frame = pd.DataFrame(body_rows)
    columns = infer_columns(frame)
    names = [*frame.columns, "prediction"]
    pyspark = timed(lambda: to_pandas(model.transform(to_spark(spark, frame, columns)), names),
                    seconds)
    return pyspark, timed(lambda: adapter.predict(frame), seconds)


def run(args: argparse.Namespace, report: Report, tmp: Path) -> None:
    from spark_fixtures import FEATURES, house_frame, train_regression

    from liveml_runtime import spark as local_spark

    spark = local_spark.session(1)
    frame = house_frame(load_reference(args.reference))
    model = train_regression(spark, frame)
    model_dir = tmp / "model"
    model.write().overwrite().save(str(model_dir))
    from liveml_runtime.spark_model import pack

    artifact = tmp / "model.zip"
    artifact.write_bytes(pack(model_dir, frame[FEATURES].head(5)))
    from liveml_runtime.adapter import load_model, prepare

    adapter = load_model(str(artifact))
    prepare(adapter)

    cp = ControlPlaneProcess(tmp / "home", tmp / "server.log")
    c = cp.start()
    try:
        c.create_objective("spark-bench")
        c.submit("spark-bench", artifact, name="lr")
        c.release("spark-bench", "lr", "1.0", tag="production")
        t0 = time.perf_counter()
        rid = c.deploy("spark-bench", name="spark-bench", replicas=1,
                       runtime={"memory": "2GiB"})["rid"]
        cp.rids.append(rid)
        c.wait(rid, timeout=180, interval=0.05)
        report.deploy_s = time.perf_counter() - t0
        url, headers = gateway_url(cp, rid)
        groups = {"control plane": [cp.process()], "replicas": cp.replicas()}
        for n in args.rows:
            body = {"requestData": rows(n), "requestParams": {}}
            log(f"{n} rows: 1 client for {args.duration}s")
            served = asyncio.run(load_test(url, url, headers, 1, args.duration, args.warmup,
                                           groups, body))
            local, own = in_process(spark, model, adapter, body["requestData"], args.duration)
            report.rows.append({"rows": n, "p50_ms": served.p50_ms, "p99_ms": served.p99_ms,
                                "rps": served.rps, "errors": served.errors,
                                "in_process_p50_ms": percentile(local, 50),
                                "in_process_p99_ms": percentile(local, 99),
                                "adapter_p50_ms": percentile(own, 50),
                                "adapter_p99_ms": percentile(own, 99)})
        for batching in (True, False):
            if not batching:
                c.update(rid, runtimeConfiguration={"env": {"LIVEML_MAX_BATCH_ROWS": "1"}})
                c.wait(rid, timeout=180)
                groups = {"control plane": [cp.process()], "replicas": cp.replicas()}
            log(f"16 clients, batching {'on' if batching else 'off'}")
            served = asyncio.run(load_test(url, url, headers, 16, args.duration, args.warmup,
                                           groups, {"requestData": rows(1), "requestParams": {}}))
            report.batching.append({"batching": batching, "rps": served.rps,
                                    "p50_ms": served.p50_ms, "p99_ms": served.p99_ms,
                                    "errors": served.errors})
    finally:
        cp.teardown(report.notes)


def evaluate(report: Report) -> None:
    one = next((r for r in report.rows if r["rows"] == 1), None)
    on = next((b["rps"] for b in report.batching if b["batching"]), 0.0)
    off = next((b["rps"] for b in report.batching if not b["batching"]), 0.0)
    if one:
        gap = one["p50_ms"] - min(one["in_process_p50_ms"], one["adapter_p50_ms"])
        report.targets.append({"target": "1-row p50 within 3 ms of the in-process transform "
                               "(the faster of the two in-process paths)",
                               "measured": f"{fmt(gap)} ms above", "pass": gap <= 3.0})
    if on and off:
        report.targets.append({"target": "16 clients: batching >= 5x no batching",
                               "measured": f"{on / off:.1f}x ({on:.0f} vs {off:.0f} req/s)",
                               "pass": on >= 5 * off})
    report.targets.append({"target": "deploy -> ready under 15 s (JVM start included)",
                           "measured": f"{fmt(report.deploy_s)} s", "pass": report.deploy_s < 15})


def markdown(report: Report) -> str:
    lines = markdown_header("Spark model queries", report)
    lines += ["| rows | served p50 ms | served p99 ms | pyspark transform p50 / p99 ms | "
              "adapter in process p50 / p99 ms | req/s | errors |",
              "|---:|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['rows']} | {fmt(r['p50_ms'])} | {fmt(r['p99_ms'])} | "
              f"{fmt(r['in_process_p50_ms'])} / {fmt(r['in_process_p99_ms'])} | "
              f"{fmt(r['adapter_p50_ms'])} / {fmt(r['adapter_p99_ms'])} | {fmt(r['rps'], 1)} | "
              f"{r['errors']} |" for r in report.rows]
    lines += ["", "| 16 clients | req/s | p50 ms | p99 ms | errors |", "|---|---:|---:|---:|---:|"]
    lines += [f"| batching {'on' if b['batching'] else 'off'} | {fmt(b['rps'], 1)} | "
              f"{fmt(b['p50_ms'])} | {fmt(b['p99_ms'])} | {b['errors']} |" for b in report.batching]
    lines += ["", *markdown_targets(report.targets), *markdown_notes(report.notes)]
    return "\n".join(lines)


def main() -> int:
    p = parser(__doc__, default_reference())
    p.add_argument("--rows", type=lambda s: [int(x) for x in s.split(",")], default=[1, 100, 10_000])
    p.add_argument("--duration", type=float, default=10.0)
    p.add_argument("--warmup", type=float, default=3.0)
    add_output_options(p, "keep the temporary home (server and replica logs)")
    args = p.parse_args()
    report = Report(**report_header(args, "spark_query.py"),
                    options={"rows": args.rows, "duration": args.duration, "warmup": args.warmup})
    code = run_in_temp_home(run, args, report, "liveml-spark-bench-")
    finish(report, args.out, evaluate, markdown)
    return code


if __name__ == "__main__":
    sys.exit(main())
