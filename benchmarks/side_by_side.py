"""liveml against MLServer, side by side in one run, with one load generator (wrk), run by hand.

It trains the reference house-price model, times the in-process ``predict`` of the one-row
query, then drives, one after the other on 127.0.0.1 and with the same ``wrk`` (one thread,
keep-alive connections, N = 1, 16, 64 clients):

* liveml's default deployment (a private ``liveml server``, 2 local replicas) through its gateway,
* the same deployment made through liveml's Jupyter server extension, hosted by a real
  ``jupyter server`` with its own home (config, data, runtime and liveml home folders),
* MLServer 1.7.1 (mlserver-sklearn) without adaptive batching,
* the same MLServer with adaptive batching (max batch 64, max wait 2 ms).

MLServer is installed from PyPI into a virtualenv of its own under the benchmark's temporary
folder (never into this project's environment); ``--mlserver-venv DIR`` reuses one. It prints one
Markdown table with the ratios and the targets of issue 15, plus the CPU time per request of each
process group, optionally writes JSON (``--out``), and stops everything it started, even when
interrupted. Usage: ``python benchmarks/side_by_side.py [--duration 10] [--out results.json]``.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402 - the benchmarks' shared helpers
    BODY,
    HOST,
    ROW,
    SHARED_REFERENCE,
    ControlPlaneProcess,
    JupyterControlPlaneProcess,
    ReportHeader,
    add_output_options,
    clean_env,
    finish,
    fmt,
    free_port,
    gateway_url,
    log,
    markdown_header,
    markdown_notes,
    markdown_targets,
    parser,
    report_header,
    run_in_temp_home,
    train_reference,
)
from query_load import REPLICA_ENV, time_calls  # noqa: E402 - one baseline timer for both

MLSERVER = ("mlserver==1.7.1", "mlserver-sklearn==1.7.1")
#: MLServer 1.7.1 workers call asyncio.get_event_loop() outside a loop, which uvloop 0.22 refuses.
MLSERVER_PINS = ("uvloop<0.22",)
LIVEML, JUPYTER = "liveml", "liveml in Jupyter"
PLAIN, BATCHING = "MLServer, no batching", "MLServer, batching"
SYSTEMS = (LIVEML, JUPYTER, PLAIN, BATCHING)
#: What ``--skip`` calls them.
KEYS = {"liveml": LIVEML, "liveml-jupyter": JUPYTER, "mlserver": PLAIN,
        "mlserver-batching": BATCHING}
TARGET_P50_OVERHEAD_MS = 0.7
TARGET_RATIO_AT_64 = 2.5
TARGET_P99_OVER_P50 = 2.5
#: How far the Jupyter-hosted control plane may fall behind the standalone one (a fraction).
TARGET_JUPYTER_SLACK = 0.20
#: The process groups whose CPU each run reports.
GROUPS = ("wrk", "front", "workers", "other processes")
GROUP_HELP = ("wrk; the front process (liveml's control plane, the Jupyter server hosting it, "
              "MLServer's main process); the workers (liveml's replicas, MLServer's inference "
              "worker processes); everything else busy on the machine in the same window")

WRK_SCRIPT = """\
wrk.method = "POST"
wrk.body = [=[%(body)s]=]
%(headers)s
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "WRK-RESULT {\\"requests\\":%%d,\\"duration_us\\":%%d,\\"connect\\":%%d,\\"read\\":%%d,"
    .. "\\"write\\":%%d,\\"status\\":%%d,\\"timeout\\":%%d,\\"p50_us\\":%%f,\\"p90_us\\":%%f,"
    .. "\\"p99_us\\":%%f,\\"max_us\\":%%f}\\n",
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
"""


# --- results ----------------------------------------------------------------------------------
@dataclass
class Run:
    """One load level against one system, as wrk measured it."""

    system: str
    clients: int
    requests: int
    seconds: float
    errors: dict[str, int]  # wrk's socket errors and non-2xx/3xx answers ("status")
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    cpu_ms_per_req: dict[str, float] = field(default_factory=dict)

    @property
    def failed(self) -> int:
        return sum(self.errors.values())


@dataclass
class Report(ReportHeader):
    predict_p50_ms: float | None = None
    predict_p99_ms: float | None = None
    runs: list[Run] = field(default_factory=list)
    targets: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


# --- wrk ------------------------------------------------------------------------------------
def need_wrk() -> str:
    """The wrk executable, or exit saying how to install it."""
    path = shutil.which("wrk")
    if path is None:
        raise SystemExit("side_by_side: this benchmark drives the servers with wrk, which is not "
                         "installed: `sudo apt-get install -y wrk` (Debian/Ubuntu) or "
                         "`brew install wrk` (macOS), then run it again")
    return path


def cpu_seconds(procs: list[psutil.Process]) -> float:
    """CPU seconds (user + system) the processes have used so far (0 for one that is gone)."""
    total = 0.0
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            t = proc.cpu_times()
            total += t.user + t.system
    return total


def busy_seconds() -> float:
    t = psutil.cpu_times()
    return float(sum(t) - t.idle - getattr(t, "iowait", 0.0))


def children_cpu() -> float:
    """CPU seconds of this process's waited-for children (wrk is the only one reaped here)."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


