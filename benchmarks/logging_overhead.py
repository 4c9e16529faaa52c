"""Logging-overhead benchmark for liveml live deployments, run by hand.

It trains the reference house-price model and starts a private control plane on 127.0.0.1 in a
temporary liveml home. There it deploys two variants with 2 replicas each and the same runtime
configuration:

* (a) ``plain``: the fitted reference pipeline (liveml wraps it in its ``EstimatorAdapter``),
* (b) ``logged``: the same fitted pipeline in a ``ModelAdapter`` subclass of this module with the
  same API, whose ``predict`` logs one ``model-logger`` INFO record per call. The replica writes
  the record to its log file and the control plane ships it into its log store in the background.

Then it loads the two in turn with closed-loop single-row v1 queries from ``--concurrency``
clients through the gateway (the closed-loop load of ``common.py``), ``--rounds`` rounds of each,
in the order a b, b a, a b, ... (``--order abba``: a drift over the run favours neither) or
a b, a b, ... (``--order abab``). It reports requests/s and p50/p99 per variant (median over the
rounds) and the throughput overhead of (b) against the target "logging adds under 5% to query
throughput", next to an estimate from the CPU cost of writing and shipping one record. ``--aa``
deploys the plain pipeline as (b) as well: a control run that shows the noise floor.
Last, it checks that the model's log records reached the log store: the rows named in the
``predicting N rows`` records must add up to the requests the gateway answered with 200 for (b)
plus the replicas' self-tests. It prints a Markdown report, optionally writes JSON (``--out``)
and tears everything down. Usage: ``python benchmarks/logging_overhead.py [--rounds 4]``.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import re
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cloudpickle
import psutil

from liveml_ext import Column, ModelAdapter, ModelApi, Tabular

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402 - the benchmarks' shared helpers
    ROW,
    VERSION,
    ControlPlaneProcess,
    LoadResult,
    OtherProcesses,
    ReportHeader,
    add_output_options,
    affinity,
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
    node_of,
    parser,
    report_header,
    run_in_temp_home,
    train_reference,
)

TARGET_OVERHEAD_PCT = 5.0
MODEL_LOGGER = "model-logger"
MESSAGE = re.compile(r"^predicting (\d+) rows$")
#: The reference pipeline's input columns, typed as liveml types them for the plain pipeline.
COLUMNS = [("house-location", "string"), ("bedrooms", "double"), ("bathrooms", "double")]
FEATURES = [name for name, _ in COLUMNS]
VARIANTS = {"a": "plain", "b": "logged"}
LABELS = {"a": "(a) plain pipeline", "b": "(b) adapter logging once per predict call"}
AA_LABEL = "(b) plain pipeline again (A/A control)"
DISTURBED_CORES = 0.1  # a round in which other processes used more is marked as disturbed
GROUPS = ("load generator", "control plane", "replicas", "other variant's replicas", "other processes")


# --- the logging model ----------------------------------------------------------------------
class LoggedHouseModel(ModelAdapter):
    """The fitted reference pipeline, logging one record per ``predict`` call.

    Its API equals the one liveml gives the plain pipeline: one tabular input ``input_df`` with
    the three typed columns and one tabular output ``output_df`` (the input rows plus
    ``prediction``). Row-aligned, so the replica may batch concurrent requests into one call.
    """

    batchable = True

    def __init__(self, pipeline: Any) -> None:
        self.pipeline = pipeline

    def api(self) -> ModelApi:
        return ModelApi(inputs=[Tabular("input_df", [Column(n, t) for n, t in COLUMNS])],
                        outputs=[Tabular("output_df", [])])

    def predict(self, input_df: Any) -> Any:
        logging.getLogger("model-logger").info("predicting %d rows", len(input_df))
        features = input_df if list(input_df.columns) == FEATURES else input_df[FEATURES]
        out = input_df.copy(deep=False)
        out["prediction"] = self.pipeline.predict(features)
        return out

    def example_inputs(self) -> dict[str, Any]:
        return {"input_df": [{"house-location": "New York", "bedrooms": 3, "bathrooms": 1.5}]}


def save_logged_model(pipeline: Any, path: Path) -> Path:
    """Pickle the adapter with this module by value, so that a replica needs no benchmark file."""
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    with open(path, "wb") as fh:
        cloudpickle.dump(LoggedHouseModel(pipeline), fh)
    return path


def check_models(pipeline: Any, logged_path: Path) -> None:
    """The saved adapter loads as liveml loads it, with the plain API and the same predictions."""
    import pandas as pd

    from liveml_runtime.adapter import EstimatorAdapter, ModelRunner, load_model

    plain, logged = ModelRunner(EstimatorAdapter(pipeline)), ModelRunner(load_model(str(logged_path)))
    if plain.api.to_dict() != logged.api.to_dict():
        raise RuntimeError(f"the logged adapter's API differs from the plain one:\n"
                           f"{plain.api.to_dict()}\n{logged.api.to_dict()}")
    if plain.batchable != logged.batchable:
        raise RuntimeError("the two variants differ in batchable")
    frames = {"input_df": pd.DataFrame([ROW, {**ROW, "bedrooms": 5}])}
    a, b = plain.infer(frames)["output_df"], logged.infer(frames)["output_df"]
    if not a.equals(b):
        raise RuntimeError(f"the two variants predict differently:\n{a}\n{b}")


# --- results ----------------------------------------------------------------------------------
@dataclass
class Round:
    variant: str
    index: int
    result: LoadResult


@dataclass
class Summary:
    variant: str
    rounds: int
    requests: int
    errors: int
    rps: float  # medians over the rounds from here on
    p50_ms: float
    p99_ms: float
    rps_spread_pct: float  # (max - min) / median of the rounds' req/s
    cpu_ms_per_req: dict[str, float] = field(default_factory=dict)
    cores: dict[str, float] = field(default_factory=dict)


@dataclass
class Report(ReportHeader):
    deploy_s: dict[str, float] = field(default_factory=dict)
    runtime_configuration: dict[str, Any] = field(default_factory=dict)
    replica_cores: dict[str, dict[str, str]] = field(default_factory=dict)
    rounds: list[Round] = field(default_factory=list)
    summaries: list[Summary] = field(default_factory=list)
    overhead_pct: float | None = None  # (a - b) / a of the median req/s
    paired_overhead_pct: list[float] = field(default_factory=list)  # the same, round by round
    #: the log records' check: counts at the gateway, in the store, and the shipping lag
    logs: dict[str, Any] = field(default_factory=dict)
    other_processes: list[dict[str, Any]] = field(default_factory=list)
    targets: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


# --- counting ---------------------------------------------------------------------------------
def model_records(fetch: Callable[[str | None], dict[str, Any]]) -> tuple[int, int, int]:
    """(model-logger records, rows they name, records not of the ``predicting N rows`` form),
    paging through ``fetch(page_token)`` until there is no next page."""
    records = rows = odd = 0
    token = None
    while True:
        page = fetch(token)
        for r in page["data"]:
            records += 1
            found = MESSAGE.match(str(r.get("message", "")))
            if found:
                rows += int(found.group(1))
            else:
                odd += 1
        token = page.get("nextPageToken")
        if not token:
            return records, rows, odd


def rest_model_records(client: Any, rid: str) -> tuple[int, int, int]:
    """The model's records as the REST log search returns them (paged, 10,000 a page)."""
    return model_records(lambda token: client.logs(rid, f'logger:"{MODEL_LOGGER}"', since="1h",
                                                   columns=["message"], limit=10_000,
                                                   page_token=token))


