"""What the benchmarks in this folder share (not a benchmark itself).

The reference model and its one-row v1 query, a private ``liveml server`` on 127.0.0.1 in a
temporary home (start, publish and deploy, tear down), the closed-loop query load, CPU accounting
of the processes around the benchmark, and the report plumbing: the header every report begins
with, Markdown pieces, and the end of a run (evaluate, print, write ``--out`` JSON).
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import gc
import importlib.util
import json
import os
import platform
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol, TypeVar
from urllib.parse import urlparse

import aiohttp
import orjson
import psutil

REPO = Path(__file__).resolve().parents[1]
#: The reference model script as CI has it: the ``shared`` folder next to the repository clone.
SHARED_REFERENCE = REPO.parent / "shared" / "reference" / "house_model.py"
ROW: dict[str, Any] = {"house-location": "New York", "bedrooms": 3, "bathrooms": 1.5}
BODY: dict[str, Any] = {"requestData": [ROW], "requestParams": {}}
HOST = "127.0.0.1"
OBJECTIVE, SUBMISSION, VERSION = "house-prices", "house-v1", "1.0"
#: The process groups whose CPU a load run reports.
CPU_GROUPS = ("load generator", "control plane", "replicas", "other processes")


# --- small helpers ----------------------------------------------------------------------------
def log(message: str) -> None:
    """A timestamped progress line on stderr (the report goes to stdout)."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def fmt(value: float | None, digits: int = 2) -> str:
    """A number for the report, ``n/a`` for None or NaN."""
    return "n/a" if value is None or value != value else f"{value:.{digits}f}"


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
    """A TCP port on 127.0.0.1 that is free now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def clean_env() -> dict[str, str]:
    """This environment without liveml's own variables (no outside control plane is reused)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("LIVEML_")}


def terminate(proc: subprocess.Popen[bytes], sig: int, timeout: float, what: str) -> int | None:
    """Send ``sig`` and wait ``timeout`` seconds, then kill; the exit code."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            log(f"{what} did not stop within {timeout:.0f}s; killing it")
            proc.kill()
            proc.wait(10)
    return proc.returncode


def freeze_heap() -> None:
    """Move this process's heap (large once sklearn and pandas are loaded) out of the collector's
    reach, so that a full collection cannot stall the load generator by ~100 ms."""
    gc.collect()
    gc.freeze()


# --- the reference model ----------------------------------------------------------------------
def default_reference() -> Path:
    """The shared reference model script, else the copy in ``notebooks``."""
    return SHARED_REFERENCE if SHARED_REFERENCE.is_file() else REPO / "notebooks" / "house_model.py"


def load_reference(path: Path) -> ModuleType:
    """Import the reference model script (it defines ``train()``)."""
    spec = importlib.util.spec_from_file_location("liveml_bench_reference", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot import the reference model script {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def train_reference(script: Path, tmp: Path) -> tuple[Any, Path]:
    """Train the reference model; the fitted pipeline and the joblib file it is saved to."""
    import joblib

    log(f"training the reference model ({script})")
    pipeline = load_reference(script).train()
    path = tmp / "house_model.joblib"
    joblib.dump(pipeline, path)
    return pipeline, path


# --- where the figures come from --------------------------------------------------------------
def source_state(library: bool = False) -> dict[str, Any]:
    """The commit benchmarked and the library files that differ from it (read-only git calls);
    with ``library``, also where the liveml package under test is imported from."""
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0"}

    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True,
                                  env=env, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    changed = git("diff", "--name-only", "HEAD", "--", "liveml_ext", "runtime")
    state: dict[str, Any] = {"commit": git("rev-parse", "--short", "HEAD") or "unknown",
                             "uncommitted_library_changes": changed.split() if changed else []}
    if library:  # PYTHONPATH can point elsewhere than this clone
        spec = importlib.util.find_spec("liveml_ext")
        state["library"] = str(Path(spec.origin).parent) if spec and spec.origin else "?"
    return state


def report_header(args: argparse.Namespace, prog: str, library: bool = False) -> dict[str, Any]:
    """Checks the reference model script; the start time, machine and source every report
    begins with."""
    if not args.reference.is_file():
        raise SystemExit(f"{prog}: no reference model script at {args.reference} "
                         "(give --reference PATH)")
    return {"started_at": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                        "platform": platform.platform(),
                        "loadavg_before": " ".join(f"{x:.2f}" for x in os.getloadavg())},
            "source": source_state(library)}


@dataclass
class ReportHeader:
    """The fields every benchmark report begins with (a report dataclass extends it)."""

    started_at: str
    machine: dict[str, Any]
    source: dict[str, Any]
    options: dict[str, Any]


class HasNotes(Protocol):
    notes: list[str]


R = TypeVar("R", bound=HasNotes)


def parser(doc: str | None, reference: Path) -> argparse.ArgumentParser:
    """A benchmark's argument parser, with ``--reference`` as its first option."""
    p = argparse.ArgumentParser(description=(doc or "").split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--reference", type=Path, default=reference,
                   help="the reference model script (defines train())")
    return p


