"""Capture-cost benchmark: inference history off vs on at 100%, run by hand.

It trains the reference house-price model, starts a private control plane on 127.0.0.1 in a
temporary liveml home and deploys it with ``--replicas`` replicas. Then it loads the deployment
with closed-loop single-row v1 queries from ``--concurrency`` clients through the gateway (the
closed-loop load of ``common.py``), ``--rounds`` rounds per setting, alternating capture off
and capture on (``capture: both``, ``captureSample: 1``) in the order a b b a a b ... so a drift
over the run favours neither. It reports requests/s and p50/p99 per setting (medians over the
rounds) against the targets "capture on at 100% costs under 5% of throughput" and "no p99
regression beyond 10%", and checks that the history holds a record for every query answered
while capture was on (captured + dropped). It prints a Markdown report, optionally writes JSON
(``--out``) and tears everything down. Usage: ``python benchmarks/capture_cost.py``.
"""
from __future__ import annotations

import argparse
import asyncio
import io
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402 - the benchmarks' shared helpers
    ControlPlaneProcess,
    LoadResult,
    OtherProcesses,
    ReportHeader,
    add_output_options,
    default_reference,
    finish,
    fmt,
    freeze_heap,
    gateway_url,
    load_test,
    log,
    markdown_header,
    markdown_notes,
    markdown_others,
    markdown_targets,
    parser,
    report_header,
    run_in_temp_home,
    train_reference,
)

TARGET_THROUGHPUT_PCT = 5.0
TARGET_P99_PCT = 10.0
SETTINGS = {"a": "off", "b": "on"}
CAPTURE = {"off": {"capture": "off"}, "on": {"capture": "both", "captureSample": 1.0}}


@dataclass
class Round:
    setting: str
    index: int
    result: LoadResult


@dataclass
class Summary:
    setting: str
    rounds: int
    requests: int
    errors: int
    rps: float  # medians over the rounds
    p50_ms: float
    p99_ms: float
    control_plane_cpu_ms: float  # per request, median over the rounds


@dataclass
class Report(ReportHeader):
    deploy_s: float = 0.0
    rounds: list[Round] = field(default_factory=list)
    summaries: list[Summary] = field(default_factory=list)
    throughput_cost_pct: float | None = None
    p99_change_pct: float | None = None
    history: dict[str, Any] = field(default_factory=dict)
    other_processes: list[dict[str, Any]] = field(default_factory=list)
    targets: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = parser(__doc__, default_reference())
    p.add_argument("--concurrency", type=int, default=16, help="closed-loop clients")
    p.add_argument("--duration", type=float, default=8.0, help="seconds per measured round")
    p.add_argument("--warmup", type=float, default=2.0, help="seconds of warm-up per round")
    p.add_argument("--rounds", type=int, default=3, help="rounds per setting")
    p.add_argument("--replicas", type=int, default=2)
    add_output_options(p, "keep the temporary home (server and replica logs, history files)")
    return p.parse_args(argv)


def order(rounds: int) -> list[str]:
    """a b b a a b ...: each setting ``rounds`` times."""
    out: list[str] = []
    for i in range(rounds):
        out += ["a", "b"] if i % 2 == 0 else ["b", "a"]
    return out


def history_rows(client: Any, rid: str) -> int:
    import pyarrow.parquet as pq

    buffer = io.BytesIO()
    client.download_history(rid, buffer, since="1d")
    return int(pq.read_table(io.BytesIO(buffer.getvalue())).num_rows)


def run(args: argparse.Namespace, report: Report, tmp: Path) -> None:
    _, model_path = train_reference(args.reference, tmp)
    cp = ControlPlaneProcess(tmp / "home", tmp / "server.log")
    try:
        client = cp.start()
        log(f"deploying the reference model with {args.replicas} replicas")
        deployed = cp.release_and_deploy(model_path, "capture-bench", args.replicas,
                                         "capture_cost benchmark")
        report.deploy_s = round(deployed.seconds, 3)
        rid = deployed.rid
        url, headers = gateway_url(cp, rid)
        freeze_heap()
        others = OtherProcesses()
        answered_on = 0
        for i, key in enumerate(order(args.rounds)):
            setting = SETTINGS[key]
            client.update(rid, runtimeConfiguration=CAPTURE[setting])
            log(f"round {i + 1}: capture {setting}, {args.concurrency} clients, "
                f"{args.duration:.0f}s")
            before = history_rows(client, rid) if setting == "on" else 0
            groups = {"control plane": [cp.process()], "replicas": cp.replicas()}
            result = asyncio.run(load_test("gateway", url, headers, args.concurrency,
                                           args.duration, args.warmup, groups))
            report.rounds.append(Round(setting, i, result))
            if setting == "on":
                client.update(rid, runtimeConfiguration=CAPTURE["off"])
                answered_on += history_rows(client, rid) - before
        report.other_processes = others.busiest(cp)
        doc = client.history(rid, since="1d", limit=1)
        report.history = {"records": history_rows(client, rid), "dropped": doc["dropped"],
                          "answered_in_measured_on_rounds":
                              sum(r.result.ok for r in report.rounds if r.setting == "on"),
                          "recorded_in_on_rounds_with_warmup": answered_on}
        files = list((cp.home / "history").rglob("*.parquet"))
        report.history["files"] = len(files)
        report.history["bytes"] = sum(f.stat().st_size for f in files)
    finally:
        cp.teardown(report.notes)


