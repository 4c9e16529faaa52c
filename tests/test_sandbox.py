"""Issue 13 points 1 and 6: model code runs with no more than its submitter's rights.

A planted model (a pickle whose ``__reduce__`` runs code when it is loaded) tries, at inspection
and in the replica, to read the connection file (the admin token), the database, the home's
listing, the control plane's environment through /proc, and reports what it got: in the
inspection's error (the probe fails the load on purpose) or in the replica's log (the probe
then loads a real model). It gets nothing; its environment holds none of the server's
variables; and its own credential reads its own artifact only, never another namespace's.
"""
from __future__ import annotations

import base64
import json
import pickle
import re
from collections.abc import Iterator
from pathlib import Path

import joblib
import pytest
import requests
from conftest import ROW, Server, query, start_server, wait_for

from liveml_ext.client import LiveMLClientError

SECRETS = {"PGPASSWORD": "pg-secret-probe", "AWS_SECRET_ACCESS_KEY": "aws-secret-probe"}
MARK = "LIVEML-PROBE "
# what a model process may find in its environment: the runtime's own variables and the spec's
ALLOWED_ENV = {"PATH", "LANG", "TZ", "HOME", "TMPDIR", "PYTHONNOUSERSITE", "PYTHONUNBUFFERED",
               "PYTHONPATH", "JAVA_HOME", "SPARK_HOME", "LD_LIBRARY_PATH", "OMP_NUM_THREADS",
               "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "CUDA_VISIBLE_DEVICES",
               "LIVEML_MEMORY_LIMIT", "LIVEML_REPLICA_TOKEN", "KMP_DUPLICATE_LIB_OK",
               "KMP_INIT_AT_FORK", "MODEL_SETTING"}

PROBE = '''
import base64, json, logging, os, pickle
found = {}
def attempt(name, read):
    try:
        found[name] = "GOT " + repr(read())[:300]
    except Exception as exc:
        found[name] = "denied: " + type(exc).__name__
attempt("connection", lambda: open(HOME + "/connection.json").read())
attempt("database", lambda: open(HOME + "/liveml.db", "rb").read(64))
attempt("listing", lambda: os.listdir(HOME))
attempt("environ", lambda: open("/proc/%d/environ" % CP_PID, "rb").read())
def others():  # the environments of the other model processes (other namespaces' replicas)
    pids = [p for p in os.listdir("/proc") if p.isdigit() and int(p) != os.getpid()
            and b"liveml_runtime" in open("/proc/%s/cmdline" % p, "rb").read()]
    got = []
    for p in pids:
        try:
            got.append(open("/proc/%s/environ" % p, "rb").read())
        except OSError:
            pass
    if not pids:
        return "no other replica"
    if not got:
        raise PermissionError(len(pids))
    return got
attempt("replicas", others)
found["env"] = dict(os.environ)
if MODEL is None:
    raise RuntimeError(MARKER + base64.b64encode(json.dumps(found).encode()).decode())
logging.getLogger("liveml.replica").warning(MARKER + base64.b64encode(json.dumps(found).encode())
                                            .decode())
result = pickle.loads(MODEL)
'''


class Planted:
    """Unpickles by running ``PROBE``; then it is the pickled ``model`` (None: the load fails)."""

    def __init__(self, home: Path, cp_pid: int, model: bytes | None) -> None:
        self.args = {"HOME": str(home), "CP_PID": cp_pid, "MODEL": model, "MARKER": MARK}

    def __reduce__(self):
        code = "".join(f"{k} = {v!r}\n" for k, v in self.args.items()) + PROBE
        return eval, (f"exec({code!r}, (g := {{}})) or g['result']",)


def planted(tmp_path: Path, server: Server, model: bytes | None, name: str) -> Path:
    path = tmp_path / f"{name}.joblib"
    joblib.dump(Planted(server.home, server.proc.pid, model), path)
    return path


def findings(text: str) -> dict:
    """What the probe reported (base64 JSON after the mark, whatever quoting it went through)."""
    match = re.search(re.escape(MARK) + r"([A-Za-z0-9+/=]+)", text)
    assert match, text
    return json.loads(base64.b64decode(match[1]))