def add_output_options(p: argparse.ArgumentParser, keep_home_help: str) -> None:
    """The last options of a benchmark: ``--out`` and ``--keep-home``."""
    p.add_argument("--out", type=Path, help="also write the results as JSON here")
    p.add_argument("--keep-home", action="store_true", help=keep_home_help)


# --- the control plane under test -------------------------------------------------------------
@dataclass
class Deployed:
    """A deployment made by :meth:`ControlPlaneProcess.release_and_deploy`."""

    rid: str
    seconds: float  # the deploy call until ``Client.wait`` returned
    called_at: float  # Unix time of the deploy call


class ControlPlaneProcess:
    """``liveml server`` as a child process on 127.0.0.1 with its own home, a client to it, and
    the deployments made through it (deleted by :meth:`teardown`). A subclass changes what runs
    (:meth:`command`, :meth:`environment`) and how it stops (``stop_signal``)."""

    what = "the control plane"
    stop_signal = signal.SIGINT
    new_session = False  # True: a terminal's Ctrl-C reaches only this script, which stops it

    def __init__(self, home: Path, log_path: Path, args: tuple[str, ...] = ()) -> None:
        self.home = home
        self.log_path = log_path
        self.args = args  # more `liveml server` flags
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.token = ""
        self.client: Any = None  # a liveml_ext.client.Client once started
        self.rids: list[str] = []
        # whose children the replicas are: the control plane's, or e.g. a simulated cluster's
        self.replica_parent: psutil.Process | None = None

    def command(self) -> list[str]:
        """The command line of the server."""
        return [sys.executable, "-m", "liveml_ext.cli", "server", "--host", HOST,
                "--port", str(self.port), "--home", str(self.home), *self.args]

    def environment(self) -> dict[str, str]:
        """The server's environment."""
        return clean_env()

    def start(self, timeout: float = 60.0) -> Any:
        """Start the server, wait for its connection file; the client to it."""
        log(f"starting {self.what} on {HOST}:{self.port} (home {self.home})")
        with open(self.log_path, "wb") as out:
            self.proc = subprocess.Popen(self.command(), stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, env=self.environment(),
                                         start_new_session=self.new_session)
        conn = self.home / "connection.json"
        deadline = time.monotonic() + timeout
        while not conn.exists():
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.what} exited with code {self.proc.returncode}:\n"
                                   f"{self.log_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"no {conn} after {timeout:.0f}s:\n{self.log_tail()}")
            time.sleep(0.05)
        doc = json.loads(conn.read_text())
        self.url, self.token = doc["url"], doc["token"]
        if urlparse(self.url).hostname != HOST:
            raise RuntimeError(f"{self.what} is at {self.url}, not on {HOST}")
        from liveml_ext.client import Client

        self.client = Client(self.url, self.token)
        return self.client

    def release_and_deploy(self, model_path: Path, name: str, replicas: int, description: str, *,
                           objective: str = OBJECTIVE, submission: str = SUBMISSION,
                           interval: float = 0.05) -> Deployed:
        """Create the objective, submit the model, release it as ``1.0`` tagged ``production``,
        deploy it and wait until the deployment is ACTIVE."""
        client = self.client
        client.create_objective(objective, description=description)
        client.submit(objective, model_path, name=submission)
        client.release(objective, submission, VERSION, tag="production")
        t_wall, t0 = time.time(), time.perf_counter()
        rid = client.deploy(objective, name=name, replicas=replicas)["rid"]
        self.rids.append(rid)
        client.wait(rid, timeout=120, interval=interval)
        return Deployed(rid, time.perf_counter() - t0, t_wall)

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

    def wait_gone(self, timeout: float = 15.0) -> list[int]:
        """PIDs of replicas still running ``timeout`` seconds after the deployments were deleted."""
        deadline = time.monotonic() + timeout
        while (left := self.replicas()) and time.monotonic() < deadline:
            time.sleep(0.1)
        return [p.pid for p in left]

    def stop(self, timeout: float = 30.0) -> int | None:
        return None if self.proc is None else terminate(self.proc, self.stop_signal, timeout,
                                                        self.what)

    def teardown(self, notes: list[str]) -> None:
        """Delete the deployments, check their replicas go, stop the server; problems go to
        ``notes``."""
        deleted = 0
        for rid in self.rids:
            try:
                self.client.delete(rid)
                deleted += 1
            except Exception as exc:  # noqa: BLE001 - teardown goes on
                log(f"could not delete the deployment {rid}: {exc}")
        if deleted:
            left = self.wait_gone()
            if left:
                what = "deployments were" if len(self.rids) > 1 else "deployment was"
                notes.append(f"replica processes {left} still ran 15 s after the {what} deleted")
        rc = self.stop()
        if rc not in (None, 0):
            notes.append(f"{self.what} exited with code {rc} after "
                         f"{signal.Signals(self.stop_signal).name}")


