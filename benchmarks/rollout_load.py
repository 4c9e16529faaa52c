"""Rolling-change benchmark for a liveml live deployment under open-loop load, run by hand.

It trains the reference house-price model, starts a private control plane on 127.0.0.1 in a
temporary liveml home, deploys the model with 2 replicas and sends single-row v1 queries at a fixed
rate on a fixed timetable (query i is due at start + i/rate, whether or not earlier ones have been
answered; latency counts from the due time, so queueing is included). Meanwhile it:

1. measures a steady phase,
2. changes the runtime configuration (``env``), which needs new replicas, and measures until the
   rollout is complete ("re-roll"),
3. measures a steady phase,
4. SIGKILLs one replica process and measures until the deployment has 2 ready replicas again
   ("replica kill"),
5. measures a steady phase.

Each phase is reported with its queries, failed queries (not HTTP 200, or no answer), p50/p99/max
latency and the cores used by each group of processes, next to the targets (no failed query in any
phase; re-roll p99 at most 2x the first steady p99). It optionally writes JSON (``--out``) and
tears everything down (deployment, server, temporary home), checking that no replica is left.
Usage: ``python benchmarks/rollout_load.py [--rate 200] [--steady 8] [--out results.json]``.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
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
    REPO,
    ROW,
    ControlPlaneProcess,
    OtherProcesses,
    ReportHeader,
    add_output_options,
    affinity,
    default_reference,
    finish,
    fmt,
    freeze_heap,
    gateway_url,
    log,
    markdown_header,
    markdown_notes,
    markdown_others,
    markdown_steps,
    markdown_targets,
    node_of,
    parser,
    percentile,
    replica_timeline,
    report_header,
    run_in_temp_home,
    train_reference,
)

DEPLOYMENT = "rollout"
ROLL_CHANGE: dict[str, Any] = {"env": {"ROLL": "1"}}
TARGET_REROLL_P99_FACTOR = 2.0
PHASES = ("steady before", "re-roll", "steady after", "replica kill", "steady after kill")


# --- CPU accounting ---------------------------------------------------------------------------
@dataclass
class CpuSnapshot:
    """CPU seconds used so far by each group, and the machine's busy time."""

    at: float
    load_generator: float
    control_plane: float
    replicas: float
    busy: float
    stall: float  # /proc/pressure/cpu "some" total: seconds in which a task waited for a CPU


def cpu_pressure() -> float:
    """Seconds so far in which some runnable task waited for a CPU (Linux PSI; NaN without)."""
    try:
        with open("/proc/pressure/cpu") as fh:
            some = fh.readline().split()
    except OSError:
        return float("nan")
    return float(dict(kv.split("=") for kv in some[1:])["total"]) / 1e6


def cpu_snapshot(cp: ControlPlaneProcess) -> CpuSnapshot:
    """Replicas come and go: live children plus the children the control plane has reaped."""
    me = psutil.Process().cpu_times()
    live = 0.0
    parent = cp.replica_parent or cp.process()
    with contextlib.suppress(psutil.Error):
        for child in parent.children(recursive=True):
            with contextlib.suppress(psutil.Error):
                t = child.cpu_times()
                live += t.user + t.system
    server = cp.process().cpu_times()
    reaped = parent.cpu_times()
    machine = psutil.cpu_times()
    return CpuSnapshot(at=time.perf_counter(), load_generator=me.user + me.system,
                       control_plane=server.user + server.system,
                       replicas=live + reaped.children_user + reaped.children_system,
                       busy=sum(machine) - machine.idle - getattr(machine, "iowait", 0.0),
                       stall=cpu_pressure())


def cores_between(a: CpuSnapshot, b: CpuSnapshot) -> dict[str, float]:
    elapsed = max(1e-9, b.at - a.at)
    used = {"load generator": b.load_generator - a.load_generator,
            "control plane": b.control_plane - a.control_plane,
            "replicas": max(0.0, b.replicas - a.replicas)}
    used["other processes"] = max(0.0, (b.busy - a.busy) - sum(used.values()))
    return {k: round(v / elapsed, 3) for k, v in used.items()}


def pressure_between(a: CpuSnapshot, b: CpuSnapshot) -> float:
    return round((b.stall - a.stall) / max(1e-9, b.at - a.at), 3)


