"""KubernetesCluster against a real cluster (kind works): apply, roll, scale, disable, delete.

Runs only when ``LIVEML_E2E_KUBECONFIG`` names a kubeconfig; every test is skipped otherwise, and a
skip proves nothing. See README.md in this folder.

Environment:

- ``LIVEML_E2E_KUBECONFIG`` (required): the cluster;
- ``LIVEML_E2E_NAMESPACE`` (default ``liveml-e2e``): created when missing, objects are deleted
  at the end (the namespace is kept);
- ``LIVEML_E2E_IMAGE`` (default ``liveml/runtime:0.1.0``): the runtime image, loaded into the
  cluster (``kind load docker-image``);
- ``LIVEML_E2E_ARTIFACT_URL``: an fsspec URL of a model artifact that pods can read (a joblib
  file; e.g. ``s3://...`` with the image's s3fs and credentials in ``LIVEML_E2E_ENV_*``, or
  ``https://...``). Without it the serving lifecycle is skipped and only the failure tests run.
- ``LIVEML_E2E_TIMEOUT`` (default 300): seconds to wait for a state.
"""
from __future__ import annotations

import dataclasses
import os
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from e2e_kubernetes.cluster_env import IMAGE, KUBECONFIG, NAMESPACE, POD_ENV, needs_cluster

pytestmark = needs_cluster
ARTIFACT = os.environ.get("LIVEML_E2E_ARTIFACT_URL", "")
TIMEOUT = float(os.environ.get("LIVEML_E2E_TIMEOUT", "300"))
TOKEN_SECRET = "liveml-replica-token"


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    import kubernetes.client
    from kubernetes.client.exceptions import ApiException

    from liveml_ext.backends.kubernetes import KubernetesCluster

    cluster = KubernetesCluster.from_config(NAMESPACE, KUBECONFIG)
    try:
        cluster.core.create_namespace(kubernetes.client.V1Namespace(
            metadata=kubernetes.client.V1ObjectMeta(name=NAMESPACE)))
    except ApiException as exc:
        if exc.status != 409:
            raise
    try:
        cluster.core.create_namespaced_secret(NAMESPACE, kubernetes.client.V1Secret(
            metadata=kubernetes.client.V1ObjectMeta(name=TOKEN_SECRET),
            string_data={"token": uuid.uuid4().hex}))
    except ApiException as exc:
        if exc.status != 409:
            raise
    yield cluster


def make_spec(api_name: str, **changes: Any) -> Any:
    from liveml_ext.backends.k8s_manifests import KubeDeployment

    runtime = {"minReplicas": 1, "maxReplicas": 1, "cpu": 0.25, "memory": "512MiB", "gpu": 0,
               "gpuType": "", "threadCount": 1, "queueSize": 16,
               "env": dict(POD_ENV),
               **changes.pop("runtime", {})}
    base = dict(deployment_rid=f"ri.foundry-ml-live.main.live-deployment.{uuid.uuid4()}", api_name=api_name,
                liveml_namespace="e2e", kube_namespace=NAMESPACE,
                release_rid=f"ri.models.main.release.{uuid.uuid4()}", release_version="1.0.0",
                model_uuid=str(uuid.uuid4()), artifact_url=ARTIFACT or "file:///nonexistent",
                requirements={}, generation=1, runtime=runtime, image=IMAGE, enabled=True,
                replica_token_secret=TOKEN_SECRET, replica_profile="e2e", resource_profile="e2e")
    return KubeDeployment(**{**base, **changes})


def wait_for(cluster: Any, name: str, done: Callable[[dict[str, Any]], bool], what: str) -> dict[str, Any]:
    deadline = time.monotonic() + TIMEOUT
    seen: dict[str, Any] = {}
    while time.monotonic() < deadline:
        seen = cluster.observe(name)
        if done(seen):
            return seen
        time.sleep(2)
    pytest.fail(f"{what} not reached in {TIMEOUT:.0f} s; last observed: state {seen.get('state')}, "
                f"reason {seen.get('reason')!r}, rollout {seen.get('rollout')}")


