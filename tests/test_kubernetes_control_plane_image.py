"""The control-plane image rehearsed without Docker, run as the kustomize install runs it.

``deploy/Dockerfile``'s steps go into a fresh virtualenv (tests/image_rehearsal.py): the project
installed from its copied sources with the Dockerfile's extra packages, nothing else. Then
``deploy/kubernetes/deployment.yaml``'s container starts there: the image's ENTRYPOINT with the
install's args and env, as uid 10001 with the home volume mounted at ``/var/lib/liveml``. It
talks to the simulated cluster (tests/kube_sim.py): a model is submitted, deployed to pods,
queried through the control plane's gateway, and the control plane stops on SIGTERM within its
grace period while the pods serve on.

Two things stand in for the cluster's own: ``KUBECONFIG`` for the pod's service account (in a
cluster, in-cluster config reads files at fixed paths and needs an HTTPS API server), and an
overlay's values for ``--port`` and ``--control-plane-url`` (pods reach this machine on loopback,
not through the Service's DNS name).
"""
from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import yaml
from conftest import free_port, wait_for
from image_rehearsal import Image, build, container_env, new_root
from kube_sim import KubeSim
from test_kubernetes_backend import kubeconfig

from liveml_ext.client import Client

#: the first test builds the image (pip installs): more than the suite's 300 s may be needed
pytestmark = pytest.mark.timeout(900)
REPO = Path(__file__).resolve().parents[1]
INSTALL = REPO / "deploy" / "kubernetes"
ROW = {"house-location": "New York", "bedrooms": 3, "bathrooms": 1.5}


@pytest.fixture(scope="module")
def image() -> Iterator[Image]:
    root = new_root()
    yield build(REPO / "deploy" / "Dockerfile", REPO, root, {})
    shutil.rmtree(root, ignore_errors=True)


def test_kubernetes_control_plane_image_has_what_the_install_needs(image: Image) -> None:
    python = shutil.which("python", path=image.env["PATH"])
    assert python and python.startswith(str(image.root))
    check = ("import liveml_ext.server, liveml_runtime, kubernetes, psycopg, s3fs, sqlalchemy; "
             "print(liveml_ext.__file__)")
    out = subprocess.run([python, "-c", check], env=image.env, cwd=image.owned(image.workdir),
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(str(image.root))  # installed in the image, not this checkout
    assert not image.path("/src").exists()  # the Dockerfile removes its sources


def test_kubernetes_control_plane_image_runs_the_install(image: Image, tmp_path: Path) -> None:
    deployment = yaml.safe_load((INSTALL / "deployment.yaml").read_text())
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert "command" not in container and image.entrypoint == ["liveml"]
    (mount,) = container["volumeMounts"]
    home = image.owned(mount["mountPath"])  # the PVC, writable through fsGroup
    port = free_port()
    args = list(container["args"])
    args[args.index("--port") + 1] = str(port)
    args[args.index("--control-plane-url") + 1] = f"http://127.0.0.1:{port}"
    with KubeSim(cpu=32, memory=64 * 2**30, prestop_cap=2.0) as sim:
        config = kubeconfig(image.root / "kubeconfig", sim.url)
        config.chmod(0o644)
        env = {**{k: image.rooted(v) for k, v in container_env(container, "liveml-0", {}).items()},
               "KUBECONFIG": str(config)}
        proc = image.popen([*image.entrypoint, *[image.rooted(a) for a in args]], env,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        lines: list[str] = []
        threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True).start()
        try:
            startup = container["startupProbe"]
            # the probe is a TCP connect; the connection file is written once the control
            # plane has started behind the socket
            wait_for(lambda: (_listens(port) and (home / "connection.json").exists())
                     or proc.poll() is not None,
                     timeout=startup["periodSeconds"] * startup["failureThreshold"],
                     what="the startup probe (tcpSocket) and the connection file")
            assert proc.poll() is None, "".join(lines)
            if image.user:
                assert image.user == (pod["securityContext"]["runAsUser"],
                                      pod["securityContext"]["runAsGroup"])
                assert psutil.Process(proc.pid).uids().real == image.user[0]
                assert (home / "connection.json").stat().st_uid == image.user[0]
            connection = json.loads((home / "connection.json").read_text())
            client = Client(f"http://127.0.0.1:{port}/", connection["token"])
            assert client.api("GET", "whoami")["backend"] == "kubernetes"
            model = tmp_path / "house.joblib"
            subprocess.run([sys.executable, str(REPO / "notebooks" / "house_model.py"), str(model)],
                           check=True, capture_output=True)
            client.create_objective("houses")
            client.submit("houses", model, name="ridge")  # inspected by the image's Python
            client.release("houses", "ridge", "1.0", tag="production")
            rid = client.deploy("houses", name="houses", replicas=1)["rid"]
            doc = client.wait(rid, timeout=120)
            (pod_name,) = [r["nodeId"] for r in doc["status"]["replicas"]]
            assert pod_name in sim.processes()
            answer = client.query(rid, {"requestData": [ROW], "requestParams": {}})
            assert answer["responseData"][0]["prediction"] > 0
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(pod["terminationGracePeriodSeconds"]) == 0, "".join(lines[-20:])
            assert pod_name in sim.processes()  # Kubernetes owns the pods
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def _listens(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False