# --- open-loop load ---------------------------------------------------------------------------
class OpenLoop:
    """Queries on a fixed timetable, each sent when due without waiting for earlier answers."""

    def __init__(self, url: str, headers: dict[str, str], rate: float, timeout: float,
                 connections: int) -> None:
        self.url = url
        self.headers = headers
        self.rate = rate
        self.timeout = timeout
        self.connections = connections
        self.body = orjson.dumps(BODY)
        self.start = 0.0
        self.stop_at = float("inf")
        #: one per query: (due time after start s, latency from the due time s, status, send lag s)
        self.records: list[tuple[float, float, int, float]] = []
        self.errors: Counter[str] = Counter()
        self.samples: list[str] = []
        self.started = asyncio.Event()

    def stop(self) -> None:
        self.stop_at = time.perf_counter()

    async def _one(self, session: aiohttp.ClientSession, due: float) -> None:
        clock = time.perf_counter
        lag = clock() - due
        try:
            async with session.post(self.url, data=self.body, headers=self.headers) as resp:
                data = await resp.read()
                status = resp.status
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            status, data = 0, f"{type(exc).__name__}: {exc}".encode()
        latency = clock() - due
        if status != 200:
            kind = f"HTTP {status}" if status else data.decode(errors="replace").split(":")[0]
            self.errors[kind] += 1
            if len(self.samples) < 8:
                self.samples.append(f"+{due - self.start:.3f}s {kind}: "
                                    f"{data[:200].decode(errors='replace')}")
        self.records.append((due - self.start, latency, status, lag))

    async def run(self) -> None:
        connector = aiohttp.TCPConnector(limit=self.connections, keepalive_timeout=60)
        timeout = aiohttp.ClientTimeout(total=self.timeout)
        pending: set[asyncio.Task[None]] = set()
        async with aiohttp.ClientSession(connector=connector, timeout=timeout,
                                         skip_auto_headers=("User-Agent",)) as session:
            self.start = time.perf_counter() + 0.05
            self.started.set()
            i = 0
            while True:
                due = self.start + i / self.rate
                if due >= self.stop_at:
                    break
                delay = due - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                    continue  # stop() may have been called meanwhile
                task = asyncio.create_task(self._one(session, due))
                pending.add(task)
                task.add_done_callback(pending.discard)
                i += 1
            if pending:
                await asyncio.wait(pending)


# --- results ----------------------------------------------------------------------------------
@dataclass
class Phase:
    name: str
    start_s: float  # after the start of the load
    duration_s: float
    queries: int
    failed: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    max_due_s: float  # when the slowest query was due, seconds into the phase
    send_lag_max_ms: float  # how late the load generator itself sent a query
    failures: dict[str, int] = field(default_factory=dict)
    #: cores used over the phase by each group of processes (the machine has os.cpu_count())
    cores: dict[str, float] = field(default_factory=dict)
    #: share of the phase in which some runnable task waited for a CPU (Linux PSI)
    cpu_pressure: float = float("nan")
    #: the cores each replica process may run on when the phase began (node: cores)
    replica_cores: dict[str, str] = field(default_factory=dict)


