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
OBJECTIVE, SUBMISSION, VERSION = "house-prices", "house-v1", "1.0"

TARGET_DEPLOY_S = 3.0
TARGET_P50_OVERHEAD_MS = 1.5
TARGET_RPS_AT_16 = 300.0

# What the local backend gives each replica (liveml_ext/backends/local.py), for the standalone one.
REPLICA_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
               "PYTHONUNBUFFERED": "1"}


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


def clean_env() -> dict[str, str]:
    """This environment without liveml's own variables (no outside control plane is reused)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("LIVEML_")}


def source_state() -> dict[str, Any]:
    """The commit benchmarked and the library files that differ from it (read-only git calls)."""
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0"}

    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True,
                                  env=env, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    changed = git("diff", "--name-only", "HEAD", "--", "liveml_ext", "runtime")
    return {"commit": git("rev-parse", "--short", "HEAD") or "unknown",
            "uncommitted_library_changes": changed.split() if changed else []}


def _terminate(proc: subprocess.Popen[bytes], sig: int, timeout: float, what: str) -> int | None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            log(f"{what} did not stop within {timeout:.0f}s; killing it")
            proc.kill()
            proc.wait(10)
    return proc.returncode


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
    #: CPU time per request (ms) by process group: this load generator, the control plane
    #: (gateway), the replica(s), and everything else on the machine over the same window.
    cpu_ms_per_req: dict[str, float] = field(default_factory=dict)
    #: Cores used over the window by the same groups (the machine's total is os.cpu_count()).
    cores: dict[str, float] = field(default_factory=dict)
    #: CPU seconds of each replica over the window (how evenly the gateway spreads the load).
    replica_cpu_s: list[float] = field(default_factory=list)


@dataclass
class Report:
    started_at: str
    machine: dict[str, Any]
    source: dict[str, Any]
    options: dict[str, Any]
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
class ControlPlaneProcess:
    """``liveml server`` as a child process on 127.0.0.1 with its own home."""

    def __init__(self, home: Path, log_path: Path, args: tuple[str, ...] = ()) -> None:
        self.home = home
        self.log_path = log_path
        self.args = args  # more `liveml server` flags
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.token = ""
        # whose children the replicas are: the control plane's, or e.g. a simulated cluster's
        self.replica_parent: psutil.Process | None = None

    def start(self, timeout: float = 60.0) -> None:
        cmd = [sys.executable, "-m", "liveml_ext.cli", "server", "--host", HOST,
               "--port", str(self.port), "--home", str(self.home), *self.args]
        with open(self.log_path, "wb") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, env=clean_env())
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

    def process(self) -> psutil.Process:
        assert self.proc is not None
        return psutil.Process(self.proc.pid)

    def replicas(self) -> list[psutil.Process]:
        """The live replica processes (children running ``liveml_runtime serve``)."""
        if self.proc is None:
            return []
        try:
            children = (self.replica_parent or self.process()).children(recursive=True)
        except psutil.NoSuchProcess:
            return []
        out = []
        for child in children:
            with contextlib.suppress(psutil.Error):
                cmd = child.cmdline()
                if "liveml_runtime" in cmd and "serve" in cmd and child.status() != "zombie":
                    out.append(child)
        return out

    def stop(self, timeout: float = 30.0) -> int | None:
        return None if self.proc is None else _terminate(self.proc, signal.SIGINT, timeout,
                                                         "the control plane")


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
            _terminate(self.proc, signal.SIGTERM, 30.0, "the standalone replica")


def replica_timeline(home: Path, t_deploy: float) -> list[dict[str, Any]]:
    """Each replica's startup steps from its JSON log, in seconds after the deploy call."""
    steps = ("Replica listening", "Model loaded", "Self-test prediction", "Replica ready")
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
        timeline.append({"replica": path.stem, **{s: events.get(s) for s in steps}})
    return timeline


# --- load ------------------------------------------------------------------------------------
@dataclass
class _Tally:
    latencies: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    samples: list[str] = field(default_factory=list)

    def error(self, kind: str, detail: str) -> None:
        self.errors[kind] += 1
        if len(self.samples) < 5:
            self.samples.append(detail)


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
            tally.error(type(exc).__name__, f"{type(exc).__name__}: {exc}")
            continue
        elapsed = clock() - t0
        if status == 200:
            tally.latencies.append(elapsed)
        else:
            tally.error(f"HTTP {status}", f"HTTP {status}: {data[:300].decode(errors='replace')}")


