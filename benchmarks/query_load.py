"""Query-load benchmark for a liveml live deployment, run by hand.

It trains the reference house-price model, starts a private control plane on 127.0.0.1 in a
temporary liveml home, deploys the model with 2 replicas, then measures:

* deploy -> ACTIVE time (the deploy call until ``Client.wait`` returns),
* v1 inference over HTTP at several concurrencies (aiohttp, one keep-alive session, N coroutines
  in this process, which is separate from the server): requests/s, p50, p99, errors, and the CPU
  each process spent per request,
* in-process baselines: the model's ``predict`` and liveml's adapter path on the same row.

It prints a Markdown report next to the targets, optionally writes JSON (``--out``), and tears
everything down (deployment, server, temporary home). Usage: ``python benchmarks/query_load.py``.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import importlib.util
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlparse

import aiohttp
import orjson
import psutil

REPO = Path(__file__).resolve().parents[1]
ROW: dict[str, Any] = {"house-location": "New York", "bedrooms": 3, "bathrooms": 1.5}
BODY: dict[str, Any] = {"requestData": [ROW], "requestParams": {}}
HOST = "127.0.0.1"

TARGET_DEPLOY_S = 3.0
TARGET_P50_OVERHEAD_MS = 1.5
TARGET_RPS_AT_16 = 300.0


# --- small helpers ----------------------------------------------------------------------------
def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0..100) with linear interpolation; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def load_reference(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("liveml_bench_reference", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"query_load: cannot import the reference model script {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- results ----------------------------------------------------------------------------------
@dataclass
class Timing:
    """Latency figures of an in-process baseline."""

    name: str
    calls: int
    p50_ms: float
    p99_ms: float
    mean_ms: float


@dataclass
class LoadResult:
    path: str
    concurrency: int
    duration_s: float
    ok: int
    errors: int
    error_kinds: dict[str, int]
    error_samples: list[str]
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    #: CPU seconds per request (ms) spent by this load generator, the control plane (gateway)
    #: and all replicas together; with 2 cores, their sum bounds the throughput.
    cpu_ms_per_req: dict[str, float] = field(default_factory=dict)
    #: Busy share of one core over the run, per process group.
    cpu_util: dict[str, float] = field(default_factory=dict)
    #: CPU seconds of each replica over the run (how evenly the gateway spreads the load).
    replica_cpu_split: list[float] = field(default_factory=list)


@dataclass
class Report:
    started_at: str
    machine: dict[str, Any]
    options: dict[str, Any]
    deploy_s: float | None = None
    deploy_timeline: list[dict[str, Any]] = field(default_factory=list)
    baselines: list[Timing] = field(default_factory=list)
    load: list[LoadResult] = field(default_factory=list)
    direct: list[LoadResult] = field(default_factory=list)
    hops: list[dict[str, Any]] = field(default_factory=list)
    targets: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


# --- in-process baselines ---------------------------------------------------------------------
def time_calls(name: str, fn: Callable[[], Any], calls: int, warmup: int = 200) -> Timing:
    for _ in range(warmup):
        fn()
    samples = []
    clock = time.perf_counter
    for _ in range(calls):
        t0 = clock()
        fn()
        samples.append((clock() - t0) * 1000.0)
    return Timing(name, calls, percentile(samples, 50), percentile(samples, 99),
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
        # what the replica does per v1 request, minus HTTP: JSON in, adapter, JSON out
        outputs = runner.infer(runner.to_frames(runner.api.decode_v1(orjson.loads(body_bytes))))
        return orjson.dumps({"modelUuid": "", "responseData": encode(next(iter(outputs.values())))},
                            option=option, default=str)

    return [
        time_calls("model.predict(DataFrame)", lambda: model.predict(frame), calls),
        time_calls("adapter: decode_v1 -> to_frames -> infer", adapter_path, calls),
        time_calls("adapter + JSON decode/encode (replica work)", replica_work, calls),
    ]


# --- the control plane ------------------------------------------------------------------------
class ControlPlaneProcess:
    """``liveml server`` as a child process on 127.0.0.1 with its own home."""

    def __init__(self, home: Path, log_path: Path) -> None:
        self.home = home
        self.log_path = log_path
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.token = ""

    def start(self, timeout: float = 60.0) -> None:
        cmd = [sys.executable, "-m", "liveml_ext.cli", "server", "--host", HOST,
               "--port", str(self.port), "--home", str(self.home)]
        env = {k: v for k, v in os.environ.items() if not k.startswith("LIVEML_")}
        with open(self.log_path, "wb") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, env=env)
        conn = self.home / "connection.json"
        deadline = time.monotonic() + timeout
        while not conn.exists():
            if self.proc.poll() is not None:
                raise RuntimeError(f"the control plane exited with code {self.proc.returncode}:\n"
                                   f"{self.log_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"no {conn} after {timeout:.0f}s:\n{self.log_tail()}")
            time.sleep(0.05)
        doc = json.loads(conn.read_text())
        self.url, self.token = doc["url"], doc["token"]
        if urlparse(self.url).hostname != HOST:
            raise RuntimeError(f"the control plane is at {self.url}, not on {HOST}")

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def replicas(self) -> list[psutil.Process]:
        if self.proc is None:
            return []
        try:
            children = psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []
        out = []
        for child in children:
            with contextlib.suppress(psutil.Error):
                if "liveml_runtime" in child.cmdline() and "serve" in child.cmdline():
                    out.append(child)
        return out

    def stop(self, timeout: float = 30.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log(f"the control plane did not stop within {timeout:.0f}s after SIGINT; killing it")
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode


def cpu_seconds(proc: psutil.Process) -> float:
    try:
        t = proc.cpu_times()
    except psutil.Error:
        return 0.0
    return float(t.user + t.system)


def replica_timeline(home: Path, t_deploy: float) -> list[dict[str, Any]]:
    """Each replica's startup steps from its JSON log, in seconds after the deploy call."""
    steps = ("Replica listening", "Loading model artifact", "Model loaded", "Self-test prediction",
             "Replica ready")
    timeline = []
    for path in sorted((home / "logs").glob("*/*.log")):
        events: dict[str, float] = {}
        for line in path.read_bytes().splitlines():
            try:
                doc = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            if not isinstance(doc, dict) or "time" not in doc:
                continue
            message = str(doc.get("message", ""))
            for step in steps:
                if message.startswith(step) and step not in events:
                    at = dt.datetime.fromisoformat(doc["time"]).timestamp()
                    events[step] = round(at - t_deploy, 3)
        timeline.append({"replica": path.stem, **events})
    return timeline


