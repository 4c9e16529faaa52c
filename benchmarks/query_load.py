"""Query-load benchmark for a liveml live deployment, run by hand.

It trains the reference house-price model, starts a private control plane on 127.0.0.1 in a
temporary liveml home, deploys the model with 2 replicas, then measures:

* deploy -> ACTIVE time (the deploy call until ``Client.wait`` returns), with each replica's
  startup steps from its log,
* v1 inference over HTTP through the control plane's gateway at several concurrencies (aiohttp,
  one keep-alive session, N coroutines in this process, which is separate from the server):
  requests/s, p50/p90/p99, errors, and the CPU each process spent per request,
* the same one-client load sent straight to a standalone replica (same runtime, no gateway),
* in-process baselines: the model's ``predict`` and liveml's adapter path on the same row,

so that the cost of each hop can be told apart. It prints a Markdown report next to the targets,
optionally writes JSON (``--out``), and tears everything down (deployment, server, temporary
home). Usage: ``python benchmarks/query_load.py [--duration 10] [--out results.json]``.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402 - the benchmarks' shared helpers
    BODY,
    CPU_GROUPS,
    HOST,
    ROW,
    SHARED_REFERENCE,
    ControlPlaneProcess,
    LoadResult,
    ReportHeader,
    add_output_options,
    clean_env,
    finish,
    fmt,
    gateway_url,
    load_test,
    log,
    markdown_header,
    markdown_notes,
    markdown_steps,
    markdown_targets,
    parser,
    percentile,
    replica_timeline,
    report_header,
    run_in_temp_home,
    terminate,
    train_reference,
)

TARGET_DEPLOY_S = 3.0
TARGET_P50_OVERHEAD_MS = 1.5
TARGET_RPS_AT_16 = 300.0

# What the local backend gives each replica (liveml_ext/backends/local.py), for the standalone one.
REPLICA_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
               "PYTHONUNBUFFERED": "1"}


# --- results ----------------------------------------------------------------------------------
@dataclass
class Timing:
    """Latency figures of an in-process baseline."""

    key: str
    name: str
    calls: int
    p50_ms: float
    p99_ms: float
    mean_ms: float


@dataclass
class Report(ReportHeader):
    deploy_s: float | None = None
    deploy_timeline: list[dict[str, Any]] = field(default_factory=list)
    baselines: list[Timing] = field(default_factory=list)
    load: list[LoadResult] = field(default_factory=list)
    hops: list[dict[str, Any]] = field(default_factory=list)
    targets: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


# --- in-process baselines ---------------------------------------------------------------------
def time_calls(key: str, name: str, fn: Callable[[], Any], calls: int, warmup: int = 200) -> Timing:
    for _ in range(warmup):
        fn()
    samples = []
    clock = time.perf_counter
    for _ in range(calls):
        t0 = clock()
        fn()
        samples.append((clock() - t0) * 1000.0)
    return Timing(key, name, calls, percentile(samples, 50), percentile(samples, 99),
                  statistics.fmean(samples))


def baselines(model_path: Path, calls: int) -> list[Timing]:
    import joblib
    import pandas as pd

    from liveml_runtime.adapter import ModelRunner, encode, wrap

    model = joblib.load(model_path)
    frame = pd.DataFrame([ROW])
    runner = ModelRunner(wrap(model))
    body_bytes = orjson.dumps(BODY)
    body = orjson.loads(body_bytes)
    option = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS

    def adapter_path() -> Any:
        return runner.infer(runner.to_frames(runner.api.decode_v1(body)))

    def replica_work() -> bytes:
        # what a replica does per v1 request besides HTTP and its queue: JSON in, adapter, JSON out
        outputs = runner.infer(runner.to_frames(runner.api.decode_v1(orjson.loads(body_bytes))))
        return orjson.dumps({"modelUuid": "", "responseData": encode(next(iter(outputs.values())))},
                            option=option, default=str)

    return [
        time_calls("predict", "model.predict(DataFrame)", lambda: model.predict(frame), calls),
        time_calls("adapter", "adapter: decode_v1 → to_frames → infer", adapter_path, calls),
        time_calls("replica_work", "adapter + JSON decode/encode (replica work)", replica_work,
                   calls),
    ]


# --- processes under test ---------------------------------------------------------------------
class StandaloneReplica:
    """A replica started by hand (as the local backend does, without its token) on 127.0.0.1."""

    def __init__(self, artifact: Path, workdir: Path) -> None:
        self.artifact = artifact
        self.port_file = workdir / "standalone.port"
        self.log_path = workdir / "standalone-replica.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""

    async def start(self, timeout: float = 60.0) -> None:
        cmd = [sys.executable, "-m", "liveml_runtime", "serve", "--artifact", str(self.artifact),
               "--host", HOST, "--port", "0", "--port-file", str(self.port_file),
               "--node-id", "standalone", "--thread-count", "1"]
        with open(self.log_path, "wb") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL,
                                         env={**clean_env(), **REPLICA_ENV})
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as session:
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"the standalone replica exited: {self.log_path.read_text()}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the standalone replica is not ready after {timeout:.0f}s")
                if self.port_file.exists():
                    self.url = f"http://{HOST}:{int(self.port_file.read_text())}"
                    with contextlib.suppress(aiohttp.ClientError):
                        async with session.get(f"{self.url}/health/ready") as resp:
                            if resp.status == 200:
                                return
                await asyncio.sleep(0.05)

    def process(self) -> psutil.Process:
        assert self.proc is not None
        return psutil.Process(self.proc.pid)

    def stop(self) -> None:
        if self.proc is not None:
            terminate(self.proc, signal.SIGTERM, 30.0, "the standalone replica")


# --- load ------------------------------------------------------------------------------------
async def gateway_load(cp: ControlPlaneProcess, rid: str, concurrency: int, seconds: float,
                       warmup: float) -> LoadResult:
    url, headers = gateway_url(cp, rid)
    return await load_test("gateway", url, headers, concurrency, seconds, warmup,
                           {"control plane": [cp.process()], "replicas": cp.replicas()})


async def direct_load(artifact: Path, workdir: Path, concurrency: int, seconds: float,
                      warmup: float) -> LoadResult:
    replica = StandaloneReplica(artifact, workdir)
    try:
        await replica.start()
        return await load_test("replica direct", f"{replica.url}/v1/transform",
                               {"Content-Type": "application/json"}, concurrency, seconds, warmup,
                               {"control plane": [], "replicas": [replica.process()]})
    finally:
        replica.stop()


# --- report ----------------------------------------------------------------------------------
def evaluate(report: Report) -> None:
    base = {b.key: b for b in report.baselines}
    predict, adapter, work = base.get("predict"), base.get("adapter"), base.get("replica_work")
    gateway = {r.concurrency: r for r in report.load if r.path == "gateway"}
    direct = next((r for r in report.load if r.path == "replica direct" and r.concurrency == 1),
                  None)
    one, sixteen = gateway.get(1), gateway.get(16)

    targets = [{"target": f"deploy → ACTIVE (2 replicas) < {TARGET_DEPLOY_S:g} s",
                "measured": f"{fmt(report.deploy_s)} s",
                "pass": report.deploy_s is not None and report.deploy_s < TARGET_DEPLOY_S}]
    if one and predict:
        overhead = one.p50_ms - predict.p50_ms
        targets.append({"target": f"1 client: p50 ≤ in-process predict p50 + "
                                  f"{TARGET_P50_OVERHEAD_MS:g} ms",
                        "measured": f"{fmt(one.p50_ms)} ms vs {fmt(predict.p50_ms)} ms "
                                    f"(+{fmt(overhead)} ms)",
                        "pass": overhead <= TARGET_P50_OVERHEAD_MS and one.errors == 0})
    if sixteen:
        targets.append({"target": f"16 clients: ≥ {TARGET_RPS_AT_16:g} requests/s",
                        "measured": f"{fmt(sixteen.rps, 1)} req/s ({sixteen.errors} errors)",
                        "pass": sixteen.rps >= TARGET_RPS_AT_16 and sixteen.errors == 0})
    report.targets = targets

    # p50 at one client, split into hops (differences of medians: indicative, not exact)
    hops: list[dict[str, Any]] = []
    if predict:
        hops.append({"hop": "model.predict (in process)", "ms": predict.p50_ms})
    if predict and adapter:
        hops.append({"hop": "liveml adapter: decode_v1, to_frames, infer (in process)",
                     "ms": adapter.p50_ms - predict.p50_ms})
    if adapter and work:
        hops.append({"hop": "JSON decode/encode (in process)", "ms": work.p50_ms - adapter.p50_ms})
    if work and direct:
        hops.append({"hop": "replica HTTP server + inference queue + client + loopback",
                     "ms": direct.p50_ms - work.p50_ms})
    if direct and one:
        hops.append({"hop": "control plane gateway (auth, forward, 2nd HTTP hop)",
                     "ms": one.p50_ms - direct.p50_ms})
    if one:
        hops.append({"hop": "total: 1 client through the gateway (p50)", "ms": one.p50_ms})
    report.hops = hops


def markdown(report: Report) -> str:
    out = markdown_header("liveml query load", report) + markdown_targets(report.targets)

    out += ["", "### Deploy", "",
            f"deploy → ACTIVE, 2 replicas: **{fmt(report.deploy_s)} s** (deploy call until "
            "`Client.wait` returns)", ""]
    if report.deploy_timeline:
        out += ["Replica startup steps, seconds after the deploy call (replica logs):", "",
                *markdown_steps(report.deploy_timeline), ""]

    out += ["### HTTP load (v1, one row per request)", "",
            "CPU per request and cores used over each measured window: load generator / control "
            "plane / replicas / other processes on the machine.", "",
            "| path | clients | requests | errors | req/s | p50 ms | p90 ms | p99 ms | max ms "
            "| CPU ms/req | cores used |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|"]
    for r in report.load:
        cpu = " / ".join(fmt(r.cpu_ms_per_req.get(g)) for g in CPU_GROUPS)
        cores = " / ".join(fmt(r.cores.get(g)) for g in CPU_GROUPS)
        out.append(f"| {r.path} | {r.concurrency} | {r.ok} | {r.errors} | {fmt(r.rps, 1)} | "
                   f"{fmt(r.p50_ms)} | {fmt(r.p90_ms)} | {fmt(r.p99_ms)} | {fmt(r.max_ms)} | "
                   f"{cpu} | {cores} |")
    errors = [r for r in report.load if r.errors]
    if errors:
        out += ["", "Errors:"]
        for r in errors:
            out.append(f"- {r.path}, {r.concurrency} clients: {r.error_kinds}; "
                       f"e.g. {r.error_samples[:2]}")

    out += ["", "### In-process baselines (same model, same one-row input)", "",
            "| path | calls | p50 ms | p99 ms | mean ms |", "|---|---:|---:|---:|---:|"]
    for b in report.baselines:
        out.append(f"| {b.name} | {b.calls} | {fmt(b.p50_ms, 3)} | {fmt(b.p99_ms, 3)} | "
                   f"{fmt(b.mean_ms, 3)} |")
    if report.hops:
        out += ["", "### Where the one-client p50 goes (differences of medians)", "",
                "| hop | ms |", "|---|---:|"]
        out += [f"| {h['hop']} | {fmt(h['ms'])} |" for h in report.hops]
    return "\n".join(out + markdown_notes(report.notes))


# --- main ------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = parser(__doc__, SHARED_REFERENCE)
    p.add_argument("--duration", type=float, default=10.0, help="seconds of load per concurrency")
    p.add_argument("--warmup", type=float, default=2.0, help="seconds of unmeasured load first")
    p.add_argument("--concurrency", type=lambda s: [int(x) for x in s.split(",")],
                   default=[1, 16, 64], help="comma-separated client counts")
    p.add_argument("--replicas", type=int, default=2)
    p.add_argument("--baseline-calls", type=int, default=2000)
    p.add_argument("--wait-interval", type=float, default=0.02,
                   help="poll interval of Client.wait while timing the deploy")
    p.add_argument("--no-direct", action="store_true",
                   help="skip the one-client run against a standalone replica")
    add_output_options(p, "keep the temporary folder (liveml home, logs) for inspection")
    args = p.parse_args(argv)
    if args.duration <= 0 or args.warmup < 0 or any(n < 1 for n in args.concurrency):
        p.error("--duration must be > 0, --warmup >= 0 and each concurrency >= 1")
    return args


def run(args: argparse.Namespace, report: Report, tmp: Path) -> None:
    _, model_path = train_reference(args.reference, tmp)

    log(f"in-process baselines ({args.baseline_calls} calls each)")
    report.baselines = baselines(model_path, args.baseline_calls)

    cp = ControlPlaneProcess(tmp / "home", tmp / "server.log")
    try:
        client = cp.start()
        log(f"deploying with {args.replicas} replicas")
        deployed = cp.release_and_deploy(model_path, "bench", args.replicas, "query_load benchmark",
                                         interval=args.wait_interval)
        rid = deployed.rid
        report.deploy_s = deployed.seconds
        report.deploy_timeline = replica_timeline(cp.home, deployed.called_at)
        log(f"ACTIVE after {report.deploy_s:.2f}s")
        report.notes.append(f"sample answer: {json.dumps(client.query(rid, [ROW]))[:200]}")

        for n in args.concurrency:
            log(f"gateway: {n} client(s), {args.warmup:g}s warm-up + {args.duration:g}s")
            result = asyncio.run(gateway_load(cp, rid, n, args.duration, args.warmup))
            report.load.append(result)
            log(f"  {result.rps:.1f} req/s, p50 {result.p50_ms:.2f} ms, p99 {result.p99_ms:.2f} ms, "
                f"{result.errors} errors")
            if n == 1 and not args.no_direct:
                log(f"standalone replica, no gateway: 1 client, {args.duration:g}s")
                result = asyncio.run(direct_load(model_path, tmp, 1, args.duration, args.warmup))
                report.load.append(result)
                log(f"  {result.rps:.1f} req/s, p50 {result.p50_ms:.2f} ms, "
                    f"p99 {result.p99_ms:.2f} ms, {result.errors} errors")
    finally:
        cp.teardown(report.notes)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    report = Report(
        **report_header(args, "query_load"),
        options={"duration": args.duration, "warmup": args.warmup,
                 "concurrency": ",".join(map(str, args.concurrency)), "replicas": args.replicas,
                 "baseline_calls": args.baseline_calls, "wait_interval": args.wait_interval})
    report.notes.append(
        "CPU figures are psutil CPU times over each measured window; 'other processes' is the "
        "machine's busy time minus the benchmark's processes (a high value means the figures "
        "were disturbed by other work).")

    code = run_in_temp_home(run, args, report, "liveml-bench-")

    finish(report, args.out, evaluate, markdown)
    return code


if __name__ == "__main__":
    sys.exit(main())
