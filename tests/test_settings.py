"""One declaration per control-plane option (``Settings``): the ``liveml server`` flag, the
Jupyter extension's trait and the ``LIVEML_*`` variable all set it; and the ``Submissions``
service the handlers call."""
from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import requests
from conftest import Server, free_port, terminate, wait_for
from traitlets.config import Config

from liveml_ext.cli import build_parser, run, server_settings
from liveml_ext.controlplane import ControlPlane
from liveml_ext.core.errors import InvalidArgument
from liveml_ext.core.submissions import Submissions
from liveml_ext.extension import LiveMLExtension
from liveml_ext.settings import Option, Settings

OPTIONS = Settings.options()
#: names the README and the docs give; they keep working
DOCUMENTED_FLAGS = ("--home", "--profiles", "--database-url", "--artifact-url", "--image",
                    "--spark-image", "--backend", "--kube-namespace", "--control-plane-url",
                    "--startup-timeout", "--progress-deadline", "--max-json-bytes",
                    "--max-artifact-bytes", "--replica-user", "--max-thread-count",
                    "--pin-cpus", "--metrics-interval", "--log-retention-days")
DOCUMENTED_TRAITS = ("home", "database_url", "artifact_url", "backend", "backend_class",
                     "runtime_image", "spark_runtime_image", "replica_user", "max_body_bytes",
                     "inference_timeout", "kube_namespace", "gateway_route")
#: options added lately that must not be missed in one of the three places
LATE = ("replica_user", "max_json_bytes", "max_artifact_bytes", "lease_ttl", "startup_timeout",
        "progress_deadline", "profiles_file", "max_thread_count", "max_body_bytes",
        "inference_timeout")
PROFILES = {"replicaProfiles": [{"name": "solo", "minReplicas": 1, "maxReplicas": 1}],
            "resourceProfiles": [{"name": "small", "cpu": 0.5, "memory": "512MiB"}]}


def sample(o: Option, tmp: Path) -> tuple[str, Any]:
    """A value other than the default, as text (a flag's, a variable's) and as ``Settings`` has it."""
    if o.kind is bool:
        return "true", True
    if o.choices:
        value = [c for c in o.choices if c != o.default][-1]
        return value, value
    if o.kind in (int, float):
        value = o.kind(o.default + 7)
        return str(value), value
    if o.name == "home":
        return str(tmp / "elsewhere"), (tmp / "elsewhere").resolve()
    return f"/value/of/{o.name}", f"/value/of/{o.name}"


def cli_settings(argv: list[str]) -> Settings:
    """The settings ``liveml server ARGV`` would run with (parsed as ``run`` does)."""
    return server_settings(build_parser().parse_args(["server", *argv]))


def flag_argv(flag: str, o: Option, text: str) -> list[str]:
    return [flag] if o.kind is bool else [flag, text]


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for key in list(os.environ):
        if key.startswith("LIVEML_"):
            monkeypatch.delenv(key)
    return monkeypatch


def test_every_option_is_a_flag_a_trait_and_a_variable(clean_env, tmp_path):
    traits = LiveMLExtension.class_traits(config=True)
    assert {o.name for o in OPTIONS} >= set(LATE)
    for o in OPTIONS:
        text, value = sample(o, tmp_path)
        for flag in o.flags:  # the flag, and the names it had before
            got = getattr(cli_settings(flag_argv(flag, o, text)), o.name)
            assert got == value, f"{flag} {text} gave {o.name}={got!r}"
        assert o.trait in traits, f"LiveMLExtension has no trait {o.trait} for {o.name}"
        assert traits[o.trait].help == o.describe() and o.env in o.describe()
        configured = LiveMLExtension(config=Config({"LiveMLExtension": {o.trait: o.parse(text)}}))
        assert getattr(configured.liveml_settings(), o.name) == value, f"trait {o.trait}"
        with clean_env.context() as env:
            env.setenv(o.env, text)
            assert getattr(Settings.load(), o.name) == value, o.env
            assert getattr(cli_settings([]), o.name) == value, f"{o.env} under liveml server"
            assert getattr(LiveMLExtension().liveml_settings(), o.name) == value, f"{o.env} in Jupyter"


def test_the_documented_names_keep_working(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["server", "--help"])
    flags = set(re.findall(r"--[a-z-]+", capsys.readouterr().out))
    assert set(DOCUMENTED_FLAGS) <= flags, set(DOCUMENTED_FLAGS) - flags
    assert set(DOCUMENTED_TRAITS) <= set(LiveMLExtension.class_traits(config=True))


def test_a_flag_or_a_trait_wins_over_the_variable(clean_env, tmp_path):
    clean_env.setenv("LIVEML_STARTUP_TIMEOUT", "11")
    clean_env.setenv("LIVEML_PIN_CPUS", "yes")
    assert cli_settings([]).startup_timeout == 11.0
    assert cli_settings(["--startup-timeout", "12"]).startup_timeout == 12.0
    assert cli_settings(["--no-pin-cpus"]).pin_cpus is False
    config = Config({"LiveMLExtension": {"startup_timeout": 13.0}})
    assert LiveMLExtension(config=config).liveml_settings().startup_timeout == 13.0
    assert Settings.load(startup_timeout=14.0).startup_timeout == 14.0
    assert Settings.load().pin_cpus is True