class JupyterControlPlaneProcess(ControlPlaneProcess):
    """The control plane hosted by a real ``jupyter server`` with liveml's server extension
    (enabled by the ``jupyter_server_config.d`` file this package installs), on 127.0.0.1.
    Jupyter's config, data and runtime folders and its root are in ``folder``, liveml's home is
    ``home`` (``LIVEML_HOME``). It runs in a session of its own and stops on SIGTERM (the
    extension then stops its replicas): without a terminal, Jupyter's SIGINT skips that."""

    what = "the Jupyter server"
    stop_signal = signal.SIGTERM
    new_session = True

    def __init__(self, home: Path, folder: Path, log_path: Path, args: tuple[str, ...] = ()) -> None:
        super().__init__(home, log_path, args)
        self.folder = folder

    def command(self) -> list[str]:
        (self.folder / "root").mkdir(parents=True, exist_ok=True)
        return [sys.executable, "-m", "jupyter", "server", "--no-browser", "--allow-root",
                f"--ServerApp.ip={HOST}", f"--ServerApp.port={self.port}",
                "--ServerApp.port_retries=0", f"--ServerApp.root_dir={self.folder / 'root'}",
                f"--IdentityProvider.token={secrets.token_urlsafe(24)}", *self.args]

    def environment(self) -> dict[str, str]:
        return {**clean_env(), "LIVEML_HOME": str(self.home),
                **{f"JUPYTER_{d.upper()}_DIR": str(self.folder / d)
                   for d in ("config", "data", "runtime")}}


def node_of(proc: psutil.Process) -> str:
    """The ``--node-id`` of a replica process."""
    cmd = proc.cmdline()
    return cmd[cmd.index("--node-id") + 1] if "--node-id" in cmd else ""


def affinity(procs: list[psutil.Process]) -> dict[str, str]:
    """The cores each replica process may run on (its CPU affinity), by node."""
    out = {}
    for proc in procs:
        with contextlib.suppress(psutil.Error, AttributeError):
            out[node_of(proc)] = ",".join(map(str, sorted(proc.cpu_affinity())))
    return dict(sorted(out.items()))


def replica_timeline(home: Path, t0: float) -> list[dict[str, Any]]:
    """Each replica's startup steps from its JSON log, in seconds after the Unix time ``t0``."""
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
                    events[step] = round(at - t0, 3)
        timeline.append({"replica": path.stem, **{s: events.get(s) for s in steps}})
    return timeline


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


def run_in_temp_home(run: Callable[[argparse.Namespace, R, Path], None], args: argparse.Namespace,
                     report: R, prefix: str) -> int:
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
        for server_log in (tmp / "server.log", tmp / "jupyter.log"):
            if server_log.exists():
                tail = server_log.read_text(errors="replace").splitlines()[-40:]
                log(f"{server_log.name} (tail):\n" + "\n".join(tail))
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


# --- other processes on the machine -----------------------------------------------------------
def process_cpu() -> dict[int, tuple[str, float]]:
    """Every process's command (shortened) and CPU seconds so far."""
    out: dict[int, tuple[str, float]] = {}
    for proc in psutil.process_iter(["cmdline", "name", "cpu_times"]):
        t = proc.info.get("cpu_times")
        if t is None:
            continue
        cmd = " ".join(proc.info.get("cmdline") or []) or str(proc.info.get("name") or "?")
        out[proc.pid] = (cmd[:100], float(t.user + t.system))
    return out


def top_others(before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]],
               ours: set[int], seconds: float, n: int = 5) -> list[dict[str, Any]]:
    """The busiest processes outside the benchmark over the window (cores used)."""
    rows = []
    for pid, (cmd, cpu) in after.items():
        if pid in ours:
            continue
        used = cpu - before[pid][1] if pid in before else cpu
        if used > 0.01:
            rows.append({"pid": pid, "command": cmd, "cores": round(used / max(seconds, 1e-9), 3)})
    return sorted(rows, key=lambda r: -r["cores"])[:n]


