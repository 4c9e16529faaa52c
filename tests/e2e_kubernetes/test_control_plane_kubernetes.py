"""The backend behaviour suite (tests/test_kubernetes_backend.py) against a real cluster: a local
``liveml server --backend kubernetes`` whose replicas are pods of the cluster.

Skipped without ``LIVEML_E2E_KUBECONFIG`` (a skip is not a pass). Besides the variables of
test_lifecycle_kubernetes.py (``LIVEML_E2E_NAMESPACE``, ``LIVEML_E2E_IMAGE``, ``LIVEML_E2E_ENV_*``),
the control plane runs on this machine, so:

- the gateway must reach pod IPs from here (kind on Linux: ``sudo ip route add 10.244.0.0/16 via
  $(docker inspect -f '{{.NetworkSettings.Networks.kind.IPAddress}}' liveml-e2e-control-plane)``);
- pods must read artifacts: either ``LIVEML_E2E_ARTIFACT_STORE`` (an fsspec URL for
  ``--artifact-url``, e.g. ``s3://bucket/liveml-e2e`` with credentials for this process and, via
  ``LIVEML_E2E_ENV_*``, for the pods) or ``LIVEML_E2E_CONTROL_PLANE_URL``, the URL pods reach
  this machine at (kind: ``http://<the kind network's gateway, e.g. 172.18.0.1>:<port>``, with
  ``LIVEML_E2E_CONTROL_PLANE_PORT`` = that port); the control plane then listens on 0.0.0.0;
- the metrics test needs metrics-server (``LIVEML_E2E_METRICS=1``; kind has none by default).
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import test_kubernetes_backend as suite
from conftest import free_port, start_server
from test_kubernetes_backend import Setup

from e2e_kubernetes.cluster_env import IMAGE, KUBECONFIG, NAMESPACE, POD_ENV, needs_cluster

pytestmark = needs_cluster
STORE = os.environ.get("LIVEML_E2E_ARTIFACT_STORE", "")
CONTROL_PLANE_URL = os.environ.get("LIVEML_E2E_CONTROL_PLANE_URL", "")
PORT = int(os.environ.get("LIVEML_E2E_CONTROL_PLANE_PORT", "0"))


# the suite's tests, run with this module's ``setup`` (wrapped, so that nothing here changes them)
def test_e2e_kubernetes_lifecycle(setup: Setup, tmp_path: Path) -> None:
    suite.test_backend_lifecycle_on_local_and_kubernetes(setup, tmp_path)


def test_e2e_kubernetes_failed_release_keeps_the_old_pods_serving(setup: Setup, tmp_path: Path) -> None:
    suite.test_backend_failed_release_keeps_the_old_replicas_serving(setup, tmp_path)


@pytest.mark.skipif(not os.environ.get("LIVEML_E2E_METRICS"),
                    reason="LIVEML_E2E_METRICS is not set: no metrics-server")
def test_e2e_kubernetes_metrics(setup: Setup, tmp_path: Path) -> None:
    suite.test_backend_metrics_per_replica(setup, tmp_path)


def test_e2e_kubernetes_control_plane_restart(setup: Setup, tmp_path: Path) -> None:
    suite.test_backend_control_plane_restart(setup, tmp_path)


def test_e2e_kubernetes_api_name_change(setup: Setup, tmp_path: Path) -> None:
    suite.test_backend_api_name_change_drops_no_query(setup, tmp_path)


def test_e2e_kubernetes_unschedulable_gpu(setup: Setup, tmp_path: Path) -> None:
    suite.test_kubernetes_unschedulable_gpu_is_reported(setup, tmp_path)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    from liveml_ext.backends.kubernetes import KubernetesCluster

    if not (STORE or CONTROL_PLANE_URL):
        pytest.skip("set LIVEML_E2E_ARTIFACT_STORE or LIVEML_E2E_CONTROL_PLANE_URL: pods must read "
                    "artifacts")
    home = tmp_path_factory.mktemp("home-e2e")
    port = PORT or free_port()
    args: tuple[str, ...] = ("--backend", "kubernetes", "--kubeconfig", str(KUBECONFIG),
                             "--kube-namespace", NAMESPACE, "--image", IMAGE,
                             "--metrics-interval", "5", "--kube-poll-interval", "1")
    args += ("--artifact-url", STORE) if STORE else \
        ("--control-plane-url", CONTROL_PLANE_URL, "--host", "0.0.0.0")
    server = start_server(home, port=port, args=args, timeout=120)
    cluster = KubernetesCluster.from_config(NAMESPACE, KUBECONFIG)
    env = dict(POD_ENV)
    s = Setup("kubernetes", server, None, home, args, cluster, remote=True,
              runtime={"cpu": 0.25, "memory": "512MiB", "env": env})
    yield s
    s.server.stop()
    cluster.close()
