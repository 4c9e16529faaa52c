"""One control plane per home, and a private home: real servers, real files, real modes."""
from __future__ import annotations

import asyncio
import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from conftest import (
    Server,
    deploy_reference,
    free_port,
    query,
    replica_pids,
    start_server,
    wait_for,
)

from liveml_ext.controlplane import ControlPlane, Settings
from liveml_ext.core.errors import HomeInUse, HomeNotPrivate
from liveml_ext.store.home import secure_home


def server_cmd(home: Path, port: int | None = None) -> list[str]:
    return [sys.executable, "-m", "liveml_ext.cli", "server", "--port", str(port or free_port()),
            "--home", str(home)]


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("LIVEML_")}


def launch(home: Path, log: Path, umask: int) -> Server:
    """``liveml server`` under ``umask``, its output outside the home (which it creates)."""
    port = free_port()
    with open(log, "ab") as out:
        proc = subprocess.Popen(server_cmd(home, port), stdout=out, stderr=subprocess.STDOUT,
                                env=clean_env(), preexec_fn=lambda: os.umask(umask))
    server = Server(home, port, proc)
    conn = home / "connection.json"
    deadline = time.monotonic() + 60
    while not conn.exists():
        assert proc.poll() is None, log.read_text()
        assert time.monotonic() < deadline, "the control plane did not start"
        time.sleep(0.05)
    doc = json.loads(conn.read_text())
    server.url, server.token = doc["url"], doc["token"]
    return server


def loose(home: Path) -> list[str]:
    """Everything under ``home`` (itself included) not 0700 (folders) or 0600 (files)."""
    out = []
    for path in [home, *home.rglob("*")]:
        if path.is_symlink():
            continue
        want = 0o700 if path.is_dir() else 0o600
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode != want:
            out.append(f"{mode:04o} {path.relative_to(home)}")
    return out


def refused(home: Path) -> subprocess.CompletedProcess:
    """A second ``liveml server`` on ``home``: it must exit on its own, non-zero."""
    done = subprocess.run(server_cmd(home), capture_output=True, text=True, env=clean_env(),
                          timeout=60)
    assert done.returncode != 0, done.stderr
    return done


def test_a_second_server_on_a_home_refuses_naming_the_first(house_model, tmp_path):
    home = tmp_path / "home"
    first = start_server(home)
    try:
        rid = deploy_reference(first, house_model, "one-home", "One home", replicas=1)["rid"]
        conn = home / "connection.json"
        before = (conn.read_bytes(), conn.stat().st_mtime_ns)
        replicas = replica_pids(home)
        assert len(replicas) == 1

        err = refused(home).stderr
        assert "another liveml control plane runs on the home" in err
        assert f"pid {first.proc.pid}" in err and first.url in err and "--home" in err
        assert (conn.read_bytes(), conn.stat().st_mtime_ns) == before  # untouched
        assert replica_pids(home) == replicas  # no replica of its own
        assert query(first, rid).status_code == 200
        lock = json.loads((home / "liveml.lock").read_text())
        assert lock["pid"] == first.proc.pid and lock["url"] == first.url
    finally:
        first.stop()
    assert (home / "liveml.lock").read_text() == ""  # stop releases it: the next one starts
    again = start_server(home)
    again.stop()


def test_stop_releases_the_home_for_the_next_control_plane_in_one_process(tmp_path):
    settings = Settings(home=tmp_path / "home")
    cp = ControlPlane(settings)
    with pytest.raises(HomeInUse) as err:
        ControlPlane(settings)
    assert str(os.getpid()) in err.value.message
    asyncio.run(cp.stop())
    asyncio.run(ControlPlane(settings).stop())


@pytest.mark.parametrize("umask", [0o022, 0o000], ids=["umask022", "umask000"])
def test_every_file_in_the_home_is_private_whatever_the_umask(house_model, tmp_path, umask):
    home = tmp_path / "home"
    server = launch(home, tmp_path / "server.log", umask)
    try:
        rid = deploy_reference(server, house_model, "private", "Private", replicas=1)["rid"]
        assert query(server, rid).status_code == 200
        server.client.logs(rid)  # the replica's log shipped into logs.db
        names = {p.name for p in home.rglob("*")}
        assert {"liveml.db", "logs.db", "metrics.db", "connection.json", "liveml.lock",
                "artifacts", "logs"} <= names, names  # (replicas run in their sandbox folders)
        assert any(p.suffix == ".log" for p in (home / "logs").rglob("*"))
        assert loose(home) == []
    finally:
        server.stop()
    assert loose(home) == []


def test_an_old_world_readable_home_is_tightened_at_start(house_model, tmp_path):
    home = tmp_path / "home"
    server = start_server(home)
    server.client.create_objective("old-home")
    server.stop()
    for path in [home, *home.rglob("*")]:  # as older versions left it: 0755 and 0644
        path.chmod(0o755 if path.is_dir() else 0o644)
    server = start_server(home)
    try:
        assert server.client.api("GET", "objectives")["data"]
        assert loose(home) == []
        log = (home / "server.log").read_text()
        assert "was readable by other users (mode 0755): made it 0700" in log
    finally:
        server.stop()