class Wrk:
    """wrk with one thread and a Lua script posting one body with the given headers."""

    def __init__(self, exe: str, folder: Path) -> None:
        self.exe = exe
        self.folder = folder
        self.proc: subprocess.Popen[bytes] | None = None

    def script(self, name: str, body: bytes, headers: dict[str, str]) -> Path:
        path = self.folder / f"{name}.lua"
        lines = "\n".join(f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}"
                          for k, v in headers.items())
        path.write_text(WRK_SCRIPT % {"body": body.decode(), "headers": lines})
        return path

    def _wrk(self, url: str, script: Path, clients: int, seconds: float) -> dict[str, Any]:
        cmd = [self.exe, "-t1", f"-c{clients}", f"-d{max(1, round(seconds))}s",
               "--timeout", "30s", "-s", str(script), url]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        try:
            out, _ = self.proc.communicate(timeout=seconds + 60)
        finally:
            self.stop()
        text = out.decode(errors="replace")
        for line in text.splitlines():
            if line.startswith("WRK-RESULT "):
                return dict(orjson.loads(line.removeprefix("WRK-RESULT ")))
        raise RuntimeError(f"wrk gave no result (exit code {self.proc.returncode}):\n{text}")

    def run(self, system: str, url: str, script: Path, clients: int, seconds: float,
            warmup: float, groups: dict[str, list[psutil.Process]]) -> Run:
        """A warm-up, then the measured run; CPU is counted per process group over it."""
        if warmup > 0:
            self._wrk(url, script, clients, warmup)
        before = {name: cpu_seconds(procs) for name, procs in groups.items()}
        wrk_before, busy_before = children_cpu(), busy_seconds()
        res = self._wrk(url, script, clients, seconds)
        used = {name: cpu_seconds(procs) - before[name] for name, procs in groups.items()}
        used["wrk"] = children_cpu() - wrk_before
        used["other processes"] = max(0.0, busy_seconds() - busy_before - sum(used.values()))
        n = max(1, int(res["requests"]))
        elapsed = res["duration_us"] / 1e6
        errors = {k: int(res[k]) for k in ("connect", "read", "write", "status", "timeout")
                  if res[k]}
        return Run(system, clients, n, round(elapsed, 3), errors, n / elapsed,
                   res["p50_us"] / 1000, res["p90_us"] / 1000, res["p99_us"] / 1000,
                   res["max_us"] / 1000, {k: 1000.0 * v / n for k, v in used.items()})

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


# --- MLServer -------------------------------------------------------------------------------
def mlserver_venv(given: Path | None, tmp: Path) -> Path:
    """A virtualenv with MLServer and mlserver-sklearn (and this scikit-learn and joblib, so the
    saved model loads the same): ``given``, else a new one under ``tmp``."""
    if given is not None:
        if not (given / "bin" / "mlserver").exists():
            raise SystemExit(f"side_by_side: no bin/mlserver in {given}")
        return given
    import joblib
    import sklearn

    venv = tmp / "mlserver-venv"
    log(f"installing {', '.join(MLSERVER)} into {venv} (a minute or two)")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", *MLSERVER, *MLSERVER_PINS,
                    f"scikit-learn=={sklearn.__version__}", f"joblib=={joblib.__version__}"],
                   check=True)
    return venv


#: The V2 inference protocol's form of the one-row query, decoded by MLServer as a DataFrame.
MLSERVER_BODY: dict[str, Any] = {
    "parameters": {"content_type": "pd"},
    "inputs": [
        {"name": "house-location", "shape": [1], "datatype": "BYTES", "data": [ROW["house-location"]]},
        {"name": "bedrooms", "shape": [1], "datatype": "INT64", "data": [ROW["bedrooms"]]},
        {"name": "bathrooms", "shape": [1], "datatype": "FP64", "data": [ROW["bathrooms"]]},
    ],
}