def summarize(setting: str, rounds: list[Round]) -> Summary:
    mine = [r.result for r in rounds if r.setting == setting]
    return Summary(setting, len(mine), sum(r.ok for r in mine), sum(r.errors for r in mine),
                   statistics.median(r.rps for r in mine),
                   statistics.median(r.p50_ms for r in mine),
                   statistics.median(r.p99_ms for r in mine),
                   statistics.median(r.cpu_ms_per_req.get("control plane", 0.0) for r in mine))


def evaluate(report: Report) -> None:
    by = {s.setting: s for s in report.summaries}
    if "off" not in by or "on" not in by:
        return
    off, on = by["off"], by["on"]
    report.throughput_cost_pct = round(100.0 * (off.rps - on.rps) / off.rps, 2)
    report.p99_change_pct = round(100.0 * (on.p99_ms - off.p99_ms) / off.p99_ms, 2)
    h = report.history
    report.targets = [
        {"target": f"capture on at 100% costs under {TARGET_THROUGHPUT_PCT:.0f}% of throughput",
         "measured": f"{report.throughput_cost_pct:+.1f}% ({off.rps:.0f} -> {on.rps:.0f} req/s)",
         "pass": report.throughput_cost_pct < TARGET_THROUGHPUT_PCT},
        {"target": f"no p99 regression beyond {TARGET_P99_PCT:.0f}%",
         "measured": f"{report.p99_change_pct:+.1f}% ({off.p99_ms:.1f} -> {on.p99_ms:.1f} ms)",
         "pass": report.p99_change_pct <= TARGET_P99_PCT},
        {"target": "every query answered with capture on is recorded or counted as dropped",
         "measured": f"{h.get('records', 0)} records + {h.get('dropped', 0)} dropped for "
                     f"{h.get('answered_in_measured_on_rounds', 0)} measured answers",
         "pass": h.get("records", 0) + h.get("dropped", 0)
         >= h.get("answered_in_measured_on_rounds", 0)},
    ]


def markdown(report: Report) -> str:
    lines = markdown_header("Capture cost (inference history off vs on at 100%)", report)
    lines += ["| capture | rounds | requests | errors | req/s | p50 ms | p99 ms | "
              "control plane CPU ms/req |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {s.setting} | {s.rounds} | {s.requests} | {s.errors} | {s.rps:.0f} | "
              f"{fmt(s.p50_ms)} | {fmt(s.p99_ms)} | {fmt(s.control_plane_cpu_ms, 3)} |"
              for s in report.summaries]
    lines += ["", "Rounds: " + ", ".join(f"{r.setting} {r.result.rps:.0f} req/s p99 "
                                         f"{fmt(r.result.p99_ms)} ms" for r in report.rounds), ""]
    lines += markdown_targets(report.targets)
    h = report.history
    if h:
        lines += ["", f"History: {h.get('records')} records in {h.get('files')} Parquet files "
                      f"({h.get('bytes', 0) / 1e6:.1f} MB), {h.get('dropped')} dropped."]
    lines += markdown_others(report.other_processes)
    lines += markdown_notes(report.notes)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    report = Report(**report_header(args, "capture_cost", library=True),
                    options={"concurrency": args.concurrency, "duration": args.duration,
                             "warmup": args.warmup, "rounds": args.rounds,
                             "replicas": args.replicas})
    t0 = time.perf_counter()
    code = run_in_temp_home(run, args, report, "liveml-capturebench-")
    report.summaries = [summarize(s, report.rounds) for s in SETTINGS.values()
                        if any(r.setting == s for r in report.rounds)]
    report.notes.append(f"the run took {time.perf_counter() - t0:.0f}s")
    finish(report, args.out, evaluate, markdown)
    return code



if __name__ == "__main__":
    sys.exit(main())
