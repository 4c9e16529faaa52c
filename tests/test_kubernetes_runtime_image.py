"""The replica image rehearsed without Docker: runtime/Dockerfile's own steps, run on this machine.

There is no Docker engine here, so the image is never built in CI. This test does what the
Dockerfile says and nothing more: a fresh virtualenv (no liveml_ext, no project install) gets
exactly the Dockerfile's ``RUN`` steps (its ``pip install``s, with the build arguments a release
needs), ``liveml_runtime`` is copied where its ``COPY`` puts it, and ``ENV`` is the environment.
Then it starts the container as the rendered Deployment says (command, args, env with ``$(VAR)``
expansion, ``fieldRef`` and ``secretKeyRef``), as the image's ``USER`` when the test runs as
root, and plays the kubelet: the startup, readiness and liveness probes, a query, and SIGTERM
within ``terminationGracePeriodSeconds``. The artifact comes over HTTP with the replica token, as
from the control plane's ``/liveml/api/artifacts/<sha256>``.

What it cannot show: the base image's OS (python:3.11-slim-bookworm) and the Spark variant's JDK.
"""
from __future__ import annotations

import hashlib
import http.server
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pytest
import requests
from conftest import free_port, wait_for
from kube_sim import expand
from test_kubernetes_manifests import spec as manifest_spec

from liveml_ext.backends.k8s_manifests import render_deployment

REPO = Path(__file__).resolve().parents[1]
CONTEXT = REPO / "runtime"  # the Dockerfile's build context
TOKEN = "rehearsal-replica-token"
ROW = {"house-location": "New York", "bedrooms": 3, "bathrooms": 1.5}


@dataclass
class Image:
    """The image's file system (under ``root``) and its configuration."""

    root: Path
    env: dict[str, str] = field(default_factory=dict)
    user: tuple[int, int] | None = None
    workdir: str = "/"
    entrypoint: list[str] = field(default_factory=list)
    base: str = ""
    versions: dict[str, str] = field(default_factory=dict)  # the model libraries pinned

    def path(self, inside: str) -> Path:
        return self.root / inside.lstrip("/")

    def rooted(self, text: str) -> str:
        """Absolute paths of the image's own folders, moved under ``root``."""
        return re.sub(r"(?<![\w/])/(opt|home)/", lambda m: f"{self.root}/{m.group(1)}/", text)


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", "\n".join(line for line in dockerfile.read_text().splitlines()
                                          if not line.lstrip().startswith("#")))
    return [(parts[0].upper(), parts[1].strip() if len(parts) > 1 else "")
            for line in text.splitlines() if line.strip() for parts in [line.strip().split(None, 1)]]


def base_python() -> str:
    """The Python the base image stands on: the system's (any user may run it, as in the image)
    when it is 3.11 or newer with venv, else this one."""
    system = "/usr/bin/python3"
    check = "import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 11))"
    if os.path.exists(system) and subprocess.run([system, "-c", check]).returncode == 0:
        return system
    return sys.executable


def runs_for_anyone(path: str) -> bool:
    """Whether every folder above ``path`` lets other users through (``/root`` does not)."""
    real = Path(os.path.realpath(path))
    return all(os.stat(p).st_mode & 0o001 for p in real.parents)


def build(root: Path, build_args: dict[str, str], python: str) -> Image:
    """Run the Dockerfile's steps into ``root``: a virtualenv stands for the base image's Python."""
    image = Image(root)
    venv = root / "usr" / "local"
    subprocess.run([python, "-m", "venv", str(venv)], check=True)
    args: dict[str, str] = {}
    for op, rest in instructions(CONTEXT / "Dockerfile"):
        if op == "FROM":
            image.base = rest
        elif op == "ARG":
            name, _, default = rest.partition("=")
            args[name] = build_args.get(name, shlex.split(default)[0] if default.strip() else "")
        elif op == "ENV":
            for pair in shlex.split(rest):
                key, _, value = pair.partition("=")
                image.env[key] = image.rooted(value)
        elif op == "RUN":
            if "useradd" in rest:  # users are not made on this machine: USER's ids are used
                continue
            env = {**os.environ, **image.env, **args, "PATH": f"{venv / 'bin'}:{os.environ['PATH']}",
                   "VIRTUAL_ENV": str(venv)}
            subprocess.run(["bash", "-ec", image.rooted(rest)], env=env, check=True)
        elif op == "COPY":
            src, dst = shlex.split(rest)
            shutil.copytree(CONTEXT / src, image.path(dst), ignore=shutil.ignore_patterns(
                "__pycache__"))
        elif op == "USER":
            uid, _, gid = rest.partition(":")
            image.user = (int(uid), int(gid or uid))
        elif op == "WORKDIR":
            image.workdir = rest
        elif op == "ENTRYPOINT":
            image.entrypoint = list(eval(rest))  # noqa: S307 - the JSON form, a list literal
    image.env["PATH"] = f"{venv / 'bin'}:/usr/bin:/bin"
    return image


@pytest.fixture(scope="module")
def image() -> Iterator[Image]:
    # a folder other users may enter (pytest's tmp_path is private to its user)
    root = Path(tempfile.mkdtemp(prefix="liveml-image-"))
    root.chmod(0o755)
    versions = {name: _version(name) for name in ("scikit-learn", "pandas", "numpy")}
    python = base_python()
    # as the Dockerfile says: install the libraries (and versions) the models were saved with
    image = build(root, {"EXTRA_PACKAGES": " ".join(f"{k}=={v}" for k, v in versions.items())},
                  python)
    image.versions = versions
    home = image.path(image.workdir)
    home.mkdir(parents=True, exist_ok=True)
    if image.user and os.geteuid() == 0 and runs_for_anyone(python):
        os.chown(home, *image.user)
    else:  # not root, or a Python only its owner may run: the test's own user runs the pod
        image.user = None
    yield image
    shutil.rmtree(root, ignore_errors=True)