class MLServerProcess:
    """``mlserver start`` on 127.0.0.1 in its own session (so its workers stop with it)."""

    def __init__(self, venv: Path, model: Path, folder: Path, batching: bool) -> None:
        self.venv, self.folder = venv, folder
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        folder.mkdir(parents=True)
        (folder / "settings.json").write_text(json.dumps({
            "host": HOST, "http_port": self.port, "grpc_port": free_port(),
            "metrics_port": free_port(), "debug": False}))
        model_settings: dict[str, Any] = {
            "name": "house", "implementation": "mlserver_sklearn.SKLearnModel",
            "parameters": {"uri": str(model)}}
        if batching:
            model_settings |= {"max_batch_size": 64, "max_batch_time": 0.002}
        (folder / "model-settings.json").write_text(json.dumps(model_settings))
        self.url = f"http://{HOST}:{self.port}/v2/models/house/infer"

    def start(self, timeout: float = 120.0) -> None:
        import urllib.error
        import urllib.request

        log_path = self.folder / "mlserver.log"
        with open(log_path, "wb") as out:
            self.proc = subprocess.Popen(
                [str(self.venv / "bin" / "mlserver"), "start", str(self.folder)],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env={**clean_env(), **REPLICA_ENV}, start_new_session=True)
        ready = f"http://{HOST}:{self.port}/v2/models/house/ready"
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"MLServer exited with code {self.proc.returncode}:\n"
                                   f"{log_path.read_text(errors='replace')[-3000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"MLServer not ready after {timeout:.0f}s")
            with contextlib.suppress(OSError, urllib.error.URLError):
                with urllib.request.urlopen(ready, timeout=2) as resp:
                    if resp.status == 200:
                        return
            time.sleep(0.2)

    def processes(self) -> tuple[list[psutil.Process], list[psutil.Process]]:
        """The main process, and its worker processes."""
        assert self.proc is not None
        main = psutil.Process(self.proc.pid)
        return [main], main.children(recursive=True)

    def stop(self) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            log("MLServer did not stop within 5s of SIGTERM; killing it")
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # its workers too
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)