def gateway_counts(client: Any) -> dict[str, dict[str, float]]:
    """Inference requests the gateway answered, by deployment RID and status code (Prometheus)."""
    from prometheus_client.parser import text_string_to_metric_families

    resp = client.http.get(f"{client.url}liveml/api/metrics", timeout=30)
    resp.raise_for_status()
    out: dict[str, dict[str, float]] = {}
    for family in text_string_to_metric_families(resp.text):
        if family.name != "liveml_inference_requests":
            continue
        for sample in family.samples:
            if sample.name.endswith("_total"):
                codes = out.setdefault(sample.labels["deployment"], {})
                code = sample.labels["code"]
                codes[code] = codes.get(code, 0.0) + sample.value
    return out


def store_counts(home: Path, rids: dict[str, str]) -> dict[str, dict[str, int]]:
    """After the control plane stopped: each deployment's records in its log store file."""
    from liveml_ext.observability.logstore import LogStore

    out = {}
    with LogStore(home / "logs.db") as store:
        for key, rid in rids.items():
            records, rows, odd = model_records(
                lambda token, rid=rid: store.search(rid, f'logger:"{MODEL_LOGGER}"',
                                                    columns=["message"], limit=10_000,
                                                    page_token=token))
            self_tests, _, _ = model_records(
                lambda token, rid=rid: store.search(rid, '"Self-test prediction passed"',
                                                    columns=["message"], limit=10_000,
                                                    page_token=token))
            out[key] = {"all_records": store.count(rid), "model_records": records,
                        "model_rows": rows, "odd_model_records": odd, "self_tests": self_tests}
    return out