def _version(name: str) -> str:
    from importlib.metadata import version
    return version(name)


@pytest.fixture(scope="module")
def artifact_server(image: Image) -> Iterator[tuple[str, list[dict[str, str]]]]:
    """The reference pipeline's joblib file behind a token, as the control plane serves it."""
    path = image.root / "house.joblib"
    subprocess.run([sys.executable, str(REPO / "notebooks" / "house_model.py"), str(path)],
                   check=True, capture_output=True)
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    seen: list[dict[str, str]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            seen.append({"path": self.path, "token": self.headers.get("X-LiveML-Replica-Token", "")})
            ok = self.path == f"/liveml/api/artifacts/{digest}" and seen[-1]["token"] == TOKEN
            body = data if ok else b'{"errorCode":"PERMISSION_DENIED"}'
            self.send_response(200 if ok else 403)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/liveml/api/artifacts/{digest}", seen
    server.shutdown()
    server.server_close()


def container_env(container: dict[str, Any], pod_name: str) -> dict[str, str]:
    """The kubelet's env: fieldRef metadata.name, the token Secret, ``$(VAR)`` expansion."""
    values: dict[str, str] = {}
    for item in container.get("env") or []:
        source = item.get("valueFrom")
        if source is None:
            values[item["name"]] = expand(str(item.get("value", "")), values)
        elif source.get("fieldRef", {}).get("fieldPath") == "metadata.name":
            values[item["name"]] = pod_name
        elif source.get("secretKeyRef", {}).get("key") == "token":
            values[item["name"]] = TOKEN
        else:
            raise AssertionError(f"the rehearsal does not resolve {item}")
    return values


def test_kubernetes_runtime_image_has_only_what_the_dockerfile_installs(image: Image) -> None:
    assert image.base.startswith("python:3.11")
    assert re.search(r"^USER 10001:10001$", (CONTEXT / "Dockerfile").read_text(), re.M)
    python = [*image.entrypoint[:1], "-c"]
    env = {**image.env, "HOME": str(image.path(image.workdir))}
    home = image.path(image.workdir)  # not the repository: ``-c`` puts the folder on sys.path
    assert subprocess.run([*python, "import liveml_runtime.server, pandas, sklearn, s3fs"],
                          env=env, cwd=home).returncode == 0
    missing = subprocess.run([*python, "import liveml_ext"], env=env, cwd=home,
                             capture_output=True, text=True)
    assert missing.returncode != 0 and "No module named 'liveml_ext'" in missing.stderr
    assert shutil.which("python", path=env["PATH"]).startswith(str(image.root))


def test_kubernetes_runtime_image_runs_the_rendered_pod(
        image: Image, artifact_server: tuple[str, list[dict[str, str]]]) -> None:
    url, seen = artifact_server
    port = free_port()
    spec = manifest_spec(artifact_url=url, port=port, requirements=image.versions,
                         runtime={"env": {"LOG_FORMAT": "json"}})
    pod = render_deployment(spec)["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["command"] == image.entrypoint
    pod_name = "liveml-house-prices-a356e28a-7d9f8c6b5-x2x9q"
    values = container_env(container, pod_name)
    argv = [expand(a, values) for a in [*container["command"], *container["args"]]]
    assert argv[argv.index("--node-id") + 1] == pod_name
    env = {**image.env, "HOME": str(image.path(image.workdir)), "HOSTNAME": pod_name, **values}
    as_user = dict(user=image.user[0], group=image.user[1], extra_groups=[]) \
        if image.user and os.geteuid() == 0 else {}
    assert pod["securityContext"]["runAsUser"] == 10001 and pod["securityContext"]["runAsNonRoot"]
    if image.user:  # as the pod's securityContext runs it
        assert image.user == (pod["securityContext"]["runAsUser"],
                              pod["securityContext"]["runAsGroup"])
    proc = subprocess.Popen(argv, env=env, cwd=image.path(image.workdir), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, **as_user)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    reader.start()
    base = f"http://127.0.0.1:{port}"

    def probe(name: str) -> int:
        get = container[name]["httpGet"]
        assert get["port"] == "http" and container["ports"][0]["containerPort"] == port
        try:
            return requests.get(base + get["path"], timeout=container[name]["timeoutSeconds"]
                                ).status_code
        except requests.ConnectionError:
            return 0

    try:
        startup = container["startupProbe"]
        wait_for(lambda: probe("startupProbe") == 200 or proc.poll() is not None,
                 timeout=startup["periodSeconds"] * startup["failureThreshold"],
                 what="the startup probe")
        assert proc.poll() is None, "".join(lines)
        if image.user:
            assert psutil.Process(proc.pid).uids().real == image.user[0]
        assert probe("readinessProbe") == 200 and probe("livenessProbe") == 200
        assert seen == [{"path": url[url.index("/liveml/"):], "token": TOKEN}]
        answer = requests.post(f"{base}/v1/transform", headers={"X-LiveML-Replica-Token": TOKEN},
                               json={"requestData": [ROW], "requestParams": {}}, timeout=30)
        assert answer.status_code == 200, answer.text
        assert answer.json()["responseData"][0]["prediction"] > 0
        refused = requests.post(f"{base}/v1/transform", json={"requestData": [ROW]}, timeout=30)
        assert refused.status_code == 401
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(pod["terminationGracePeriodSeconds"]) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reader.join(10)
    log = "".join(lines)
    for step in ("Downloaded the model artifact", "required packages match", "Replica ready",
                 "Draining", "Replica stopped"):
        assert step in log, (step, log)
    assert log.rstrip().splitlines()[-1].find("Replica stopped") != -1
