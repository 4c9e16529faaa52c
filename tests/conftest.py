"""Fixtures with real parts: a real control plane process, real replica processes, real HTTP."""
from __future__ import annotations

import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import joblib
import pytest
import requests
from kube_fake import FakeKube

from liveml_ext.client import Client

REPO = Path(__file__).resolve().parent.parent
SHARED_REFERENCE = REPO.parent / "shared" / "reference" / "house_model.py"
REFERENCE = SHARED_REFERENCE if SHARED_REFERENCE.exists() else REPO / "notebooks" / "house_model.py"
ROW = {"house-location": "New York", "bedrooms": 3, "bathrooms": 1.5}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def reference_module():
    assert REFERENCE.exists(), f"the reference model is missing: {REFERENCE}"
    spec = importlib.util.spec_from_file_location("house_model", REFERENCE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def house_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The reference pipeline, trained and saved with joblib."""
    path = tmp_path_factory.mktemp("models") / "house.joblib"
    joblib.dump(reference_module().train(), path)
    return path


@dataclass
class Server:
    home: Path
    port: int
    proc: subprocess.Popen
    url: str = ""
    token: str = ""

    @property
    def client(self) -> Client:
        return Client(self.url, self.token)

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LIVEML_")}
        env["LIVEML_HOME"] = str(self.home)
        return env

    def infer_url(self, rid: str, v2: bool = False) -> str:
        return f"{self.url}foundry-ml-live/api/inference/transform/{rid}" + ("/v2" if v2 else "")

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def stop(self, timeout: float = 30) -> None:
        terminate(self.proc, timeout)


def terminate(proc: subprocess.Popen, timeout: float = 30) -> None:
    """SIGTERM, and SIGKILL when ``proc`` has not exited after ``timeout`` seconds."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def start_server(home: Path, port: int | None = None, timeout: float = 60,
                 args: tuple[str, ...] = ()) -> Server:
    port = port or free_port()
    conn = home / "connection.json"
    conn.unlink(missing_ok=True)
    home.mkdir(parents=True, exist_ok=True)
    log = open(home / "server.log", "ab")
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVEML_")}
    proc = subprocess.Popen([sys.executable, "-m", "liveml_ext.cli", "server", "--port", str(port),
                             "--home", str(home), *args], stdout=log, stderr=subprocess.STDOUT, env=env)
    server = Server(home, port, proc)
    deadline = time.monotonic() + timeout
    while not conn.exists():
        assert proc.poll() is None, (home / "server.log").read_text()
        assert time.monotonic() < deadline, "the control plane did not start"
        time.sleep(0.05)
    doc = json.loads(conn.read_text())
    server.url, server.token = doc["url"], doc["token"]
    return server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A control plane shared by the tests of one module."""
    s = start_server(tmp_path_factory.mktemp("home"))
    yield s
    s.stop()


def deploy_reference(server: Server, house_model: Path, objective: str, name: str,
                     replicas: int = 2, environment: str = "production") -> dict:
    """objective -> submission -> release 1.0 (staging) -> promote -> deployment, ready."""
    c = server.client
    c.create_objective(objective)
    c.submit(objective, house_model, name="v1")
    c.release(objective, "v1", "1.0", tag="staging")
    if environment == "production":
        c.promote(objective, "1.0")
    doc = c.deploy(objective, name=name, replicas=replicas, environment=environment)
    return c.wait(doc["rid"], timeout=120)


def run_notebook(server: Server, monkeypatch: pytest.MonkeyPatch, name: str) -> tuple[object, list]:
    """Execute ``notebooks/<name>.ipynb`` against ``server`` (found through its home, as a user's
    notebook finds it): the executed notebook and its code cells' outputs, none an error."""
    import nbformat
    from nbclient import NotebookClient

    monkeypatch.setenv("LIVEML_HOME", str(server.home))
    monkeypatch.delenv("LIVEML_URL", raising=False)
    monkeypatch.delenv("LIVEML_TOKEN", raising=False)
    path = REPO / "notebooks" / f"{name}.ipynb"
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]
    errors = [o for o in outputs if o.output_type == "error"]
    assert not errors, errors
    return nb, outputs