def name_of(spec: Any) -> str:
    from liveml_ext.backends.k8s_manifests import object_name

    return object_name(spec.api_name, spec.liveml_namespace)


@pytest.mark.skipif(not ARTIFACT, reason="LIVEML_E2E_ARTIFACT_URL is not set: no model pods can load")
def test_kubernetes_e2e_serving_lifecycle(cluster: Any) -> None:
    from kubernetes.client.exceptions import ApiException

    spec = make_spec("e2e-lifecycle")
    name = name_of(spec)
    try:
        cluster.apply(spec)
        seen = wait_for(cluster, name, lambda s: s["state"] == "ACTIVE"
                        and s["rollout"]["state"] == "COMPLETE", "ACTIVE with 1 replica")
        assert len(seen["urls"]) == 1
        logs = cluster.logs(name)
        assert len(logs) == 1 and any(text.strip() for text in logs.values()), logs
        first_pod = seen["pods"][0]["node_id"]

        # a new generation rolls the pod
        cluster.apply(dataclasses.replace(spec, generation=2))
        seen = wait_for(cluster, name, lambda s: s["state"] == "ACTIVE"
                        and s["rollout"]["state"] == "COMPLETE"
                        and all(p["generation"] == "2" for p in s["pods"] if not p["terminating"]),
                        "the rollout of generation 2")
        assert first_pod not in [p["node_id"] for p in seen["pods"] if not p["terminating"]]

        # two fixed replicas: a PDB appears
        two = dataclasses.replace(spec, generation=2, runtime={**spec.runtime.dump(), "minReplicas": 2,
                                                               "maxReplicas": 2})
        cluster.apply(two)
        seen = wait_for(cluster, name, lambda s: s["state"] == "ACTIVE" and len(s["urls"]) == 2, "2 ready")
        cluster.policy.read_namespaced_pod_disruption_budget(name, NAMESPACE)

        # pod IPs are reachable from inside the cluster only (where the control plane runs), so
        # here only the URLs' shape is checked
        assert all(u.startswith("http://") and u.endswith(":8080") for u in seen["urls"])

        # disable: 0 replicas, PDB gone, Deployment kept
        cluster.disable(two)
        wait_for(cluster, name, lambda s: s["state"] == "DISABLED" and not s["pods"], "DISABLED, no pods")
        with pytest.raises(ApiException) as info:
            cluster.policy.read_namespaced_pod_disruption_budget(name, NAMESPACE)
        assert info.value.status == 404
        assert cluster.observe(name)["exists"]

        # metrics: only when metrics-server runs (kind has none by default)
        try:
            cluster.node_metrics()
        except ApiException as exc:
            assert exc.status in (404, 503), exc
    finally:
        cluster.delete(spec)
    wait_for(cluster, name, lambda s: not s["exists"], "deletion")


def test_kubernetes_e2e_missing_image_fails_with_the_pull_reason(cluster: Any) -> None:
    spec = make_spec("e2e-bad-image", image="liveml/does-not-exist:0.0.0")
    name = name_of(spec)
    try:
        cluster.apply(spec)
        seen = wait_for(cluster, name, lambda s: s["state"] == "FAILED", "FAILED")
        assert "ImagePull" in seen["reason"] or "ErrImage" in seen["reason"], seen["reason"]
    finally:
        cluster.delete(spec)


def test_kubernetes_e2e_too_many_gpus_is_unschedulable(cluster: Any) -> None:
    spec = make_spec("e2e-gpu", runtime={"gpu": 64})
    name = name_of(spec)
    try:
        cluster.apply(spec)
        seen = wait_for(cluster, name, lambda s: "Unschedulable" in s["reason"], "Unschedulable")
        assert seen["state"] == "STARTING"
        assert "nvidia.com/gpu" in seen["reason"] or "untolerated taint" in seen["reason"], seen["reason"]
    finally:
        cluster.delete(spec)