# --- load ------------------------------------------------------------------------------------
@dataclass
class _Tally:
    latencies: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    samples: list[str] = field(default_factory=list)


async def _worker(session: aiohttp.ClientSession, url: str, body: bytes, headers: dict[str, str],
                  deadline: float, tally: _Tally) -> None:
    clock = time.perf_counter
    while True:
        t0 = clock()
        if t0 >= deadline:
            return
        try:
            async with session.post(url, data=body, headers=headers) as resp:
                data = await resp.read()
                status = resp.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            tally.errors[type(exc).__name__] += 1
            if len(tally.samples) < 5:
                tally.samples.append(f"{type(exc).__name__}: {exc}")
            continue
        elapsed = clock() - t0
        if status == 200:
            tally.latencies.append(elapsed)
        else:
            tally.errors[f"HTTP {status}"] += 1
            if len(tally.samples) < 5:
                tally.samples.append(f"HTTP {status}: {data[:300].decode(errors='replace')}")


async def _run(session: aiohttp.ClientSession, url: str, headers: dict[str, str],
               concurrency: int, seconds: float) -> tuple[_Tally, float]:
    body = orjson.dumps(BODY)
    tally = _Tally()
    start = time.perf_counter()
    deadline = start + seconds
    await asyncio.gather(*(_worker(session, url, body, headers, deadline, tally)
                           for _ in range(concurrency)))
    return tally, time.perf_counter() - start


async def load_test(cp: ControlPlaneProcess, rid: str, concurrency: int, seconds: float,
                    warmup: float) -> LoadResult:
    url = f"{cp.url}foundry-ml-live/api/inference/transform/{rid}"
    headers = {"Authorization": f"Bearer {cp.token}", "Content-Type": "application/json"}
    connector = aiohttp.TCPConnector(limit=concurrency, keepalive_timeout=60)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout,
                                     skip_auto_headers=("User-Agent",)) as session:
        if warmup > 0:
            await _run(session, url, headers, concurrency, warmup)
        assert cp.proc is not None
        server = psutil.Process(cp.proc.pid)
        replicas = cp.replicas()
        me = psutil.Process()
        before = {"load generator": cpu_seconds(me), "control plane": cpu_seconds(server)}
        replica_before = [cpu_seconds(r) for r in replicas]
        tally, elapsed = await _run(session, url, headers, concurrency, seconds)
        after = {"load generator": cpu_seconds(me), "control plane": cpu_seconds(server)}
        replica_after = [cpu_seconds(r) for r in replicas]

    used = {k: after[k] - before[k] for k in before}
    replica_used = [a - b for a, b in zip(replica_after, replica_before)]
    used["replicas"] = sum(replica_used)
    ok = len(tally.latencies)
    errors = sum(tally.errors.values())
    ms = [x * 1000.0 for x in tally.latencies]
    return LoadResult(
        concurrency=concurrency, duration_s=round(elapsed, 3), ok=ok, errors=errors,
        error_kinds=dict(tally.errors), error_samples=tally.samples,
        rps=ok / elapsed if elapsed else 0.0,
        p50_ms=percentile(ms, 50), p90_ms=percentile(ms, 90), p99_ms=percentile(ms, 99),
        max_ms=max(ms) if ms else float("nan"),
        cpu_ms_per_req={k: 1000.0 * v / max(1, ok + errors) for k, v in used.items()},
        cpu_util={k: v / elapsed for k, v in used.items()},
        replica_cpu_split=[round(v, 3) for v in replica_used])