def query(server: Server, rid: str, rows: list | None = None, **kw) -> requests.Response:
    body = {"requestData": rows if rows is not None else [ROW], "requestParams": {}}
    return requests.post(server.infer_url(rid), json=body, headers=server.headers(), timeout=30, **kw)


def pids_alive(pids: list[int]) -> list[int]:
    alive = []
    for pid in pids:
        try:
            os.kill(pid, 0)
            with open(f"/proc/{pid}/stat") as fh:
                if fh.read().split()[2] != "Z":
                    alive.append(pid)
        except (ProcessLookupError, FileNotFoundError):
            pass
    return alive


def replica_pids(home: Path) -> list[int]:
    """PIDs of replica processes serving from this liveml home."""
    return runtime_pids(str(home))


def runtime_pids(marker: str) -> list[int]:
    """PIDs of live replica processes (``liveml_runtime serve``) with ``marker`` in an argument
    (a liveml home, a deployment RID), whoever started them."""
    out = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"liveml_runtime" in cmd and b"serve" in cmd and any(marker.encode() in c for c in cmd):
            out.append(int(proc.name))
    return pids_alive(out)


def wait_for(predicate, timeout: float = 30, interval: float = 0.1, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(interval)


class QueryLoop(threading.Thread):
    """Queries one deployment as fast as one client can, recording every answer."""

    def __init__(self, server: Server, rid: str, rows: list | None = None,
                 field: str = "prediction") -> None:
        super().__init__(daemon=True)
        self.url, self.headers = server.infer_url(rid), server.headers()
        self.body = {"requestData": rows or [ROW], "requestParams": {}}
        self.field = field
        self.stop = threading.Event()
        self.results: list[tuple[int, object]] = []

    def run(self) -> None:
        session = requests.Session()
        while not self.stop.is_set():
            try:
                resp = session.post(self.url, json=self.body, headers=self.headers, timeout=30)
                value = resp.json()["responseData"][0][self.field] if resp.ok else resp.text
                self.results.append((resp.status_code, value))
            except Exception as exc:  # noqa: BLE001 - recorded as a failure: the loop goes on
                self.results.append((0, repr(exc)))

    def failures(self) -> list[tuple[int, object]]:
        return [r for r in self.results if r[0] != 200]


class Loops:
    """Several QueryLoops started together: ``with Loops(...) as loops:``."""

    def __init__(self, server: Server, rid: str, count: int = 2, **kw) -> None:
        self.loops = [QueryLoop(server, rid, **kw) for _ in range(count)]

    def __enter__(self) -> Loops:
        for loop in self.loops:
            loop.start()
        return self

    def __exit__(self, *exc) -> None:
        for loop in self.loops:
            loop.stop.set()
        for loop in self.loops:
            loop.join(30)

    @property
    def results(self) -> list[tuple[int, object]]:
        return [r for loop in self.loops for r in loop.results]

    def failures(self) -> list[tuple[int, object]]:
        return [r for loop in self.loops for r in loop.failures()]

    def mark(self, in_flight: int = 1) -> list[int]:
        """Where each loop's answers stand now, past the ``in_flight`` queries it may have sent
        before (those can still be answered by what served then)."""
        return [len(loop.results) + in_flight for loop in self.loops]

    def since(self, marks: list[int], more: int = 1, timeout: float = 60) -> list[object]:
        """The values answered after ``marks``, once every loop has ``more`` answers there."""
        wait_for(lambda: all(len(loop.results) >= m + more for loop, m in zip(self.loops, marks)),
                 timeout=timeout, what="answers after the mark")
        return [value for loop, m in zip(self.loops, marks) for _, value in loop.results[m:]]


@pytest.fixture
def fake() -> Iterator[FakeKube]:
    """A recording fake Kubernetes API server (tests/kube_fake.py), for contract tests."""
    server = FakeKube().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def postgresql():
    """A real PostgreSQL server for the session (tests/pg.py): ``postgresql.database()``."""
    from pg import postgresql_server

    yield from postgresql_server()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> str:
    """``""`` (SQLite in the home) or a fresh database on the session's PostgreSQL server."""
    if request.param == "sqlite":
        return ""
    return request.getfixturevalue("postgresql").database()