# --- the run --------------------------------------------------------------------------------
def _sigterm(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt  # stopped from outside: the same teardown as Ctrl-C


def run(args: argparse.Namespace, report: Report, tmp: Path) -> None:
    exe = need_wrk()
    wrk = Wrk(exe, tmp)
    pipeline, model_path = train_reference(args.reference, tmp)
    import pandas as pd

    frame = pd.DataFrame([ROW])
    log(f"in-process predict ({args.baseline_calls} calls)")
    t = time_calls("predict", "model.predict(DataFrame)", lambda: pipeline.predict(frame),
                   args.baseline_calls)
    report.predict_p50_ms, report.predict_p99_ms = t.p50_ms, t.p99_ms

    # every system is started first, then each level drives them in turn: a change in the
    # machine's other load spreads over all of them instead of tilting the ratios
    targets: list[tuple[str, str, Path, dict[str, list[psutil.Process]]]] = []
    with contextlib.ExitStack() as stack:
        stack.callback(wrk.stop)
        control_planes = {
            LIVEML: lambda: ControlPlaneProcess(tmp / "home", tmp / "server.log"),
            JUPYTER: lambda: JupyterControlPlaneProcess(tmp / "jupyter-home", tmp / "jupyter",
                                                        tmp / "jupyter.log")}
        for system, make in control_planes.items():
            if system in args.skip:
                continue
            cp = make()
            stack.callback(cp.teardown, report.notes)
            cp.start()
            log(f"deploying {system} with {args.replicas} replicas")
            rid = cp.release_and_deploy(model_path, "side-by-side", args.replicas,
                                        "side_by_side benchmark").rid
            url, headers = gateway_url(cp, rid)
            name = "liveml" if system == LIVEML else "liveml-jupyter"
            targets.append((system, url, wrk.script(name, orjson.dumps(BODY), headers),
                            {"front": [cp.process()], "workers": cp.replicas()}))
        venv: Path | None = None
        for system, batching in ((PLAIN, False), (BATCHING, True)):
            if system in args.skip:
                continue
            venv = venv or mlserver_venv(args.mlserver_venv, tmp)
            server = MLServerProcess(venv, model_path, tmp / ("mlserver-batching" if batching
                                                              else "mlserver"), batching)
            stack.callback(server.stop)
            log(f"starting {system} on {HOST}:{server.port}")
            server.start()
            front, workers = server.processes()
            targets.append((system, server.url, wrk.script(
                "mlserver", orjson.dumps(MLSERVER_BODY), {"Content-Type": "application/json"}),
                {"front": front, "workers": workers}))
        for n in args.concurrency:
            for system, url, script, groups in targets:
                log(f"{system}: {n} client(s), {args.warmup:g}s warm-up + {args.duration:g}s")
                r = wrk.run(system, url, script, n, args.duration, args.warmup, groups)
                report.runs.append(r)
                log(f"  {r.rps:.1f} req/s, p50 {r.p50_ms:.2f} ms, p99 {r.p99_ms:.2f} ms, "
                    f"errors {r.errors or 0}")


# --- report ----------------------------------------------------------------------------------
def evaluate(report: Report) -> None:
    by = {(r.system, r.clients): r for r in report.runs}
    targets: list[dict[str, Any]] = []
    one = by.get((LIVEML, 1))
    if one and report.predict_p50_ms is not None:
        over = one.p50_ms - report.predict_p50_ms
        targets.append({"target": f"1 client: liveml p50 ≤ in-process predict p50 + "
                                  f"{TARGET_P50_OVERHEAD_MS:g} ms",
                        "measured": f"{fmt(one.p50_ms)} ms vs {fmt(report.predict_p50_ms)} ms "
                                    f"(+{fmt(over)} ms)",
                        "pass": over <= TARGET_P50_OVERHEAD_MS and not one.failed})
    top = by.get((LIVEML, 64))
    best = max((r for r in (by.get((PLAIN, 64)), by.get((BATCHING, 64))) if r),
               key=lambda r: r.rps, default=None)
    if top and best:
        ratio = top.rps / best.rps
        targets.append({"target": f"64 clients: ≥ {TARGET_RATIO_AT_64:g}× the req/s of the "
                                  "better MLServer",
                        "measured": f"{fmt(top.rps, 0)} vs {fmt(best.rps, 0)} req/s "
                                    f"({best.system}): {fmt(ratio)}×",
                        "pass": ratio >= TARGET_RATIO_AT_64})
    if top:
        targets.append({"target": f"64 clients: liveml p99 ≤ {TARGET_P99_OVER_P50:g}× p50",
                        "measured": f"p99 {fmt(top.p99_ms)} ms / p50 {fmt(top.p50_ms)} ms = "
                                    f"{fmt(top.p99_ms / top.p50_ms)}×",
                        "pass": top.p99_ms <= TARGET_P99_OVER_P50 * top.p50_ms})
    ours = [r for r in report.runs if r.system == LIVEML]
    if ours:
        failed = sum(r.failed for r in ours)
        targets.append({"target": "liveml: no non-2xx answer or socket error",
                        "measured": f"{failed} of {sum(r.requests for r in ours)}",
                        "pass": failed == 0})
    if jupyter := jupyter_target(by):
        targets.append(jupyter)
    report.targets = targets


def jupyter_target(by: dict[tuple[str, int], Run]) -> dict[str, Any] | None:
    """The Jupyter-hosted control plane against the standalone one: the 1-client p50 at most
    20% higher, the 64-client req/s at most 20% lower, no failed request in those runs."""
    s1, j1, s64, j64 = (by.get((system, n)) for n in (1, 64) for system in (LIVEML, JUPYTER))
    if not (s1 and j1 and s64 and j64):
        return None
    p50_ratio, rps_ratio = j1.p50_ms / s1.p50_ms, j64.rps / s64.rps
    failed = j1.failed + j64.failed
    slack = TARGET_JUPYTER_SLACK
    return {"target": f"Jupyter-hosted within {slack:.0%} of standalone: 1-client p50 and "
                      "64-client req/s",
            "measured": f"p50 {fmt(j1.p50_ms)} vs {fmt(s1.p50_ms)} ms ({fmt(p50_ratio)}×), "
                        f"{fmt(j64.rps, 0)} vs {fmt(s64.rps, 0)} req/s ({fmt(rps_ratio)}×)"
                        + (f", {failed} failed" if failed else ""),
            "pass": p50_ratio <= 1 + slack and rps_ratio >= 1 - slack and not failed,
            "ratios": {"p50_1_client": round(p50_ratio, 3), "rps_64_clients": round(rps_ratio, 3)}}


def cell(r: Run | None) -> str:
    if r is None:
        return "—"
    text = f"{r.rps:,.0f} req/s, p50 {r.p50_ms:.2f} ms, p99 {r.p99_ms:.1f} ms"
    return text + (f", **{r.failed} failed**" if r.failed else "")


def markdown(report: Report) -> str:
    by = {(r.system, r.clients): r for r in report.runs}
    levels = sorted({r.clients for r in report.runs})
    out = markdown_header("liveml side by side with MLServer", report)
    out += ["| | " + " | ".join(SYSTEMS) + " | in-process `predict` | liveml ÷ better MLServer |",
            "|---" * (len(SYSTEMS) + 3) + "|"]
    for n in levels:
        ours = by.get((LIVEML, n))
        others = [r for r in (by.get((PLAIN, n)), by.get((BATCHING, n))) if r]
        best = max(others, key=lambda r: r.rps, default=None)
        ratio = f"{ours.rps / best.rps:.2f}× req/s" if ours and best else "—"
        predict = (f"p50 {report.predict_p50_ms:.2f} ms" if n == 1 and report.predict_p50_ms
                   is not None else "")
        if n == 1 and ours and report.predict_p50_ms is not None:
            ratio += f"; liveml p50 − predict p50 = {ours.p50_ms - report.predict_p50_ms:.2f} ms"
        out.append(f"| {n} client{'s' if n > 1 else ''} | "
                   + " | ".join(cell(by.get((s, n))) for s in SYSTEMS)
                   + f" | {predict} | {ratio} |")
    out += ["", *markdown_targets(report.targets), "", "### CPU time per request (ms)", "",
            f"By process group: {GROUP_HELP}.", "",
            "| system | clients | " + " | ".join(GROUPS) + " |", "|---|---:" + "|---:" * len(GROUPS)
            + "|"]
    for r in report.runs:
        out.append(f"| {r.system} | {r.clients} | "
                   + " | ".join(fmt(r.cpu_ms_per_req.get(g), 3) for g in GROUPS) + " |")
    failed = [r for r in report.runs if r.failed]
    if failed:
        out += ["", "Failed requests (wrk's counts):"]
        out += [f"- {r.system}, {r.clients} clients: {r.errors}" for r in failed]
    return "\n".join(out + markdown_notes(report.notes))


def dump(report: Report) -> str:
    return json.dumps(asdict(report), indent=2, default=str) + "\n"


# --- main ------------------------------------------------------------------------------------
def jupyter_server_version() -> str:
    """The version of jupyter_server that hosts the extension."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("jupyter_server")
    except PackageNotFoundError:
        return "not installed"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = parser(__doc__, SHARED_REFERENCE)
    p.add_argument("--duration", type=float, default=10.0, help="seconds of load per level")
    p.add_argument("--warmup", type=float, default=2.0, help="seconds of unmeasured load first")
    p.add_argument("--concurrency", type=lambda s: [int(x) for x in s.split(",")],
                   default=[1, 16, 64], help="comma-separated client counts")
    p.add_argument("--replicas", type=int, default=2, help="liveml replicas")
    p.add_argument("--baseline-calls", type=int, default=2000)
    p.add_argument("--mlserver-venv", type=Path,
                   help="a virtualenv that already has mlserver and mlserver-sklearn (else one "
                        "is installed under the temporary folder)")
    p.add_argument("--skip", type=lambda s: [x.strip() for x in s.split(",") if x.strip()],
                   default=[], help=f"systems to leave out, comma-separated, of: {', '.join(KEYS)}")
    add_output_options(p, "keep the temporary folder (logs, MLServer's virtualenv)")
    args = p.parse_args(argv)
    if args.duration < 1 or args.warmup < 0 or any(n < 1 for n in args.concurrency):
        p.error("--duration must be ≥ 1, --warmup ≥ 0 and each concurrency ≥ 1")
    if unknown := set(args.skip) - set(KEYS):
        p.error(f"--skip: unknown system(s) {sorted(unknown)}; known: {', '.join(KEYS)}")
    args.skip = [KEYS[k] for k in args.skip]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    need_wrk()
    signal.signal(signal.SIGTERM, _sigterm)
    report = Report(
        **report_header(args, "side_by_side"),
        options={"duration": args.duration, "warmup": args.warmup,
                 "concurrency": ",".join(map(str, args.concurrency)), "replicas": args.replicas,
                 "load generator": "wrk -t1 (keep-alive)", "mlserver": " ".join(MLSERVER),
                 "jupyter_server": jupyter_server_version()})
    report.notes.append("CPU figures are CPU times over each measured window; 'other processes' "
                        "is the machine's busy time minus the groups' (high: disturbed run).")
    code = run_in_temp_home(run, args, report, "liveml-side-by-side-")
    finish(report, args.out, evaluate, markdown, dump)
    return code


if __name__ == "__main__":
    sys.exit(main())