async def _run(session: aiohttp.ClientSession, url: str, headers: dict[str, str],
               concurrency: int, seconds: float) -> tuple[_Tally, float]:
    body = orjson.dumps(BODY)
    tally = _Tally()
    start = time.perf_counter()
    deadline = start + seconds
    await asyncio.gather(*(_worker(session, url, body, headers, deadline, tally)
                           for _ in range(concurrency)))
    return tally, time.perf_counter() - start


def _cpu(procs: list[psutil.Process]) -> list[float]:
    out = []
    for proc in procs:
        try:
            t = proc.cpu_times()
            out.append(float(t.user + t.system))
        except psutil.Error:
            out.append(0.0)
    return out


def _busy() -> float:
    t = psutil.cpu_times()
    return float(sum(t) - t.idle - getattr(t, "iowait", 0.0))


async def load_test(path: str, url: str, headers: dict[str, str], concurrency: int,
                    seconds: float, warmup: float, groups: dict[str, list[psutil.Process]]
                    ) -> LoadResult:
    """``concurrency`` clients for ``seconds`` after ``warmup``; CPU is counted per group."""
    groups = {"load generator": [psutil.Process()], **groups}
    connector = aiohttp.TCPConnector(limit=concurrency, keepalive_timeout=60)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout,
                                     skip_auto_headers=("User-Agent",)) as session:
        if warmup > 0:
            await _run(session, url, headers, concurrency, warmup)
        before = {name: _cpu(procs) for name, procs in groups.items()}
        busy_before = _busy()
        tally, elapsed = await _run(session, url, headers, concurrency, seconds)
        busy = _busy() - busy_before
        after = {name: _cpu(procs) for name, procs in groups.items()}

    used_each = {name: [a - b for a, b in zip(after[name], before[name])] for name in groups}
    used = {name: sum(v) for name, v in used_each.items()}
    used["other processes"] = max(0.0, busy - sum(used.values()))
    ok = len(tally.latencies)
    n = max(1, ok + sum(tally.errors.values()))
    ms = [x * 1000.0 for x in tally.latencies]
    return LoadResult(
        path=path, concurrency=concurrency, duration_s=round(elapsed, 3), ok=ok,
        errors=sum(tally.errors.values()), error_kinds=dict(tally.errors),
        error_samples=tally.samples, rps=ok / elapsed if elapsed else 0.0,
        p50_ms=percentile(ms, 50), p90_ms=percentile(ms, 90), p99_ms=percentile(ms, 99),
        max_ms=max(ms) if ms else float("nan"),
        cpu_ms_per_req={k: 1000.0 * v / n for k, v in used.items()},
        cores={k: v / elapsed for k, v in used.items()},
        replica_cpu_s=[round(v, 3) for v in used_each.get("replicas", [])])