class OtherProcesses:
    """The CPU of every process from now on, to name the busiest ones outside the benchmark."""

    def __init__(self) -> None:
        self.before = process_cpu()
        self.t0 = time.perf_counter()

    def busiest(self, cp: ControlPlaneProcess) -> list[dict[str, Any]]:
        """The busiest processes since creation, leaving out this one and the control plane's."""
        ours = {os.getpid(), cp.process().pid}
        with contextlib.suppress(psutil.Error):
            ours |= {p.pid for p in cp.process().children(recursive=True)}
        return top_others(self.before, process_cpu(), ours, time.perf_counter() - self.t0)


# --- closed-loop load -------------------------------------------------------------------------
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
               concurrency: int, seconds: float, doc: Any = None) -> tuple[_Tally, float]:
    body = orjson.dumps(BODY if doc is None else doc)
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
                    seconds: float, warmup: float, groups: dict[str, list[psutil.Process]],
                    body: Any = None) -> LoadResult:
    """``concurrency`` clients for ``seconds`` after ``warmup``; CPU is counted per group.
    ``body``: the query (default: the reference model's one-row v1 query)."""
    groups = {"load generator": [psutil.Process()], **groups}
    connector = aiohttp.TCPConnector(limit=concurrency, keepalive_timeout=60)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout,
                                     skip_auto_headers=("User-Agent",)) as session:
        if warmup > 0:
            await _run(session, url, headers, concurrency, warmup, body)
        before = {name: _cpu(procs) for name, procs in groups.items()}
        busy_before = _busy()
        tally, elapsed = await _run(session, url, headers, concurrency, seconds, body)
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


def gateway_url(cp: ControlPlaneProcess, rid: str) -> tuple[str, dict[str, str]]:
    """The v1 inference URL of a deployment behind the gateway, and the headers to send."""
    return (f"{cp.url}foundry-ml-live/api/inference/transform/{rid}",
            {"Authorization": f"Bearer {cp.token}", "Content-Type": "application/json"})


# --- the report -------------------------------------------------------------------------------
def markdown_header(title: str, report: ReportHeader) -> list[str]:
    """The title, machine, source and options lines every Markdown report begins with."""
    m, src = report.machine, report.source
    changed = src["uncommitted_library_changes"]
    return [f"## {title} — {report.started_at}", "",
            f"Machine: {m['cpus']} CPUs, Python {m['python']}, {m['platform']}, load average "
            f"before the run {m['loadavg_before']}. Source: {src['commit']}"
            + (f" + uncommitted changes in {', '.join(changed)}" if changed else "")
            + (f"; liveml imported from {src['library']}" if "library" in src else "") + ".",
            "Options: " + ", ".join(f"{k}={v}" for k, v in report.options.items()), ""]


def markdown_targets(targets: list[dict[str, Any]]) -> list[str]:
    """The targets table."""
    return (["### Targets", "", "| target | measured | result |", "|---|---|---|"]
            + [f"| {t['target']} | {t['measured']} | {'PASS' if t['pass'] else 'MISS'} |"
               for t in targets])


def markdown_steps(timeline: list[dict[str, Any]]) -> list[str]:
    """The table of the replicas' startup steps (from :func:`replica_timeline`)."""
    steps = [k for k in timeline[0] if k != "replica"]
    return (["| replica | " + " | ".join(steps) + " |", "|---" + "|---:" * len(steps) + "|"]
            + [f"| {t['replica']} | " + " | ".join(fmt(t.get(s)) for s in steps) + " |"
               for t in timeline])


def markdown_others(others: list[dict[str, Any]]) -> list[str]:
    """The line naming the busiest other processes (from :class:`OtherProcesses`)."""
    busy = [p for p in others if p["cores"] >= 0.01]
    return ["", "Busiest other processes over the load (cores): " + ("; ".join(
        f"{p['command'][:60]} (pid {p['pid']}) {p['cores']:.2f}" for p in busy) or "none above 0.01")]


def markdown_notes(notes: list[str]) -> list[str]:
    """The notes, if any."""
    return ["", "Notes:"] + [f"- {n}" for n in notes] if notes else []


def report_json(report: Any) -> str:
    """A report dataclass as indented JSON."""
    return json.dumps(asdict(report), indent=2, default=str) + "\n"


def finish(report: R, out: Path | None, evaluate: Callable[[R], None],
           markdown: Callable[[R], str], dump: Callable[[R], str] = report_json) -> None:
    """The end of a run: judge the figures against the targets, print the Markdown report and
    write the JSON one to ``out`` if given."""
    evaluate(report)
    print(markdown(report), flush=True)
    if out:
        out.write_text(dump(report))
        log(f"wrote {out}")
