"""Where a query's time goes: py-spy profiles of the control plane and a replica under wrk.

It starts liveml as ``side_by_side.py`` does (a private ``liveml server``, the reference model,
2 local replicas), drives the gateway with ``wrk`` at each client count, and meanwhile samples
the control plane and one replica with ``py-spy record`` (``pip install py-spy``). For each
process and load it prints the frames with the largest share of the busy samples, by own time
and inclusive, and keeps the raw collapsed stacks under ``--out-dir``. Run by hand, on a quiet
machine: ``python benchmarks/profile_query_path.py [--concurrency 1,64] [--seconds 8]``.
"""
from __future__ import annotations

import argparse
import contextlib
import shutil
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402 - the benchmarks' shared helpers
    BODY,
    ControlPlaneProcess,
    gateway_url,
    log,
    parser,
    run_in_temp_home,
    train_reference,
)
from side_by_side import Wrk, need_wrk  # noqa: E402 - the same load generator

#: Leaf frames of a thread waiting for work: not counted as busy.
IDLE = ("_worker (futures/thread.py)", "Condition.wait (threading.py)", "wait (threading.py)",
        "select (selectors.py)", "Runner.run (asyncio/runners.py)")


def short(frame: str) -> str:
    """``func (a/b/c/file.py:12)`` -> ``func (c/file.py)``."""
    name, _, loc = frame.partition(" (")
    path = loc.rstrip(")").rpartition(":")[0] or loc.rstrip(")")
    return f"{name} ({'/'.join(path.split('/')[-2:])})"


def top_frames(raw: Path, k: int) -> list[str]:
    """The ``k`` frames with the largest own and inclusive shares of a raw py-spy file."""
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    busy = idle = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        frames = [short(f) for f in stack.split(";")]
        if frames[-1] in IDLE:
            idle += int(count)
            continue
        busy += int(count)
        own[frames[-1]] += int(count)
        for f in set(frames):
            total[f] += int(count)
    out = [f"busy samples {busy} (idle {idle}); own time:"]
    out += [f"  {100 * c / max(1, busy):5.1f}%  {f}" for f, c in own.most_common(k)]
    out.append("inclusive:")
    out += [f"  {100 * c / max(1, busy):5.1f}%  {f}" for f, c in total.most_common(2 * k)]
    return out


@dataclass
class Report:
    lines: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def run(args: argparse.Namespace, report: Report, tmp: Path) -> None:
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        raise SystemExit("profile_query_path: needs py-spy (`pip install py-spy`)")
    wrk = Wrk(need_wrk(), tmp)
    _, model_path = train_reference(args.reference, tmp)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        cp = ControlPlaneProcess(tmp / "home", tmp / "server.log")
        stack.callback(cp.teardown, report.notes)
        cp.start()
        rid = cp.release_and_deploy(model_path, "profile", args.replicas, "profile").rid
        url, headers = gateway_url(cp, rid)
        script = wrk.script("liveml", orjson.dumps(BODY), headers)
        targets = {"cp": cp.process().pid, "replica": cp.replicas()[0].pid}
        for n in args.concurrency:
            log(f"{n} client(s): {args.seconds:g}s warm-up, then {args.seconds:g}s sampled")
            wrk._wrk(url, script, n, args.seconds)
            spies = {}
            for name, pid in targets.items():
                raw = args.out_dir / f"{name}-{n}.raw"
                spies[name] = subprocess.Popen(
                    [spy, "record", "-r", "200", "-d", str(round(args.seconds)), "-f", "raw",
                     "-o", str(raw), "-p", str(pid)],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            res = wrk._wrk(url, script, n, args.seconds + 1)
            for p in spies.values():
                p.wait(timeout=60)
            report.lines.append(f"## {n} client(s): {res['requests'] / (res['duration_us'] / 1e6):.0f}"
                          f" req/s, p50 {res['p50_us'] / 1000:.2f} ms")
            for name in targets:
                report.lines.append(f"### {name}")
                report.lines += top_frames(args.out_dir / f"{name}-{n}.raw", args.top)


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__, Path(__file__).resolve().parents[2] / "shared/reference/house_model.py")
    p.add_argument("--concurrency", type=lambda s: [int(x) for x in s.split(",")],
                   default=[1, 64])
    p.add_argument("--seconds", type=float, default=8.0)
    p.add_argument("--replicas", type=int, default=2)
    p.add_argument("--top", type=int, default=12)
    p.add_argument("--out-dir", type=Path, default=Path("profiles"))
    p.add_argument("--keep-home", action="store_true")
    args = p.parse_args(argv)
    report = Report()
    code = run_in_temp_home(run, args, report, "liveml-profile-")
    print("\n".join(report.lines + [f"- {n}" for n in report.notes]))
    return code


if __name__ == "__main__":
    raise SystemExit(main())