def test_a_bad_variable_is_named(clean_env, tmp_path):
    clean_env.setenv("LIVEML_HOME", str(tmp_path / "home"))
    clean_env.setenv("LIVEML_STARTUP_TIMEOUT", "soon")
    with pytest.raises(SystemExit, match="LIVEML_STARTUP_TIMEOUT='soon': give a number, like 300.0"):
        run(["server"])
    clean_env.setenv("LIVEML_STARTUP_TIMEOUT", "5")
    clean_env.setenv("LIVEML_GATEWAY_ROUTE", "carrier-pigeon")
    with pytest.raises(SystemExit, match="unknown gateway_route 'carrier-pigeon': use pods or"):
        run(["server"])
    assert not (tmp_path / "home" / "connection.json").exists()


def too_large(url: str, token: str, limit: int) -> None:
    """An inference body over ``limit`` bytes gets 413 with that limit (before any lookup)."""
    resp = requests.post(f"{url}foundry-ml-live/api/inference/transform/ri.any", timeout=30,
                         data=json.dumps({"requestData": [{"x": "y" * limit}]}),
                         headers={"Authorization": f"Bearer {token}",
                                  "Content-Type": "application/json"})
    assert resp.status_code == 413, resp.text
    assert resp.json()["parameters"]["maxBytes"] == limit


def profile_names(url: str, token: str) -> list[str]:
    resp = requests.get(f"{url}liveml/api/profiles", timeout=30,
                        headers={"Authorization": f"Bearer {token}"})
    assert resp.status_code == 200, resp.text
    return [p["name"] for p in resp.json()["replicaProfiles"] + resp.json()["resourceProfiles"]]


def test_liveml_server_takes_a_flag_and_a_variable(tmp_path, house_model):
    """``--max-body-bytes`` (the CLI had no such flag) and ``LIVEML_PROFILES_FILE`` reach a
    real ``liveml server``; a submission goes through the Submissions service."""
    home, port = tmp_path / "home", free_port()
    (tmp_path / "profiles.json").write_text(json.dumps(PROFILES))
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVEML_")}
    env["LIVEML_PROFILES_FILE"] = str(tmp_path / "profiles.json")
    home.mkdir()
    with open(home / "server.log", "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "liveml_ext.cli", "server", "--port",
                                 str(port), "--home", str(home), "--max-body-bytes", "300"],
                                stdout=log, stderr=subprocess.STDOUT, env=env)
    server = Server(home, port, proc)
    try:
        wait_for(lambda: (home / "connection.json").exists() or proc.poll() is not None,
                 timeout=60, what="liveml server")
        assert proc.poll() is None, (home / "server.log").read_text()
        doc = json.loads((home / "connection.json").read_text())
        server.url, server.token = doc["url"], doc["token"]
        too_large(server.url, server.token, 300)
        assert profile_names(server.url, server.token) == ["solo", "small"]
        c = server.client
        c.create_objective("settings")
        sub = c.submit("settings", house_model, name="ridge")
        assert sub["name"] == "ridge" and sub["api"]["inputs"]
    finally:
        terminate(proc)


def test_jupyter_takes_a_trait_and_a_variable(tmp_path):
    """``LiveMLExtension.profiles_file`` (the extension had no such trait) and
    ``LIVEML_MAX_BODY_BYTES`` reach the control plane a real Jupyter server hosts."""
    home, port = tmp_path / "jhome", free_port()
    home.mkdir()
    (tmp_path / "profiles.json").write_text(json.dumps(PROFILES))
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVEML_")}
    env.update(LIVEML_HOME=str(home), LIVEML_MAX_BODY_BYTES="400",
               JUPYTER_RUNTIME_DIR=str(home / "jupyter-runtime"))
    with open(home / "jupyter.log", "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "jupyter", "server", "--no-browser", f"--port={port}",
             "--ServerApp.ip=127.0.0.1", "--allow-root", "--IdentityProvider.token=jt",
             f"--ServerApp.root_dir={home}",
             f"--LiveMLExtension.profiles_file={tmp_path / 'profiles.json'}"],
            stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        conn = home / "connection.json"
        wait_for(lambda: conn.exists() or proc.poll() is not None, timeout=60, what="jupyter")
        assert proc.poll() is None, (home / "jupyter.log").read_text()
        doc = json.loads(conn.read_text())
        assert profile_names(doc["url"], doc["token"]) == ["solo", "small"]
        too_large(doc["url"], doc["token"], 400)
    finally:
        terminate(proc)


def test_submissions_is_a_service_of_its_own(clean_env, tmp_path):
    """The control plane wires a ``Submissions`` (with its sandbox); it holds no submit."""
    cp = ControlPlane(Settings(home=tmp_path / "home"))
    try:
        assert isinstance(cp.submissions, Submissions) and cp.submissions.sandbox is cp.sandbox
        for gone in ("submit", "inspect", "put_artifact", "input_example"):
            assert not hasattr(cp, gone), f"ControlPlane.{gone} is Submissions' job"
        empty = tmp_path / "empty"
        empty.write_bytes(b"")
        with pytest.raises(InvalidArgument, match="the model artifact is empty"):
            cp.submissions.put_artifact(str(empty), "0" * 64, 0)
    finally:
        asyncio.run(cp.stop())