# --- report ----------------------------------------------------------------------------------
def _f(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None or value != value else f"{value:.{digits}f}"


def evaluate(report: Report) -> None:
    predict = next((b for b in report.baselines if b.name.startswith("model.predict")), None)
    by_c = {r.concurrency: r for r in report.load}
    one, sixteen = by_c.get(1), by_c.get(16)
    targets = [{"target": f"deploy -> ACTIVE (2 replicas) < {TARGET_DEPLOY_S:g} s",
                "measured": f"{_f(report.deploy_s)} s",
                "pass": report.deploy_s is not None and report.deploy_s < TARGET_DEPLOY_S}]
    if one and predict:
        overhead = one.p50_ms - predict.p50_ms
        targets.append({"target": f"1 client: p50 <= in-process predict p50 + "
                                  f"{TARGET_P50_OVERHEAD_MS:g} ms",
                        "measured": f"{_f(one.p50_ms)} ms vs {_f(predict.p50_ms)} ms "
                                    f"(+{_f(overhead)} ms)",
                        "pass": overhead <= TARGET_P50_OVERHEAD_MS and one.errors == 0})
    if sixteen:
        targets.append({"target": f"16 clients: >= {TARGET_RPS_AT_16:g} requests/s",
                        "measured": f"{_f(sixteen.rps, 1)} req/s",
                        "pass": sixteen.rps >= TARGET_RPS_AT_16 and sixteen.errors == 0})
    report.targets = targets


def markdown(report: Report) -> str:
    out = [f"## liveml query load — {report.started_at}", "",
           f"Machine: {report.machine['cpus']} CPUs, Python {report.machine['python']}, "
           f"{report.machine['platform']}. Options: " +
           ", ".join(f"{k}={v}" for k, v in report.options.items()), "",
           "### Targets", "", "| target | measured | result |", "|---|---|---|"]
    for t in report.targets:
        out.append(f"| {t['target']} | {t['measured']} | {'PASS' if t['pass'] else 'MISS'} |")
    out += ["", "### Deploy", "",
            f"deploy → ACTIVE, 2 replicas: **{_f(report.deploy_s)} s** (deploy call until "
            "`Client.wait` returns)", ""]
    if report.deploy_timeline:
        steps = [k for k in report.deploy_timeline[0] if k != "replica"]
        out += ["Replica startup steps, seconds after the deploy call (from the replica logs):", "",
                "| replica | " + " | ".join(steps) + " |", "|---" * (len(steps) + 1) + "|"]
        for t in report.deploy_timeline:
            out.append(f"| {t['replica']} | " + " | ".join(_f(t.get(s)) for s in steps) + " |")
        out.append("")
    out += ["### HTTP load (v1, 1 row per request)", "",
            "| clients | requests | errors | req/s | p50 ms | p90 ms | p99 ms | max ms "
            "| CPU ms/req: loadgen / control plane / replicas | core use: loadgen / cp / replicas |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---|---|"]
    for r in report.load:
        cpu = r.cpu_ms_per_req
        util = r.cpu_util
        out.append(
            f"| {r.concurrency} | {r.ok} | {r.errors} | {_f(r.rps, 1)} | {_f(r.p50_ms)} | "
            f"{_f(r.p90_ms)} | {_f(r.p99_ms)} | {_f(r.max_ms)} | "
            f"{_f(cpu['load generator'])} / {_f(cpu['control plane'])} / {_f(cpu['replicas'])} | "
            f"{_f(util['load generator'])} / {_f(util['control plane'])} / "
            f"{_f(util['replicas'])} |")
    errors = [r for r in report.load if r.errors]
    if errors:
        out += ["", "Errors:"]
        for r in errors:
            out.append(f"- {r.concurrency} clients: {r.error_kinds}; e.g. {r.error_samples[:2]}")
    out += ["", "### In-process baselines (same model, same one-row input)", "",
            "| path | calls | p50 ms | p99 ms | mean ms |", "|---|---:|---:|---:|---:|"]
    for b in report.baselines:
        out.append(f"| {b.name} | {b.calls} | {_f(b.p50_ms, 3)} | {_f(b.p99_ms, 3)} | "
                   f"{_f(b.mean_ms, 3)} |")
    if report.notes:
        out += ["", "Notes:"] + [f"- {n}" for n in report.notes]
    return "\n".join(out)


# --- main ------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--reference", type=Path,
                   default=REPO.parent / "shared" / "reference" / "house_model.py",
                   help="the reference model script (defines train())")
    p.add_argument("--duration", type=float, default=10.0, help="seconds of load per concurrency")
    p.add_argument("--warmup", type=float, default=2.0, help="seconds of unmeasured load first")
    p.add_argument("--concurrency", type=lambda s: [int(x) for x in s.split(",")],
                   default=[1, 16, 64], help="comma-separated client counts")
    p.add_argument("--replicas", type=int, default=2)
    p.add_argument("--baseline-calls", type=int, default=2000)
    p.add_argument("--wait-interval", type=float, default=0.02,
                   help="poll interval of Client.wait while timing the deploy")
    p.add_argument("--out", type=Path, help="also write the results as JSON here")
    p.add_argument("--keep-home", action="store_true",
                   help="keep the temporary liveml home (logs, database) for inspection")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.reference.is_file():
        raise SystemExit(f"query_load: no reference model script at {args.reference} "
                         "(give --reference PATH)")
    report = Report(
        started_at=dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        machine={"cpus": os.cpu_count(), "python": platform.python_version(),
                 "platform": platform.platform()},
        options={"duration": args.duration, "warmup": args.warmup,
                 "concurrency": ",".join(map(str, args.concurrency)), "replicas": args.replicas,
                 "baseline_calls": args.baseline_calls})

    tmp = Path(tempfile.mkdtemp(prefix="liveml-bench-"))
    home = tmp / "home"
    cp = ControlPlaneProcess(home, tmp / "server.log")
    client: Any = None
    rid: str | None = None
    code = 0
    try:
        log(f"training the reference model ({args.reference})")
        import joblib

        reference = load_reference(args.reference)
        model_path = tmp / "house_model.joblib"
        joblib.dump(reference.train(), model_path)

        log(f"in-process baselines ({args.baseline_calls} calls each)")
        report.baselines = baselines(model_path, args.baseline_calls)

        log(f"starting the control plane on {HOST}:{cp.port} (home {home})")
        cp.start()
        from liveml_ext.client import Client

        client = Client(cp.url, cp.token)
        client.create_objective("house-prices", description="query_load benchmark")
        client.submit("house-prices", model_path, name="house-v1")
        client.release("house-prices", "house-v1", "1.0", tag="production")

        log(f"deploying with {args.replicas} replicas")
        t_wall, t0 = time.time(), time.perf_counter()
        doc = client.deploy("house-prices", name="bench", replicas=args.replicas)
        rid = doc["rid"]
        client.wait(rid, timeout=120, interval=args.wait_interval)
        report.deploy_s = time.perf_counter() - t0
        report.deploy_timeline = replica_timeline(home, t_wall)
        log(f"ACTIVE after {report.deploy_s:.2f}s")

        check = client.query(rid, [ROW])
        report.notes.append(f"sample answer: {json.dumps(check)[:200]}")

        for n in args.concurrency:
            log(f"load: {n} client(s), {args.warmup:g}s warm-up + {args.duration:g}s")
            result = asyncio.run(load_test(cp, rid, n, args.duration, args.warmup))
            report.load.append(result)
            log(f"  {result.rps:.1f} req/s, p50 {result.p50_ms:.2f} ms, p99 {result.p99_ms:.2f} ms, "
                f"{result.errors} errors")
        report.notes.append(
            "CPU ms/req and core use come from psutil CPU times of this process, the control "
            "plane process and the replica processes over the measured window (2 cores = 2.0).")
    except KeyboardInterrupt:
        log("interrupted")
        code = 130
    except Exception as exc:  # noqa: BLE001 - reported, then torn down
        log(f"benchmark failed: {type(exc).__name__}: {exc}")
        tail = cp.log_tail()
        if tail:
            log("control plane log (tail):\n" + tail)
        report.notes.append(f"FAILED: {type(exc).__name__}: {exc}")
        code = 1
    finally:
        if client is not None and rid is not None:
            try:
                client.delete(rid)
            except Exception as exc:  # noqa: BLE001 - teardown goes on
                log(f"could not delete the deployment: {exc}")
        rc = cp.stop()
        if rc not in (None, 0):
            log(f"the control plane exited with code {rc}")
        if args.keep_home:
            log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    evaluate(report)
    print(markdown(report))
    if args.out:
        args.out.write_text(json.dumps(asdict(report), indent=2, default=str) + "\n")
        log(f"wrote {args.out}")
    return code


if __name__ == "__main__":
    sys.exit(main())
