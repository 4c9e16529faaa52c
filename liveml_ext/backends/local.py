"""The local backend: each replica is a child process of the control plane on a loopback port."""
from __future__ import annotations

import asyncio
import ctypes
import math
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import orjson

from .base import Backend, Observation, ReplicaSpec


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Linux: the replica gets SIGTERM when the control plane dies, even by kill -9."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


@dataclass
class LocalReplica:
    spec: ReplicaSpec
    proc: subprocess.Popen
    port_file: Path
    log_file: Path
    url: str | None = None


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


class LocalBackend(Backend):
    """Replicas as ``python -m liveml_runtime serve`` processes, logs in the liveml home."""

    name = "local"

    def __init__(self, home: Path, python: str = sys.executable, host: str = "127.0.0.1") -> None:
        self.home = Path(home)
        self.python = python
        self.host = host
        self.replicas: dict[str, LocalReplica] = {}

    def _dirs(self, spec: ReplicaSpec) -> tuple[Path, Path]:
        key = spec.deployment_rid.rsplit(".", 1)[-1]
        run = self.home / "run" / key
        logs = self.home / "logs" / key
        run.mkdir(parents=True, exist_ok=True)
        logs.mkdir(parents=True, exist_ok=True)
        return run, logs

    async def start(self, spec: ReplicaSpec) -> LocalReplica:
        run, logs = self._dirs(spec)
        port_file = run / f"{spec.node_id}.port"
        port_file.unlink(missing_ok=True)
        log_file = logs / f"{spec.node_id}.log"
        config = spec.runtime_configuration
        threads = str(max(1, math.ceil(float(config.get("cpu", 1)))))
        env = {**os.environ, **spec.env, "OMP_NUM_THREADS": threads,
               "OPENBLAS_NUM_THREADS": threads, "MKL_NUM_THREADS": threads,
               "PYTHONUNBUFFERED": "1"}
        cmd = [self.python, "-m", "liveml_runtime", "serve", "--artifact", spec.artifact_uri,
               "--host", self.host, "--port", "0", "--port-file", str(port_file),
               "--model-uuid", spec.model_uuid, "--node-id", spec.node_id,
               "--deployment-rid", spec.deployment_rid, "--release", spec.release_version,
               "--thread-count", str(config.get("threadCount", 1))]
        with open(log_file, "ab") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, env=env, cwd=run,
                                    start_new_session=True, preexec_fn=_die_with_parent)
        handle = LocalReplica(spec, proc, port_file, log_file)
        self.replicas[spec.node_id] = handle
        return handle

    def observe(self, handle: LocalReplica) -> Observation:
        code = handle.proc.poll()
        if code is not None:
            self.replicas.pop(handle.spec.node_id, None)
            reason = last_error(handle.log_file) or (
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
                proc.kill()
                proc.wait()
        handle.port_file.unlink(missing_ok=True)
        self.replicas.pop(handle.spec.node_id, None)

    def log_path(self, handle: LocalReplica) -> str:
        return str(handle.log_file)

    async def shutdown(self) -> None:
        await asyncio.gather(*(self.stop(h, grace=10) for h in list(self.replicas.values())))
