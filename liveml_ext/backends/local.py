"""The local backend: each replica is a child process of the control plane on a loopback port."""
from __future__ import annotations

import asyncio
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from ..core.units import parse_memory
from ..observability.metrics import tree_usage
from ..sandbox import Sandbox
from ..store.home import open_private, private_dir
from .base import Backend, NoCapacity, Observation, ReplicaSpec


@dataclass
class LocalReplica:
    spec: ReplicaSpec
    proc: subprocess.Popen[bytes]
    port_file: Path
    log_file: Path
    url: str | None = None
    memory_limit: int = 0
    gpus: tuple[int, ...] = ()
    cores: tuple[int, ...] = ()
    killed_for: str = ""
    next_memory_check: float = 0.0
    private: Path | None = None  # its sandbox folder (HOME, TMPDIR, cwd, its copy of the artifact)


def detect_gpus() -> list[str]:
    """GPU types by device index, from nvidia-smi when it is installed."""
    if not shutil.which("nvidia-smi"):
        return []
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.splitlines() if line.strip()]


def last_error(log_file: Path, limit: int = 64 * 1024) -> str:
    """The message of the last ERROR record in a replica's log, for an exit reason."""
    try:
        with open(log_file, "rb") as fh:
            fh.seek(max(0, log_file.stat().st_size - limit))
            lines = fh.read().splitlines()
    except OSError:
        return ""
    for line in reversed(lines):
        try:
            doc = orjson.loads(line)
        except orjson.JSONDecodeError:
            if line.strip():
                return line.decode(errors="replace")[-500:]
            continue
        if isinstance(doc, dict) and doc.get("level") in ("ERROR", "CRITICAL"):
            return str(doc.get("message", ""))
    return ""


def _group(spec: ReplicaSpec) -> tuple[str, str, int]:
    """Replicas that serve together: one deployment's release and generation."""
    return (spec.deployment_rid, spec.release_rid, spec.generation)