def assert_confined(found: dict, names: tuple[str, ...] = ("connection", "database", "listing",
                                                           "environ")) -> None:
    for name in names:
        assert found[name].startswith("denied"), (name, found[name])
    env = found["env"]
    assert not set(env) - ALLOWED_ENV, sorted(set(env) - ALLOWED_ENV)
    assert not set(SECRETS.values()) & set(env.values())
    assert "LIVEML_HOME" not in env and "LIVEML_TOKEN" not in env


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A control plane with secrets in its own environment."""
    mp = pytest.MonkeyPatch()
    for k, v in SECRETS.items():
        mp.setenv(k, v)
    try:
        s = start_server(tmp_path_factory.mktemp("home"))
    finally:
        mp.undo()
    yield s
    s.stop()


def test_inspection_cannot_read_the_home_nor_the_server_environment(
        server: Server, tmp_path: Path) -> None:
    c = server.client
    c.create_objective("probe-inspect")
    with pytest.raises(LiveMLClientError) as err:
        c.submit("probe-inspect", planted(tmp_path, server, None, "inspect"), name="v1")
    assert MARK in str(err.value), str(err.value)
    assert_confined(findings(str(err.value)))


def test_replica_is_confined_and_its_credential_reads_only_its_own_artifact(
        server: Server, tmp_path: Path, house_model: Path) -> None:
    c = server.client
    c.create_objective("other", namespace="other-team")  # another namespace's model, serving
    other = c.submit("other", house_model, name="v1")
    c.release("other", "v1", "1.0", tag="staging")
    c.promote("other", "1.0")
    other_rid = c.wait(c.deploy("other", name="other", replicas=1, runtime={
        "env": {"OTHER_TEAM_SECRET": "other-secret"}})["rid"], timeout=120)["rid"]
    model = pickle.dumps(joblib.load(house_model))
    c.create_objective("probe-serve", namespace="attacker")
    artifact = planted(tmp_path, server, model, "serve")
    mine = c.submit("probe-serve", artifact, name="v1")
    c.release("probe-serve", "v1", "1.0", tag="staging")
    c.promote("probe-serve", "1.0")
    doc = c.deploy("probe-serve", name="probe-serve", replicas=1,
                   runtime={"env": {"MODEL_SETTING": "on"}})
    rid = c.wait(doc["rid"], timeout=120)["rid"]
    assert query(server, rid).status_code == 200  # the model serves

    rows = wait_for(lambda: c.logs(rid, query=f'"{MARK.strip()}"', since="1h")["data"],
                    timeout=30, what="the probe's log record")
    found = findings(json.dumps(rows[0]))
    assert_confined(found, ("connection", "database", "listing", "environ", "replicas"))
    assert "other-secret" not in json.dumps(found)
    assert found["env"]["MODEL_SETTING"] == "on"  # the spec's env does reach it
    token = found["env"]["LIVEML_REPLICA_TOKEN"]

    def fetch(sha: str) -> requests.Response:
        return requests.get(f"{server.url}liveml/api/artifacts/{sha}", timeout=30,
                            headers={"X-LiveML-Replica-Token": token})

    assert fetch(other["artifactSha256"]).status_code in (403, 404)
    own = fetch(mine["artifactSha256"])  # the credential works, for its own artifact only
    assert own.status_code == 200 and own.content == artifact.read_bytes(), own.text

    # nor does it open another replica: each checks its own credential
    url = c.deployment(other_rid)["status"]["replicas"][0]["url"]
    body = {"requestData": [ROW], "requestParams": {}}
    assert requests.post(f"{url}/v1/transform", json=body, timeout=30,
                         headers={"X-LiveML-Replica-Token": token}).status_code == 401
    assert query(server, other_rid).status_code == 200  # while the gateway's own still works


def test_a_model_process_writes_only_its_own_folder_and_reads_no_folder_holding_the_home(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The allow-list never opens the home through an import path entry that holds it (e.g. a
    notebook's cwd), and the process writes its TMPDIR but nothing else (not /tmp)."""
    import subprocess
    import sys

    from liveml_ext.sandbox import Sandbox

    home = tmp_path / "home"
    home.mkdir()
    (home / "connection.json").write_text("admin")
    monkeypatch.setattr(sys, "path", [str(tmp_path), *sys.path])
    sandbox = Sandbox(home, user="")
    try:
        assert sandbox.landlock, "this kernel has no Landlock"
        assert str(tmp_path) not in sandbox.readable()
        private = sandbox.private("unit")
        code = ("import os, sys, tempfile\n"
                "tempfile.mkstemp()\n"  # its TMPDIR: allowed
                "for path in (sys.argv[1] + '/planted', sys.argv[2] + '/connection.json'):\n"
                "    try:\n"
                "        open(path, 'a').close(); print('GOT', path)\n"
                "    except OSError as exc:\n"
                "        print('denied', exc.errno)\n")
        with sandbox.process(private, {}) as kw:
            out = subprocess.run([sandbox.python, "-c", code, str(tmp_path), str(home)],
                                 capture_output=True, text=True, timeout=120, **kw)
        assert out.returncode == 0, out.stderr
        assert out.stdout.split("\n")[:2] == ["denied 13", "denied 13"], out.stdout
        assert not (tmp_path / "planted").exists()
    finally:
        sandbox.close()


def test_an_unknown_replica_user_stops_the_server_with_what_to_do(tmp_path: Path) -> None:
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "liveml_ext.cli", "server", "--port", "0",
                          "--home", str(tmp_path / "home"), "--replica-user", "no-such-user-x"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode != 0
    assert "replica user 'no-such-user-x' does not exist" in out.stderr, out.stderr
    assert "Traceback" not in out.stderr, out.stderr


def test_a_restarted_control_plane_clears_what_a_crashed_one_left(tmp_path: Path) -> None:
    """Private folders (with their artifact copies) live in one folder per home, made afresh."""
    from liveml_ext.sandbox import Sandbox

    first = Sandbox(tmp_path / "home", user="")
    left = first.private("node-1")
    (left / "model.joblib").write_bytes(b"copy")  # the control plane was killed: nothing ran
    second = Sandbox(tmp_path / "home", user="")
    try:
        assert second.root == first.root and second.root.stat().st_mode & 0o777 == 0o711
        assert second.private("node-2").parent == second.root and not left.exists()
    finally:
        second.close()