def record_costs(workdir: Path, calls: int, batch: int) -> dict[str, float]:
    """CPU microseconds per model record: written as a replica writes it, then shipped.

    The writing side is the replica's: ``JsonFormatter`` and a stream handler on an unbuffered
    file, as a replica's stdout. The shipping side is the control plane's: ``LogShipper.flush``
    into a ``LogStore``, every ``batch`` records (what one flush finds during the load).
    """
    import io

    from liveml_ext.observability.logstore import LogStore
    from liveml_ext.observability.shipper import LogShipper
    from liveml_runtime.logs import JsonFormatter

    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "replica.log"
    tags = {"node_id": "cost-node", "deployment_rid": "ri.liveml-bench.cost", "release": VERSION}
    stream = io.TextIOWrapper(open(path, "ab", buffering=0), write_through=True)
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter(tags))
    logger = logging.getLogger("liveml-bench-cost")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    store = LogStore(workdir / "logs.db")
    shipper = LogShipper(store, workdir / "offsets.json")
    shipper.watch(str(path), tags)
    clock = time.process_time  # CPU time of this process
    write = ship = 0.0
    shipped = 0
    try:
        for _ in range(max(1, calls // batch)):
            t0 = clock()
            for _ in range(batch):
                logger.info("predicting %d rows", 3)
            t1 = clock()
            shipped += shipper.flush()
            write, ship = write + t1 - t0, ship + clock() - t1
    finally:
        handler.close()
        store.close()
    n = max(1, shipped)
    return {"records": shipped, "batch": batch, "write_us": round(1e6 * write / n, 2),
            "ship_us": round(1e6 * ship / n, 2)}


# --- the measurement --------------------------------------------------------------------------
def label(key: str, aa: bool) -> str:
    return AA_LABEL if aa and key == "b" else LABELS[key]


def variant_replicas(cp: ControlPlaneProcess, client: Any, rid: str) -> list[psutil.Process]:
    nodes = {r["nodeId"] for r in client.deployment(rid)["status"]["replicas"]}
    out = []
    for proc in cp.replicas():
        with contextlib.suppress(psutil.Error):
            if node_of(proc) in nodes:
                out.append(proc)
    return out


def round_order(order: str, index: int) -> tuple[str, str]:
    """The variants of round ``index`` (1-based) in the order they are loaded."""
    return ("b", "a") if order == "abba" and index % 2 == 0 else ("a", "b")


def summarize(variant: str, rounds: list[Round]) -> Summary:
    mine = [r.result for r in rounds if r.variant == variant]
    rps = [r.rps for r in mine]
    med = statistics.median(rps)
    return Summary(
        variant=variant, rounds=len(mine), requests=sum(r.ok for r in mine),
        errors=sum(r.errors for r in mine), rps=med,
        p50_ms=statistics.median(r.p50_ms for r in mine),
        p99_ms=statistics.median(r.p99_ms for r in mine),
        rps_spread_pct=100.0 * (max(rps) - min(rps)) / med if med else float("nan"),
        cpu_ms_per_req={g: statistics.median(r.cpu_ms_per_req.get(g, 0.0) for r in mine)
                        for g in GROUPS},
        cores={g: statistics.median(r.cores.get(g, 0.0) for r in mine) for g in GROUPS})


def measure(args: argparse.Namespace, report: Report, cp: ControlPlaneProcess, client: Any,
            rids: dict[str, str]) -> float:
    """The alternating rounds; returns the perf_counter time when the load ended."""
    procs = {k: variant_replicas(cp, client, rid) for k, rid in rids.items()}
    for k, rid in rids.items():
        if len(procs[k]) != args.replicas:
            raise RuntimeError(f"found {len(procs[k])} replica processes of {VARIANTS[k]} ({rid}), "
                               f"expected {args.replicas}")
        report.replica_cores[VARIANTS[k]] = affinity(procs[k])
    for i in range(1, args.rounds + 1):
        for k in round_order(args.order, i):
            other = next(o for o in VARIANTS if o != k)
            groups = {"control plane": [cp.process()], "replicas": procs[k],
                      "other variant's replicas": procs[other]}
            url, headers = gateway_url(cp, rids[k])
            log(f"round {i}/{args.rounds}, {label(k, args.aa)}: {args.concurrency} clients, "
                f"{args.warmup:g}s warm-up + {args.duration:g}s")
            result = asyncio.run(load_test(VARIANTS[k], url, headers, args.concurrency,
                                           args.duration, args.warmup, groups))
            report.rounds.append(Round(VARIANTS[k], i, result))
            log(f"  {result.rps:.1f} req/s, p50 {result.p50_ms:.2f} ms, p99 {result.p99_ms:.2f} ms, "
                f"{result.errors} errors, other processes {result.cores['other processes']:.2f} cores")
    return time.perf_counter()


def check_shipping(args: argparse.Namespace, report: Report, client: Any, rids: dict[str, str],
                   load_end: float) -> None:
    """Right after the load: the gateway's counts, then the REST search until it has every row."""
    counts = gateway_counts(client)
    for k, rid in rids.items():
        report.logs[f"gateway_{VARIANTS[k]}"] = {code: int(n) for code, n in
                                                 sorted(counts.get(rid, {}).items())}
    if args.aa:
        return
    served = report.logs["gateway_logged"].get("200", 0)
    want = served + args.replicas  # each replica's self-test calls predict once, on one row
    records = rows = odd = 0
    deadline = time.perf_counter() + args.ship_timeout
    while True:
        records, rows, odd = rest_model_records(client, rids["b"])
        if rows >= want or time.perf_counter() > deadline:
            break
        time.sleep(0.25)
    lag = time.perf_counter() - load_end
    report.logs["rest"] = {"model_records": records, "model_rows": rows, "odd_model_records": odd,
                           "expected_rows": want, "seconds_after_load": round(lag, 2),
                           "complete": rows >= want}
    log(f"REST search: {records} model records naming {rows} rows ({want} expected), "
        f"{lag:.2f}s after the load")


# --- report ----------------------------------------------------------------------------------
def disturbed(r: Round) -> bool:
    return r.result.cores.get("other processes", 0.0) > DISTURBED_CORES


def cpu_per_request(s: Summary) -> float:
    """Milliseconds of CPU per request of the benchmark's own processes (other processes left out)."""
    return sum(v for g, v in s.cpu_ms_per_req.items() if g != "other processes")


def evaluate(report: Report) -> None:
    by = {s.variant: s for s in report.summaries}
    a, b = by.get("plain"), by.get("logged")
    aa = bool(report.options.get("aa"))
    targets: list[dict[str, Any]] = []
    if a and b:
        report.overhead_pct = 100.0 * (a.rps - b.rps) / a.rps
        pairs: dict[int, dict[str, float]] = {}
        for r in report.rounds:
            pairs.setdefault(r.index, {})[r.variant] = r.result.rps
        report.paired_overhead_pct = [round(100.0 * (p["plain"] - p["logged"]) / p["plain"], 2)
                                      for _, p in sorted(pairs.items()) if len(p) == 2]
        noisy = sum(disturbed(r) for r in report.rounds)
        targets.append({
            "target": (f"A/A control: (a) and (b) differ by < {TARGET_OVERHEAD_PCT:g}% in throughput"
                       if aa else f"logging adds < {TARGET_OVERHEAD_PCT:g}% to query throughput"),
            "measured": f"{fmt(report.overhead_pct)}% ({fmt(b.rps, 1)} vs {fmt(a.rps, 1)} req/s, "
                        f"medians of {b.rounds} and {a.rounds} rounds; round-to-round spread "
                        f"{fmt(a.rps_spread_pct, 0)}% (a), {fmt(b.rps_spread_pct, 0)}% (b); {noisy} of "
                        f"{len(report.rounds)} rounds disturbed)",
            "pass": (abs(report.overhead_pct) if aa else report.overhead_pct) < TARGET_OVERHEAD_PCT
                    and a.errors == 0 and b.errors == 0})
        targets.append({"target": "no failed query", "measured": f"{a.errors} (a), {b.errors} (b)",
                        "pass": a.errors == 0 and b.errors == 0})
        cost = report.logs.get("cost")
        store = report.logs.get("store", {}).get("logged")
        answered = report.logs.get("gateway_logged", {}).get("200")
        if cost and store and answered:
            per_request = store["model_records"] / answered
            extra_ms = per_request * (cost["write_us"] + cost["ship_us"]) / 1000.0
            report.logs["estimate"] = {"records_per_request": round(per_request, 4),
                                       "extra_cpu_ms_per_request": round(extra_ms, 4),
                                       "plain_cpu_ms_per_request": round(cpu_per_request(a), 3),
                                       "overhead_pct": round(100.0 * extra_ms / cpu_per_request(a), 2)}
    store = report.logs.get("store", {}).get("logged")
    served = report.logs.get("gateway_logged", {}).get("200")
    if store is not None and served is not None and not aa:
        want = served + store["self_tests"]
        targets.append({
            "target": "every model log record reaches the log store",
            "measured": f"{store['model_rows']} rows in {store['model_records']} records vs "
                        f"{want} expected ({served} answered + {store['self_tests']} self-tests)",
            "pass": store["model_rows"] == want and store["odd_model_records"] == 0})
    report.targets = targets


def _cells(values: dict[str, float]) -> str:
    return " / ".join(fmt(values.get(g)) for g in GROUPS)


def markdown(report: Report) -> str:
    o = report.options
    aa = bool(o.get("aa"))
    names = {v: label(k, aa) for k, v in VARIANTS.items()}
    short = {"plain": "a plain", "logged": "b plain again" if aa else "b logged"}
    pattern = "a b, b a, a b, …" if o["order"] == "abba" else "a b, a b, …"
    out = markdown_header("liveml logging overhead", report)
    out += [f"Two deployments on one control plane, {o['replicas']} replicas each, runtime "
            f"configuration {json.dumps(report.runtime_configuration.get('plain'))} for both; deploy "
            f"→ ACTIVE {fmt(report.deploy_s.get('plain'))} s (a) and {fmt(report.deploy_s.get('logged'))} "
            f"s (b). Replica cores: (a) {report.replica_cores.get('plain')}, (b) "
            f"{report.replica_cores.get('logged')}. Closed loop: {o['concurrency']} clients send "
            f"single-row v1 queries through the gateway; the variants take turns ({pattern}), each "
            f"turn {o['warmup']:g} s warm-up + {o['duration']:g} s measured."]
    if aa:
        out += ["", "**A/A control run**: (b) serves the plain pipeline too, so any difference "
                "between the two is the noise of this setup."]
    out += ["", *markdown_targets(report.targets)]

    out += ["", "### Per variant (medians over the rounds)", "",
            "| variant | rounds | requests | errors | req/s | p50 ms | p99 ms | req/s spread "
            "| CPU ms/req | cores used |", "|---|---:|---:|---:|---:|---:|---:|---:|---|---|"]
    for s in report.summaries:
        out.append(f"| {names[s.variant]} | {s.rounds} | {s.requests} | {s.errors} | {fmt(s.rps, 1)} | "
                   f"{fmt(s.p50_ms)} | {fmt(s.p99_ms)} | {fmt(s.rps_spread_pct, 1)}% | "
                   f"{_cells(s.cpu_ms_per_req)} | {_cells(s.cores)} |")
    if report.overhead_pct is not None:
        paired = report.paired_overhead_pct
        out += ["", f"Throughput overhead of (b) against (a): **{fmt(report.overhead_pct)}%** of the "
                "median req/s. Round by round, (a − b) / a: "
                + ", ".join(f"{x:.2f}%" for x in paired)
                + (f" (mean {statistics.fmean(paired):.2f}%)" if paired else "") + ". "
                "The req/s spread, (max − min) / median over a variant's rounds, is the run's own "
                "noise: an overhead well inside it cannot be told apart at this length."]
    est = report.logs.get("estimate")
    cost = report.logs.get("cost")
    if est and cost:
        out += ["", f"Estimate from CPU costs (low noise, assumes the machine is CPU-bound): one "
                f"model record costs {cost['write_us']:.1f} µs of CPU to write as a replica does "
                f"(JSON formatter, unbuffered file) and {cost['ship_us']:.1f} µs to ship into the "
                f"log store ({cost['records']} records, {cost['batch']} per flush); (b) wrote "
                f"{est['records_per_request']:.3f} records per request, so about "
                f"{1000 * est['extra_cpu_ms_per_request']:.1f} µs per request against "
                f"{est['plain_cpu_ms_per_request']:.2f} ms of CPU per request of (a) (load "
                f"generator, control plane and replicas): **≈ {est['overhead_pct']:.2f}%** of the "
                "throughput."]
    out += ["", "CPU per request and cores used over each measured window: load generator / "
            "control plane (gateway and log shipper) / the measured variant's replicas / the "
            "other (idle) variant's replicas / other processes on the machine.", "",
            "### Rounds", "",
            "| round | variant | requests | errors | req/s | p50 ms | p90 ms | p99 ms | max ms "
            "| CPU ms/req | cores used |", "|---:|---|---:|---:|---:|---:|---:|---:|---:|---|---|"]
    for r in report.rounds:
        x = r.result
        mark = " ⚠" if disturbed(r) else ""
        out.append(f"| {r.index} | {short[r.variant]}{mark} | {x.ok} | {x.errors} | {fmt(x.rps, 1)} | "
                   f"{fmt(x.p50_ms)} | {fmt(x.p90_ms)} | {fmt(x.p99_ms)} | {fmt(x.max_ms)} | "
                   f"{_cells(x.cpu_ms_per_req)} | {_cells(x.cores)} |")
    if any(disturbed(r) for r in report.rounds):
        out += ["", f"⚠: other processes used more than {DISTURBED_CORES:g} cores in that round "
                "(the run was disturbed; run it again on a quiet machine)."]
    errors = [r for r in report.rounds if r.result.errors]
    if errors:
        out += ["", "Errors:"] + [f"- round {r.index} {r.variant}: {r.result.error_kinds}; e.g. "
                                  f"{r.result.error_samples[:2]}" for r in errors]

    lg = report.logs
    out += ["", "### Model log records in the log store", ""]
    rest, store = lg.get("rest"), lg.get("store", {})
    gw_a, gw_b = lg.get("gateway_plain", {}), lg.get("gateway_logged", {})
    if gw_b:
        out.append(f"Queries the gateway answered, by status (warm-ups and the sample query "
                   f"included): (a) {gw_a}, (b) {gw_b}.")
    if rest:
        out.append(f"REST search (`logger:\"{MODEL_LOGGER}\"`, paged by 10,000) "
                   f"{rest['seconds_after_load']:.2f} s after the load ended: {rest['model_records']} "
                   f"records naming {rest['model_rows']} rows, of {rest['expected_rows']} expected "
                   f"({'complete' if rest['complete'] else 'INCOMPLETE'}).")
    if store:
        out += ["", "After the deployments were deleted and the control plane stopped, read from "
                "`logs.db` (`LogStore.count(rid)` and a paged search):", "",
                "| deployment | all records | model records | rows named in them | "
                "self-tests | requests answered 200 | rows expected | missing rows |",
                "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for name in VARIANTS.values():
            s = store.get(name)
            if s is None:
                continue
            answered = int(lg.get(f"gateway_{name}", {}).get("200", 0))
            want = answered + s["self_tests"] if name == "logged" and not aa else 0
            out.append(f"| {names[name]} | {s['all_records']} | {s['model_records']} | "
                       f"{s['model_rows']} | {s['self_tests']} | {answered} | {want} | "
                       f"{want - s['model_rows']} |")
        out += ["", "The replica batches concurrent requests into one `predict` call, so (b) has "
                "fewer records than requests; the rows each record names add up to the requests."]
    return "\n".join(out + markdown_others(report.other_processes) + markdown_notes(report.notes))


# --- main ------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = parser(__doc__, default_reference())
    p.add_argument("--rounds", type=int, default=4, help="measured rounds of each variant")
    p.add_argument("--duration", type=float, default=8.0, help="measured seconds of each round")
    p.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds before each round")
    p.add_argument("--concurrency", type=int, default=16, help="closed-loop clients")
    p.add_argument("--replicas", type=int, default=2, help="replicas of each variant")
    p.add_argument("--order", choices=("abba", "abab"), default="abba",
                   help="abba: a b, b a, a b, ... (cancels a drift over the run); abab: a b, a b, ...")
    p.add_argument("--aa", action="store_true",
                   help="control run: deploy the plain pipeline as (b) too, to see the noise floor")
    p.add_argument("--cost-calls", type=int, default=5000,
                   help="log records for the in-process cost of writing and shipping one record")
    p.add_argument("--ship-timeout", type=float, default=30.0,
                   help="most seconds to wait after the load for the REST search to have every row")
    add_output_options(p, "keep the temporary folder (liveml home, logs.db, server log)")
    args = p.parse_args(argv)
    if args.rounds < 1 or args.duration <= 0 or args.warmup < 0 or args.concurrency < 1 or \
            args.replicas < 1 or args.ship_timeout < 0:
        p.error("--rounds, --concurrency and --replicas must be >= 1, --duration > 0, "
                "--warmup and --ship-timeout >= 0")
    return args


def run(args: argparse.Namespace, report: Report, tmp: Path) -> None:
    import joblib

    pipeline, plain_path = train_reference(args.reference, tmp)
    paths = {"a": plain_path, "b": tmp / "house_model_logged.pkl"}
    if args.aa:
        paths["b"] = tmp / "house_model_again.joblib"
        joblib.dump(pipeline, paths["b"])
    else:
        save_logged_model(pipeline, paths["b"])
        check_models(pipeline, paths["b"])

    cp = ControlPlaneProcess(tmp / "home", tmp / "server.log")
    rids: dict[str, str] = {}
    try:
        client = cp.start()
        for k, name in VARIANTS.items():
            log(f"deploying {label(k, args.aa)} with {args.replicas} replicas")
            deployed = cp.release_and_deploy(paths[k], name, args.replicas, "logging_overhead benchmark",
                                             objective=f"house-{name}", submission=f"house-{name}-v1")
            rids[k] = deployed.rid
            report.deploy_s[name] = round(deployed.seconds, 3)
            report.runtime_configuration[name] = client.deployment(rids[k])["runtimeConfiguration"]
        if report.runtime_configuration["plain"] != report.runtime_configuration["logged"]:
            raise RuntimeError(f"the runtime configurations differ: {report.runtime_configuration}")
        answers = {k: client.query(rid, [ROW]) for k, rid in rids.items()}
        report.notes.append("sample answers: " + "; ".join(
            f"({k}) {json.dumps(a)[:160]}" for k, a in answers.items()))

        freeze_heap()
        others = OtherProcesses()
        load_end = measure(args, report, cp, client, rids)
        report.other_processes = others.busiest(cp)
        check_shipping(args, report, client, rids, load_end)
    finally:
        cp.teardown(report.notes)
    log("counting the records in the log store")
    report.logs["store"] = store_counts(cp.home, {VARIANTS[k]: rid for k, rid in rids.items()})
    logged = [r for r in report.rounds if r.variant == "logged"]
    records = report.logs["store"]["logged"]["model_records"]
    if logged and records and not args.aa:
        per_second = records / (len(logged) * (args.duration + args.warmup))
        batch = max(1, round(per_second * 0.5))  # the control plane ships every 0.5 s
        log(f"in-process cost of one record ({args.cost_calls} records, {batch} per flush)")
        report.logs["cost"] = record_costs(tmp / "cost", args.cost_calls, batch)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    report = Report(
        **report_header(args, "logging_overhead", library=True),
        options={"rounds": args.rounds, "duration": args.duration, "warmup": args.warmup,
                 "concurrency": args.concurrency, "replicas": args.replicas, "order": args.order,
                 "aa": args.aa})
    code = run_in_temp_home(run, args, report, "liveml-logbench-")

    report.summaries = [summarize(v, report.rounds) for v in VARIANTS.values()
                        if any(r.variant == v for r in report.rounds)]
    finish(report, args.out, evaluate, markdown)
    return code


if __name__ == "__main__":
    sys.exit(main())