@dataclass
class Report(ReportHeader):
    deploy_s: float | None = None
    load_started_at: float | None = None  # Unix time of the load start (t = 0 of the phases)
    phases: list[Phase] = field(default_factory=list)
    roll_s: float | None = None
    recovery_s: float | None = None
    roll_ready_replicas_min: int | None = None
    recovery_ready_replicas_min: int | None = None
    victim: dict[str, Any] = field(default_factory=dict)
    final_replica_cores: dict[str, str] = field(default_factory=dict)  # when the load stopped
    failure_samples: list[str] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    replica_steps: list[dict[str, Any]] = field(default_factory=list)
    other_processes: list[dict[str, Any]] = field(default_factory=list)
    targets: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: every query: [due s after the load start, latency ms from the due time, status (0: no
    #: answer), send lag ms], in the order answered
    samples: list[list[float]] = field(default_factory=list)


def summarize(name: str, records: list[tuple[float, float, int, float]], start: float,
              end: float, cores: dict[str, float], pressure: float) -> Phase:
    """The queries due in [start, end) seconds after the load start."""
    mine = [r for r in records if start <= r[0] < end]
    ok = [r[1] * 1000.0 for r in mine if r[2] == 200]
    failures = Counter(f"HTTP {r[2]}" if r[2] else "no answer" for r in mine if r[2] != 200)
    slowest = max(mine, key=lambda r: r[1], default=None)
    return Phase(name=name, start_s=round(start, 3), duration_s=round(end - start, 3),
                 queries=len(mine), failed=sum(failures.values()),
                 p50_ms=percentile(ok, 50), p99_ms=percentile(ok, 99),
                 max_ms=max(ok) if ok else float("nan"),
                 max_due_s=round(slowest[0] - start, 3) if slowest else float("nan"),
                 send_lag_max_ms=max((r[3] * 1000.0 for r in mine), default=float("nan")),
                 failures=dict(failures), cores=cores, cpu_pressure=pressure)


# --- the scenario ----------------------------------------------------------------------------
def ready_nodes(doc: dict[str, Any]) -> set[str]:
    return {r["nodeId"] for r in doc["status"]["replicas"] if r["state"] == "READY"}


def replica_processes(cp: ControlPlaneProcess) -> list[psutil.Process]:
    """The control plane's ``liveml_runtime serve`` children that belong to this temporary home."""
    out = []
    for proc in cp.replicas():
        with contextlib.suppress(psutil.Error):
            if cp.replica_parent is not None or any(str(cp.home) in arg for arg in proc.cmdline()):
                out.append(proc)
    return out


class Scenario:
    def __init__(self, args: argparse.Namespace, report: Report, cp: ControlPlaneProcess,
                 client: Any, rid: str) -> None:
        self.args = args
        self.report = report
        self.cp = cp
        self.client = client
        self.rid = rid
        self.load = OpenLoop(*gateway_url(cp, rid), args.rate, args.timeout, args.connections)
        self.marks: list[tuple[str, float]] = []  # (phase, perf_counter at its start)
        self.cpu: list[CpuSnapshot] = []
        self.affinity: list[dict[str, str]] = []

    def mark(self, phase: str) -> None:
        log(f"phase: {phase}")
        self.marks.append((phase, time.perf_counter()))
        self.cpu.append(cpu_snapshot(self.cp))
        self.affinity.append(affinity(replica_processes(self.cp)))

    async def settle(self, done: Callable[[dict[str, Any]], bool], t0: float, failure: str
                     ) -> tuple[dict[str, Any], float, int]:
        """Poll the deployment until ``done``: the last document, the seconds since ``t0`` and
        the fewest ready replicas seen. Past ``--phase-timeout``, ``failure`` goes to the notes."""
        args = self.args
        deadline = time.perf_counter() + args.phase_timeout
        least = 1 << 30
        while True:
            doc = await asyncio.to_thread(self.client.deployment, self.rid)
            least = min(least, int(doc["status"]["readyReplicas"]))
            if done(doc):
                return doc, time.perf_counter() - t0, least
            if time.perf_counter() > deadline:
                self.report.notes.append(f"{failure} after {args.phase_timeout:g}s: {doc['status']}")
                return doc, time.perf_counter() - t0, least
            await asyncio.sleep(args.poll)

    async def run(self) -> float:
        """The phases under load; returns the wall-clock time of the load start."""
        args, client, rid = self.args, self.client, self.rid
        runner = asyncio.create_task(self.load.run())
        await self.load.started.wait()
        wall0 = time.time() + (self.load.start - time.perf_counter())
        try:
            log(f"open-loop load at {args.rate:g} queries/s; warm-up {args.warmup:g}s")
            await asyncio.sleep(args.warmup)

            self.mark("steady before")
            await asyncio.sleep(args.steady)

            self.mark("re-roll")
            t0 = time.perf_counter()
            doc = await asyncio.to_thread(client.update, rid, runtimeConfiguration=ROLL_CHANGE)
            generation = doc["generation"]

            def rolled(d: dict[str, Any]) -> bool:
                rollout = d["status"].get("rollout") or {}
                return rollout.get("state") == "COMPLETE" and \
                    rollout.get("generation") == generation and d["status"]["state"] == "ACTIVE"

            _, self.report.roll_s, least = await self.settle(rolled, t0, "the rollout was not complete")
            self.report.roll_ready_replicas_min = least
            log(f"  rollout complete after {self.report.roll_s:.2f}s (ready replicas >= {least})")

            self.mark("steady after")
            await asyncio.sleep(args.steady)

            before = ready_nodes(await asyncio.to_thread(client.deployment, rid))
            procs = {node_of(p): p for p in replica_processes(self.cp)}
            victim_node = next((n for n in sorted(procs) if n in before), "")
            if not victim_node:
                raise RuntimeError(f"no replica process found for the ready nodes {sorted(before)}; "
                                   f"processes: {sorted(procs)}")
            victim = procs[victim_node]
            self.report.victim = {"pid": victim.pid, "nodeId": victim_node}
            self.mark("replica kill")
            t0 = time.perf_counter()
            os.kill(victim.pid, signal.SIGKILL)

            def healed(d: dict[str, Any]) -> bool:
                nodes = ready_nodes(d)
                if d["status"]["readyReplicas"] != args.replicas or d["status"]["state"] != "ACTIVE":
                    return False
                if args.kubernetes_sim:  # the kubelet restarts the container in the same pod
                    return any(r["nodeId"] == victim_node and r["state"] == "READY" and
                               r.get("restarts", 0) > 0 for r in d["status"]["replicas"])
                return bool(nodes - before) and victim_node not in nodes

            doc, self.report.recovery_s, least = await self.settle(healed, t0, "no replacement replica")
            self.report.recovery_ready_replicas_min = least
            self.report.victim["replacement"] = sorted(ready_nodes(doc) - before)
            log(f"  {args.replicas} ready replicas again after {self.report.recovery_s:.2f}s")

            self.mark("steady after kill")
            await asyncio.sleep(args.steady)
        finally:
            self.mark("end")
            self.load.stop()
            await runner
        return wall0

    def phases(self) -> list[Phase]:
        out = []
        for i, (name, at) in enumerate(self.marks[:-1]):
            end = self.marks[i + 1][1]
            a, b = self.cpu[i], self.cpu[i + 1]
            phase = summarize(name, self.load.records, at - self.load.start, end - self.load.start,
                              cores_between(a, b), pressure_between(a, b))
            phase.replica_cores = self.affinity[i]
            out.append(phase)
        return out


def events_since(client: Any, rid: str, wall0: float) -> list[dict[str, Any]]:
    """The deployment's events after the load start, in seconds after it."""
    out = []
    for e in client.events(rid, limit=200):
        at = dt.datetime.fromisoformat(e["at"])
        if at.tzinfo is None:
            at = at.replace(tzinfo=dt.UTC)
        t = at.timestamp() - wall0
        if t >= 0:
            out.append({"t_s": round(t, 3), "kind": e["kind"], "message": e["message"]})
    return sorted(out, key=lambda e: e["t_s"])


# --- report ----------------------------------------------------------------------------------
def evaluate(report: Report) -> None:
    targets: list[dict[str, Any]] = []
    by_name = {p.name: p for p in report.phases}
    for p in report.phases:
        targets.append({"target": f"{p.name}: no failed query", "measured": f"{p.failed} of {p.queries}",
                        "pass": p.failed == 0 and p.queries > 0})
    before, roll = by_name.get("steady before"), by_name.get("re-roll")
    if before and roll:
        limit = TARGET_REROLL_P99_FACTOR * before.p99_ms
        targets.append({"target": f"re-roll p99 ≤ {TARGET_REROLL_P99_FACTOR:g} × steady-before p99",
                        "measured": f"{fmt(roll.p99_ms)} ms vs {fmt(limit)} ms "
                                    f"({fmt(roll.p99_ms / before.p99_ms)}×)",
                        "pass": roll.p99_ms <= limit})
    missing = [name for name in PHASES if name not in by_name]
    if missing:
        targets.append({"target": "all phases run", "measured": f"missing: {', '.join(missing)}",
                        "pass": False})
    report.targets = targets


def markdown(report: Report) -> str:
    o = report.options
    out = markdown_header("liveml rolling change under load", report)
    out += [f"Deploy → ACTIVE with {o['replicas']} replicas: {fmt(report.deploy_s)} s. "
            f"Open-loop load: {o['rate']:g} single-row v1 queries/s on a fixed timetable; latency "
            "counts from each query's due time. Percentiles are over the answered (HTTP 200) "
            "queries; a failed query is any other status or no answer.", "",
            "### Phases", "",
            "| phase | length s | queries | failed | p50 ms | p99 ms | max ms | slowest due at s "
            "| send lag max ms | cores: load gen / control plane / replicas / other | CPU pressure "
            "| replica cores at start |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---|"]
    for p in report.phases:
        cores = " / ".join(fmt(p.cores.get(g)) for g in CPU_GROUPS)
        out.append(f"| {p.name} | {fmt(p.duration_s)} | {p.queries} | {p.failed} | {fmt(p.p50_ms)} | "
                   f"{fmt(p.p99_ms)} | {fmt(p.max_ms)} | {fmt(p.max_due_s)} | {fmt(p.send_lag_max_ms)} | "
                   f"{cores} | {fmt(p.cpu_pressure)} | {' / '.join(p.replica_cores.values()) or '-'} |")
    out += ["", "Slowest due at: when the slowest query of the phase was due, in seconds after the "
            "phase began. Send lag: how late the load generator itself sent a query (its own "
            "share of the latency). CPU pressure: share of the phase in which some runnable task "
            "waited for a CPU (Linux /proc/pressure/cpu). Replica cores: the CPU affinity of each "
            "replica process when the phase began (the local backend pins a replica with cpu 1 to "
            "one core); when the load stopped: "
            f"{' / '.join(report.final_replica_cores.values()) or '-'}."]
    out += ["", f"Re-roll (`runtimeConfiguration={json.dumps(ROLL_CHANGE)}`) until the rollout of the "
            f"new generation is COMPLETE: **{fmt(report.roll_s)} s**; fewest ready replicas seen while "
            f"polling: {report.roll_ready_replicas_min}.",
            f"Replica kill (SIGKILL of pid {report.victim.get('pid')}, node "
            f"{report.victim.get('nodeId')}) until {o['replicas']} replicas are READY again with a "
            f"new node ({', '.join(report.victim.get('replacement', [])) or '-'}): "
            f"**{fmt(report.recovery_s)} s**; fewest ready replicas seen while polling: "
            f"{report.recovery_ready_replicas_min}.", "", *markdown_targets(report.targets)]
    failing = [p for p in report.phases if p.failed]
    if failing:
        out += ["", "Failed queries: " + "; ".join(f"{p.name}: {p.failures}" for p in failing)]
        out += [f"- {s}" for s in report.failure_samples]
    if report.events:
        out += ["", "### Control plane events (seconds after the load start)", "",
                "| t s | kind | message |", "|---:|---|---|"]
        out += [f"| {e['t_s']:.2f} | {e['kind']} | {e['message']} |" for e in report.events]
    if report.replica_steps:
        out += ["", "Replica startup steps, seconds after the load start, from the replica log "
                "files still on disk (negative: before the load):", "",
                *markdown_steps(report.replica_steps)]
    return "\n".join(out + markdown_others(report.other_processes) + markdown_notes(report.notes))


def to_json(report: Report) -> str:
    """The report as indented JSON, with one line per query sample."""
    doc = asdict(report)
    samples = doc.pop("samples")
    head = json.dumps(doc, indent=2, default=str)
    rows = ",\n    ".join(json.dumps(s) for s in samples)
    return f'{head[:-2]},\n  "samples": [\n    {rows}\n  ]\n}}\n'


# --- main ------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = parser(__doc__, default_reference())
    p.add_argument("--rate", type=float, default=200.0, help="queries per second (open loop)")
    p.add_argument("--steady", type=float, default=8.0, help="seconds of each steady phase")
    p.add_argument("--warmup", type=float, default=2.0, help="seconds of unmeasured load first")
    p.add_argument("--replicas", type=int, default=2)
    p.add_argument("--connections", type=int, default=256, help="most connections the load opens")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds before a query counts as "
                   "failed (no answer)")
    p.add_argument("--phase-timeout", type=float, default=120.0,
                   help="most seconds to wait for the rollout, or for the replacement replica")
    p.add_argument("--poll", type=float, default=0.05, help="seconds between status polls")
    p.add_argument("--kubernetes-sim", action="store_true",
                   help="run the control plane with --backend kubernetes against the simulated "
                        "cluster of tests/kube_sim.py (in a process of its own; preStop 5 s as "
                        "rendered) instead of local replicas")
    add_output_options(p, "keep the temporary folder (liveml home, server and replica logs)")
    args = p.parse_args(argv)
    if args.rate <= 0 or args.steady <= 0 or args.warmup < 0 or args.replicas < 2 or \
            args.connections < 1 or args.timeout <= 0 or args.poll <= 0:
        p.error("--rate, --steady, --timeout and --poll must be > 0, --warmup >= 0, "
                "--replicas >= 2 and --connections >= 1")
    return args


def run(args: argparse.Namespace, report: Report, tmp: Path) -> None:
    _, model_path = train_reference(args.reference, tmp)

    sim = start_simulated_cluster(tmp) if args.kubernetes_sim else None
    cp = ControlPlaneProcess(tmp / "home", tmp / "server.log")
    if sim is not None:
        cp.args = ("--backend", "kubernetes", "--kubeconfig", str(tmp / "kubeconfig"),
                   "--control-plane-url", f"http://{HOST}:{cp.port}")
        cp.replica_parent = psutil.Process(sim.pid)
        report.notes.append("backend: kubernetes, on the simulated cluster of tests/kube_sim.py "
                            "(pods are local processes; preStop 5 s; kube poll 2 s)")
    try:
        client = cp.start()
        log(f"deploying with {args.replicas} replicas")
        deployed = cp.release_and_deploy(model_path, DEPLOYMENT, args.replicas,
                                         "rollout_load benchmark")
        rid, report.deploy_s = deployed.rid, deployed.seconds
        log(f"ACTIVE after {report.deploy_s:.2f}s")
        answer = client.query(rid, [ROW])
        report.notes.append(f"sample answer: {json.dumps(answer)[:200]}")

        scenario = Scenario(args, report, cp, client, rid)
        freeze_heap()
        others = OtherProcesses()
        wall0: float | None = None
        try:
            wall0 = asyncio.run(scenario.run())
        finally:
            report.other_processes = others.busiest(cp)
            report.phases = scenario.phases()
            report.final_replica_cores = scenario.affinity[-1] if scenario.affinity else {}
            report.failure_samples = scenario.load.samples
            report.samples = [[round(r[0], 4), round(r[1] * 1000.0, 3), r[2],
                               round(r[3] * 1000.0, 3)] for r in scenario.load.records]
        if wall0 is not None:
            report.load_started_at = round(wall0, 3)
            report.events = events_since(client, rid, wall0)
            report.replica_steps = replica_timeline(cp.home, wall0)
    finally:
        cp.teardown(report.notes)
        if sim is not None:
            sim.terminate()
            try:
                sim.wait(30)
            except subprocess.TimeoutExpired:
                sim.kill()


def start_simulated_cluster(tmp: Path) -> subprocess.Popen[bytes]:
    """tests/kube_sim.py in a process of its own (its threads must not share this process's GIL
    with the load generator) and a kubeconfig for it in ``tmp``."""
    out = open(tmp / "kube-sim.log", "w+b")
    proc = subprocess.Popen([sys.executable, str(REPO / "tests" / "kube_sim.py"), "--cpu", "32",
                             "--memory", str(64 * 2**30), "--prestop-cap", "5",
                             "--probe-period", "1"], stdout=out, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while not (url := (tmp / "kube-sim.log").read_text().split("\n", 1)[0].strip()).startswith("http") \
            or "\n" not in (tmp / "kube-sim.log").read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the simulated cluster did not start: {(tmp / 'kube-sim.log').read_text()}")
        time.sleep(0.05)
    (tmp / "kubeconfig").write_text(
        "apiVersion: v1\nkind: Config\n"
        f"clusters: [{{name: sim, cluster: {{server: '{url}'}}}}]\n"
        "users: [{name: u, user: {token: x}}]\n"
        "contexts: [{name: sim, context: {cluster: sim, user: u, namespace: liveml}}]\n"
        "current-context: sim\n")
    log(f"simulated cluster at {url}")
    return proc


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    report = Report(
        **report_header(args, "rollout_load", library=True),
        options={"rate": args.rate, "steady": args.steady, "warmup": args.warmup,
                 "replicas": args.replicas, "connections": args.connections,
                 "timeout": args.timeout, "phase_timeout": args.phase_timeout, "poll": args.poll,
                 "kubernetes_sim": args.kubernetes_sim})

    code = run_in_temp_home(run, args, report, "liveml-rollout-")

    finish(report, args.out, evaluate, markdown, to_json)
    return code


if __name__ == "__main__":
    sys.exit(main())