async def gateway_load(cp: ControlPlaneProcess, rid: str, concurrency: int, seconds: float,
                       warmup: float) -> LoadResult:
    url = f"{cp.url}foundry-ml-live/api/inference/transform/{rid}"
    headers = {"Authorization": f"Bearer {cp.token}", "Content-Type": "application/json"}
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
def _f(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None or value != value else f"{value:.{digits}f}"


def evaluate(report: Report) -> None:
    base = {b.key: b for b in report.baselines}
    predict, adapter, work = base.get("predict"), base.get("adapter"), base.get("replica_work")
    gateway = {r.concurrency: r for r in report.load if r.path == "gateway"}
    direct = next((r for r in report.load if r.path == "replica direct" and r.concurrency == 1),
                  None)
    one, sixteen = gateway.get(1), gateway.get(16)

    targets = [{"target": f"deploy → ACTIVE (2 replicas) < {TARGET_DEPLOY_S:g} s",
                "measured": f"{_f(report.deploy_s)} s",
                "pass": report.deploy_s is not None and report.deploy_s < TARGET_DEPLOY_S}]
    if one and predict:
        overhead = one.p50_ms - predict.p50_ms
        targets.append({"target": f"1 client: p50 ≤ in-process predict p50 + "
                                  f"{TARGET_P50_OVERHEAD_MS:g} ms",
                        "measured": f"{_f(one.p50_ms)} ms vs {_f(predict.p50_ms)} ms "
                                    f"(+{_f(overhead)} ms)",
                        "pass": overhead <= TARGET_P50_OVERHEAD_MS and one.errors == 0})
    if sixteen:
        targets.append({"target": f"16 clients: ≥ {TARGET_RPS_AT_16:g} requests/s",
                        "measured": f"{_f(sixteen.rps, 1)} req/s ({sixteen.errors} errors)",
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
    m, src = report.machine, report.source
    changed = src["uncommitted_library_changes"]
    out = [f"## liveml query load — {report.started_at}", "",
           f"Machine: {m['cpus']} CPUs, Python {m['python']}, {m['platform']}, load average "
           f"before the run {m['loadavg_before']}. Source: {src['commit']}"
           + (f" + uncommitted changes in {', '.join(changed)}" if changed else "") + ".",
           "Options: " + ", ".join(f"{k}={v}" for k, v in report.options.items()), "",
           "### Targets", "", "| target | measured | result |", "|---|---|---|"]
    for t in report.targets:
        out.append(f"| {t['target']} | {t['measured']} | {'PASS' if t['pass'] else 'MISS'} |")

    out += ["", "### Deploy", "",
            f"deploy → ACTIVE, 2 replicas: **{_f(report.deploy_s)} s** (deploy call until "
            "`Client.wait` returns)", ""]
    if report.deploy_timeline:
        steps = [k for k in report.deploy_timeline[0] if k != "replica"]
        out += ["Replica startup steps, seconds after the deploy call (replica logs):", "",
                "| replica | " + " | ".join(steps) + " |", "|---" + "|---:" * len(steps) + "|"]
        for t in report.deploy_timeline:
            out.append(f"| {t['replica']} | " + " | ".join(_f(t.get(s)) for s in steps) + " |")
        out.append("")

    out += ["### HTTP load (v1, one row per request)", "",
            "CPU per request and cores used over each measured window: load generator / control "
            "plane / replicas / other processes on the machine.", "",
            "| path | clients | requests | errors | req/s | p50 ms | p90 ms | p99 ms | max ms "
            "| CPU ms/req | cores used |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|"]
    groups = ("load generator", "control plane", "replicas", "other processes")
    for r in report.load:
        cpu = " / ".join(_f(r.cpu_ms_per_req.get(g)) for g in groups)
        cores = " / ".join(_f(r.cores.get(g)) for g in groups)
        out.append(f"| {r.path} | {r.concurrency} | {r.ok} | {r.errors} | {_f(r.rps, 1)} | "
                   f"{_f(r.p50_ms)} | {_f(r.p90_ms)} | {_f(r.p99_ms)} | {_f(r.max_ms)} | "
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
        out.append(f"| {b.name} | {b.calls} | {_f(b.p50_ms, 3)} | {_f(b.p99_ms, 3)} | "
                   f"{_f(b.mean_ms, 3)} |")
    if report.hops:
        out += ["", "### Where the one-client p50 goes (differences of medians)", "",
                "| hop | ms |", "|---|---:|"]
        out += [f"| {h['hop']} | {_f(h['ms'])} |" for h in report.hops]
    if report.notes:
        out += ["", "Notes:"] + [f"- {n}" for n in report.notes]
    return "\n".join(out)


# --- main ------------------------------------------------------------------------------------
def leftover_replicas(tmp: Path) -> list[int]:
    """Any ``liveml_runtime serve`` process on the machine that uses the temporary folder."""
    left = []
    for proc in psutil.process_iter(["cmdline"]):
        cmd = proc.info.get("cmdline") or []
        if "liveml_runtime" in cmd and "serve" in cmd and any(str(tmp) in a for a in cmd):
            with contextlib.suppress(psutil.Error):
                if proc.status() != psutil.STATUS_ZOMBIE:
                    left.append(proc.pid)
    return left


def report_header(args: argparse.Namespace, prog: str) -> dict[str, Any]:
    """Checks the reference model script; the start time and machine every report begins with."""
    if not args.reference.is_file():
        raise SystemExit(f"{prog}: no reference model script at {args.reference} "
                         "(give --reference PATH)")
    return {"started_at": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                        "platform": platform.platform(),
                        "loadavg_before": " ".join(f"{x:.2f}" for x in os.getloadavg())}}


def delete_and_stop(client: Any, rid: str | None, cp: ControlPlaneProcess, report: Any) -> None:
    """Teardown of a run: delete the deployment, check its replicas go, stop the control plane."""
    if client is not None and rid is not None:
        try:
            client.delete(rid)
            left = wait_gone(cp)
            if left:
                report.notes.append(f"replica processes {left} still ran 15 s after the "
                                    "deployment was deleted")
        except Exception as exc:  # noqa: BLE001 - teardown goes on
            log(f"could not delete the deployment: {exc}")
    rc = cp.stop()
    if rc not in (None, 0):
        report.notes.append(f"the control plane exited with code {rc} after SIGINT")


def run_in_temp_home(run: Callable[..., None], args: argparse.Namespace, report: Any,
                     prefix: str) -> int:
    """``run(args, report, tmp)`` in a temporary folder; failures are reported, the folder and
    any replica left behind are cleaned up. Returns the exit code."""
    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    code = 0
    try:
        run(args, report, tmp)
    except KeyboardInterrupt:
        log("interrupted")
        report.notes.append("interrupted")
        code = 130
    except Exception as exc:  # noqa: BLE001 - reported after the teardown
        log(f"benchmark failed: {type(exc).__name__}: {exc}")
        server_log = tmp / "server.log"
        if server_log.exists():
            tail = server_log.read_text(errors="replace").splitlines()[-40:]
            log("control plane log (tail):\n" + "\n".join(tail))
        report.notes.append(f"FAILED: {type(exc).__name__}: {exc}")
        code = 1
    finally:
        left = leftover_replicas(tmp)
        if left:
            report.notes.append(f"replica processes left after the teardown: {left} (killed now)")
            for pid in left:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
        else:
            report.notes.append("teardown: no replica process left")
        if args.keep_home:
            log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return code


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
    p.add_argument("--no-direct", action="store_true",
                   help="skip the one-client run against a standalone replica")
    p.add_argument("--out", type=Path, help="also write the results as JSON here")
    p.add_argument("--keep-home", action="store_true",
                   help="keep the temporary folder (liveml home, logs) for inspection")
    args = p.parse_args(argv)
    if args.duration <= 0 or args.warmup < 0 or any(n < 1 for n in args.concurrency):
        p.error("--duration must be > 0, --warmup >= 0 and each concurrency >= 1")
    return args


def wait_gone(cp: ControlPlaneProcess, timeout: float = 15.0) -> list[int]:
    """PIDs of replicas still running ``timeout`` seconds after the deployment was deleted."""
    deadline = time.monotonic() + timeout
    while (left := cp.replicas()) and time.monotonic() < deadline:
        time.sleep(0.1)
    return [p.pid for p in left]


def run(args: argparse.Namespace, report: Report, tmp: Path) -> None:
    import joblib

    log(f"training the reference model ({args.reference})")
    model_path = tmp / "house_model.joblib"
    joblib.dump(load_reference(args.reference).train(), model_path)

    log(f"in-process baselines ({args.baseline_calls} calls each)")
    report.baselines = baselines(model_path, args.baseline_calls)

    home = tmp / "home"
    cp = ControlPlaneProcess(home, tmp / "server.log")
    client: Any = None
    rid: str | None = None
    try:
        log(f"starting the control plane on {HOST}:{cp.port} (home {home})")
        cp.start()
        from liveml_ext.client import Client

        client = Client(cp.url, cp.token)
        client.create_objective(OBJECTIVE, description="query_load benchmark")
        client.submit(OBJECTIVE, model_path, name=SUBMISSION)
        client.release(OBJECTIVE, SUBMISSION, VERSION, tag="production")

        log(f"deploying with {args.replicas} replicas")
        t_wall, t0 = time.time(), time.perf_counter()
        rid = client.deploy(OBJECTIVE, name="bench", replicas=args.replicas)["rid"]
        client.wait(rid, timeout=120, interval=args.wait_interval)
        report.deploy_s = time.perf_counter() - t0
        report.deploy_timeline = replica_timeline(home, t_wall)
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
        delete_and_stop(client, rid, cp, report)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    report = Report(
        **report_header(args, "query_load"),
        source=source_state(),
        options={"duration": args.duration, "warmup": args.warmup,
                 "concurrency": ",".join(map(str, args.concurrency)), "replicas": args.replicas,
                 "baseline_calls": args.baseline_calls, "wait_interval": args.wait_interval})
    report.notes.append(
        "CPU figures are psutil CPU times over each measured window; 'other processes' is the "
        "machine's busy time minus the benchmark's processes (a high value means the figures "
        "were disturbed by other work).")

    code = run_in_temp_home(run, args, report, "liveml-bench-")

    evaluate(report)
    print(markdown(report), flush=True)
    if args.out:
        args.out.write_text(json.dumps(asdict(report), indent=2, default=str) + "\n")
        log(f"wrote {args.out}")
    return code


if __name__ == "__main__":
    sys.exit(main())