def _kill_tree(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL a replica and whatever it started (its own process group)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except OSError:
        proc.kill()


class LocalBackend(Backend):
    """Replicas as ``python -m liveml_runtime serve`` processes, logs in the liveml home, each
    in its own ``Sandbox`` (clean environment, private folder, Landlock, replica user).

    Resources, as far as the OS allows: with ``pin_cpus`` each replica is pinned to ``ceil(cpu)``
    of the least used cores (off by default: on a small machine the control plane and the
    clients share those cores, and pinning costs more than it saves); a replica is stopped and
    reported out of memory when its process tree's RSS passes ``memory``,
    and a GPU replica gets ``CUDA_VISIBLE_DEVICES`` with devices no other replica holds.
    """

    name = "local"

    def __init__(self, home: Path, python: str = sys.executable, host: str = "127.0.0.1",
                 gpus: list[str] | None = None, memory_check_interval: float = 0.5,
                 pin_cpus: bool = False, sandbox: Sandbox | None = None) -> None:
        self.home = Path(home)
        self.sandbox = sandbox or Sandbox(self.home, python)
        self._own_sandbox = sandbox is None
        self.python = python
        self.host = host
        self.replicas: dict[str, LocalReplica] = {}
        self.gpus = detect_gpus() if gpus is None else list(gpus)
        self._spawner = ThreadPoolExecutor(1, thread_name_prefix="liveml-spawn")
        self.memory_check_interval = memory_check_interval
        self.pin_cpus = pin_cpus
        try:
            self.cores = sorted(os.sched_getaffinity(0))
        except AttributeError:  # not Linux
            self.cores = []

    def gpu_types(self) -> list[str]:
        return list(self.gpus)

    def allocate_gpus(self, count: int, kind: str = "") -> tuple[int, ...]:
        """Device indexes no running replica holds; NoCapacity when too few are free."""
        held = {i for r in self.replicas.values() for i in r.gpus}
        free = [i for i, t in enumerate(self.gpus) if i not in held and (not kind or t == kind)]
        if len(free) < count:
            raise NoCapacity(f"no GPU free: {count} wanted, {len(free)} of "
                             f"{len(self.gpus)} free{f' of type {kind}' if kind else ''}")
        return tuple(free[:count])

    def allocate_cores(self, cpu: float, group: tuple[Any, ...] = ()) -> tuple[int, ...]:
        """The ``ceil(cpu)`` cores least used by replicas of the same ``group`` (a deployment's
        target), then least used overall (none when the OS cannot pin, or it would be all)."""
        want = max(1, math.ceil(cpu))
        if not self.pin_cpus or not self.cores or want >= len(self.cores):
            return ()
        use = {c: 0 for c in self.cores}
        mine = {c: 0 for c in self.cores}
        for r in self.replicas.values():
            same = r.spec is not None and group and _group(r.spec) == group
            for c in r.cores:
                use[c] = use.get(c, 0) + 1
                mine[c] = mine.get(c, 0) + (1 if same else 0)
        return tuple(sorted(sorted(self.cores, key=lambda c: (mine[c], use[c], c))[:want]))

    def _logs(self, spec: ReplicaSpec) -> Path:
        logs = self.home / "logs" / spec.deployment_rid.rsplit(".", 1)[-1]
        return private_dir(logs)

    async def start(self, spec: ReplicaSpec) -> LocalReplica:
        log_file = self._logs(spec) / f"{spec.node_id}.log"
        config = spec.runtime_configuration
        gpus = self.allocate_gpus(config.gpu, config.gpu_type)
        cores = self.allocate_cores(config.cpu, _group(spec))
        threads = str(max(1, math.ceil(config.cpu)))
        memory_limit = parse_memory(config.memory)
        env = {**spec.env, "OMP_NUM_THREADS": threads,
               "LIVEML_MEMORY_LIMIT": str(memory_limit),  # a Spark replica sizes its JVM heap
               "OPENBLAS_NUM_THREADS": threads, "MKL_NUM_THREADS": threads,
               "PYTHONUNBUFFERED": "1", "CUDA_VISIBLE_DEVICES": ",".join(map(str, gpus)),
               "LIVEML_REPLICA_TOKEN": spec.token}
        sandbox = self.sandbox

        def spawn() -> tuple[subprocess.Popen[bytes], Path]:
            private = sandbox.private(spec.node_id)
            artifact = spec.artifact_uri
            source = Path(artifact.removeprefix("file://"))
            if ("://" not in artifact or artifact.startswith("file://")) and source.is_file():
                artifact = str(sandbox.put(private, source.name, source))  # its own copy
            # (a missing file is passed on as it is: the replica reports that it cannot load it)
            requirements = sandbox.put(private, "requirements.json",
                                       json.dumps(spec.requirements).encode())
            # -X: which home's replica this is, for `ps` (and the tests' replica_pids); the
            # process cannot read that home
            cmd = [self.python, "-X", f"liveml_home={self.home}", "-m", "liveml_runtime",
                   "serve", "--artifact", artifact,
                   "--host", self.host, "--port", "0", "--port-file", str(private / "port"),
                   "--model-uuid", spec.model_uuid, "--node-id", spec.node_id,
                   "--deployment-rid", spec.deployment_rid, "--release", spec.release_version,
                   "--thread-count", str(config.thread_count),
                   "--max-queue", str(config.queue_size),
                   "--requirements", str(requirements)]
            if spec.input_example:
                example = sandbox.put(private, "input-example.json",
                                      json.dumps(spec.input_example).encode())
                cmd += ["--input-example", str(example)]
            with open_private(log_file, "ab") as out, sandbox.process(private, env) as kw:
                return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, **kw), private

        # fork on one long-lived thread: the event loop does not wait for it, and the parent-
        # death signal (tied to the forking thread) fires only when the control plane ends
        proc, private = await asyncio.get_running_loop().run_in_executor(self._spawner, spawn)
        if cores:
            try:
                os.sched_setaffinity(proc.pid, cores)
            except OSError:
                cores = ()
        handle = LocalReplica(spec, proc, private / "port", log_file, gpus=gpus, cores=cores,
                              memory_limit=memory_limit, private=private)
        self.replicas[spec.node_id] = handle
        return handle

    def observe(self, handle: LocalReplica, fresh: bool = False) -> Observation:
        code = handle.proc.poll()
        now = time.monotonic()
        if code is None and handle.memory_limit and (fresh or now >= handle.next_memory_check):
            handle.next_memory_check = now + self.memory_check_interval
            rss = tree_usage(handle.proc.pid)[0]
            if rss > handle.memory_limit:
                handle.killed_for = (f"out of memory: the replica used {rss / 2**20:.0f} MiB, "
                                     f"over its {handle.memory_limit / 2**20:.0f} MiB limit; "
                                     "raise memory or use a larger resource profile")
                _kill_tree(handle.proc)
                code = handle.proc.wait()
        if code is not None:
            self.replicas.pop(handle.spec.node_id, None)
            self.sandbox.release(handle.private)
            reason = handle.killed_for or last_error(handle.log_file) or (
                f"the replica process exited with code {code}" if code >= 0
                else f"the replica process was killed by signal {-code}")
            return Observation(alive=False, url=handle.url, exit_reason=reason)
        if handle.url is None and handle.port_file.exists():
            try:
                handle.url = f"http://{self.host}:{int(handle.port_file.read_text())}"
            except ValueError:
                pass
        return Observation(alive=True, url=handle.url)

    async def stop(self, handle: LocalReplica, grace: float = 30.0) -> None:
        proc = handle.proc
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + grace
            while proc.poll() is None and loop.time() < deadline:
                await asyncio.sleep(0.05)
            if proc.poll() is None:
                _kill_tree(proc)
                proc.wait()
        self.sandbox.release(handle.private)
        self.replicas.pop(handle.spec.node_id, None)

    def pid(self, handle: LocalReplica) -> int | None:
        return handle.proc.pid if handle.proc.poll() is None else None

    def log_path(self, handle: LocalReplica) -> str:
        return str(handle.log_file)

    async def shutdown(self) -> None:
        await asyncio.gather(*(self.stop(h, grace=10) for h in list(self.replicas.values())))
        self._spawner.shutdown(wait=False)
        if self._own_sandbox:
            self.sandbox.close()
