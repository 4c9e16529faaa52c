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
import re
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest
import requests
from conftest import free_port, wait_for
from image_rehearsal import Image, build, container_env, new_root
from kube_sim import expand
from test_kubernetes_manifests import CREDENTIALS, RID
from test_kubernetes_manifests import spec as manifest_spec

from liveml_ext.backends.k8s_manifests import render_deployment

#: the first test builds the image (pip installs): more than the suite's 300 s may be needed
pytestmark = pytest.mark.timeout(900)
REPO = Path(__file__).resolve().parents[1]
CONTEXT = REPO / "runtime"  # the Dockerfile's build context
ROW = {"house-location": "New York", "bedrooms": 3, "bathrooms": 1.5}


@dataclass
class RuntimeImage:
    image: Image
    versions: dict[str, str]  # the model libraries, pinned as EXTRA_PACKAGES


@pytest.fixture(scope="module")
def built() -> Iterator[RuntimeImage]:
    root = new_root()
    versions = {name: _version(name) for name in ("scikit-learn", "pandas", "numpy")}
    # as the Dockerfile says: install the libraries (and versions) the models were saved with
    image = build(CONTEXT / "Dockerfile", CONTEXT, root,
                  {"EXTRA_PACKAGES": " ".join(f"{k}=={v}" for k, v in versions.items())})
    yield RuntimeImage(image, versions)
    shutil.rmtree(root, ignore_errors=True)


def _version(name: str) -> str:
    from importlib.metadata import version
    return version(name)


@pytest.fixture(scope="module")
def artifact_server(built: RuntimeImage) -> Iterator[tuple[str, list[dict[str, str]]]]:
    """The reference pipeline's joblib file, served as the control plane does: only to a
    credential for that very artifact."""
    path = built.image.root / "house.joblib"
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
            ok = self.path == f"/liveml/api/artifacts/{digest}" and \
                CREDENTIALS.artifact(seen[-1]["token"]) == digest
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


def test_kubernetes_runtime_image_has_only_what_the_dockerfile_installs(built: RuntimeImage) -> None:
    image = built.image
    assert image.base.startswith("python:3.11")
    assert re.search(r"^USER 10001:10001$", (CONTEXT / "Dockerfile").read_text(), re.M)
    python = [*image.entrypoint[:1], "-c"]
    env = {**image.env, "HOME": str(image.path(image.workdir))}
    home = image.owned(image.workdir)  # not the repository: ``-c`` puts the folder on sys.path
    assert subprocess.run([*python, "import liveml_runtime.server, pandas, sklearn, s3fs"],
                          env=env, cwd=home).returncode == 0
    missing = subprocess.run([*python, "import liveml_ext"], env=env, cwd=home,
                             capture_output=True, text=True)
    assert missing.returncode != 0 and "No module named 'liveml_ext'" in missing.stderr
    assert shutil.which("python", path=env["PATH"]).startswith(str(image.root))


def test_kubernetes_runtime_image_runs_the_rendered_pod(
        built: RuntimeImage, artifact_server: tuple[str, list[dict[str, str]]]) -> None:
    image, (url, seen) = built.image, artifact_server
    port = free_port()
    credential = CREDENTIALS.issue(RID, url.rsplit("/", 1)[-1])  # the pods' own, for this artifact
    spec = manifest_spec(artifact_url=url, port=port, requirements=built.versions,
                         replica_credential=credential, runtime={"env": {"LOG_FORMAT": "json"}})
    pod = render_deployment(spec)["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["command"] == image.entrypoint
    pod_name = "liveml-house-prices-a356e28a-7d9f8c6b5-x2x9q"
    values = container_env(container, pod_name, {})  # no Secret: the pods' own credentials
    argv = [expand(a, values) for a in [*container["command"], *container["args"]]]
    assert argv[argv.index("--node-id") + 1] == pod_name
    assert pod["securityContext"]["runAsUser"] == 10001 and pod["securityContext"]["runAsNonRoot"]
    if image.user:  # as the pod's securityContext runs it
        assert image.user == (pod["securityContext"]["runAsUser"],
                              pod["securityContext"]["runAsGroup"])
    proc = image.popen(argv, {"HOSTNAME": pod_name, **values}, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True)
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
        assert seen == [{"path": url[url.index("/liveml/"):], "token": credential}]
        answer = requests.post(f"{base}/v1/transform",
                               headers={"X-LiveML-Replica-Token": spec.gateway_token},
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