def test_a_home_others_can_write_or_own_is_refused_with_the_command_to_run(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    home.chmod(0o777)
    err = refused(home).stderr
    assert f"`chmod -R go-rwx {home}`" in err and "writable by other users" in err
    assert not (home / "connection.json").exists() and list(home.iterdir()) == []
    with pytest.raises(HomeNotPrivate):
        ControlPlane(Settings(home=home))

    other = tmp_path / "other"
    other.mkdir(mode=0o700)
    os.chown(other, 65534, 65534)  # nobody's (the suite runs as root, as CI does)
    err = refused(other).stderr
    assert "belongs to uid 65534, not to this user" in err and "chown" in err

    # but a Kubernetes volume of the pod's fsGroup (set-group-ID, our group, g+rw) is the pod's
    volume = tmp_path / "volume"
    volume.mkdir()
    os.chown(volume, 65534, os.getegid())
    volume.chmod(0o2770)
    (volume / "liveml.db").write_bytes(b"")
    (volume / "liveml.db").chmod(0o644)
    assert secure_home(volume) == volume
    assert stat.S_IMODE(volume.stat().st_mode) == 0o2770 and loose(volume) == ["2770 ."]
    volume.chmod(0o770)  # no set-group-ID bit: not such a volume
    with pytest.raises(HomeNotPrivate):
        secure_home(volume)


def role(server: Server) -> str:
    return requests.get(server.url, headers=server.headers(), timeout=30).json()["role"]


def test_on_one_postgresql_a_second_control_plane_is_a_standby_until_the_leader_dies(
        house_model, tmp_path, postgresql):
    shared = ("--database-url", postgresql.database(), "--artifact-url", str(tmp_path / "artifacts"))
    leader = start_server(tmp_path / "a", args=shared)
    standby = None
    try:
        assert role(leader) == "leader"
        rid = deploy_reference(leader, house_model, "leased", "Leased", replicas=1)["rid"]
        standby = start_server(tmp_path / "b", args=shared)
        assert role(standby) == "standby"
        assert "standby: the controller runs in the control plane" in \
            (tmp_path / "b" / "server.log").read_text()
        assert standby.client.deployment(rid)["status"]["state"] == "ACTIVE"  # the API serves
        assert replica_pids(tmp_path / "b") == []  # but it does not reconcile

        os.kill(leader.proc.pid, signal.SIGKILL)
        leader.proc.wait()
        wait_for(lambda: role(standby) == "leader", timeout=60, what="the standby to take over")
        wait_for(lambda: replica_pids(tmp_path / "b"), timeout=60, what="its replica")
        answers = []
        try:
            wait_for(lambda: answers.append(query(standby, rid)) or answers[-1].ok, timeout=60)
        except AssertionError:
            raise AssertionError(f"the standby does not serve: {answers[-1].text}") from None
        doc = standby.client.wait(rid, timeout=120)
        assert doc["rid"] == rid and doc["status"]["state"] == "ACTIVE"
        assert "leader: this control plane holds the controller lease" in \
            (tmp_path / "b" / "server.log").read_text()
    finally:
        leader.stop()
        if standby is not None:
            standby.stop()


def test_an_older_database_gets_the_new_nullable_columns(database_url, tmp_path, caplog):
    """A database made before a nullable column existed (here: without ``releases.tag`` and
    ``tokens.namespace``) gains it at start, keeps its rows, and the columns work."""
    from sqlalchemy import create_engine, inspect, text

    from liveml_ext.store.db import Base, Namespace, Store, Token

    url = database_url or f"sqlite:///{tmp_path / 'liveml.db'}"
    engine = create_engine(url)
    Base.metadata.create_all(engine)
    with engine.begin() as conn:  # the older shape, with a row
        conn.execute(text("ALTER TABLE releases DROP COLUMN tag"))
        conn.execute(text("ALTER TABLE tokens DROP COLUMN namespace"))
        conn.execute(text("INSERT INTO tokens (id, token_hash, scope, description, created_at) "
                          "VALUES ('old', 'digest', 'admin', 'from before', "
                          "CURRENT_TIMESTAMP)"))
    engine.dispose()

    store = Store(url)
    try:
        assert "releases.tag" in caplog.text and "tokens.namespace" in caplog.text
        columns = inspect(store.engine)
        assert "tag" in {c["name"] for c in columns.get_columns("releases")}
        assert store.migrate() == []  # the constructor did it
        with store.session() as s:
            assert s.get(Token, "old").namespace is None
            s.add(Namespace(name="ns"))
            s.add(Token(id="new", token_hash="d2", scope="query", namespace="ns"))
        with store.session() as s:
            assert s.get(Token, "new").namespace == "ns"
    finally:
        store.close()
    engine = create_engine(url)
    Base.metadata.drop_all(engine)  # and again from scratch: nothing to add
    engine.dispose()
    fresh = Store(url)
    assert fresh.migrate() == []
    fresh.close()
