"""KubernetesCluster against the simulated cluster of tests/kube_sim.py: the official client over
real HTTP, real replica processes (``python -m liveml_runtime serve``) as pods, real probes, logs,
signals and metrics. The sim is a simulator (see its docstring for what it does not model); the
contract tests (test_kubernetes_contract.py) and tests/e2e_kubernetes (a real cluster) complement it.

One simulated cluster serves the module; each test uses its own deployment (API name) except the
"served" one, which several tests share in file order (serve, logs, metrics, re-roll, disable).
"""
from __future__ import annotations

import dataclasses
import json
import re
import secrets
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import joblib
import pandas as pd
import psutil
import pytest
import requests
from conftest import wait_for
from kube_sim import KubeSim
from kubernetes.client.exceptions import ApiException
from model_fixtures import EnvEcho, save
from sklearn.linear_model import LinearRegression

from liveml_ext.backends.k8s_manifests import KubeDeployment, object_name
from liveml_ext.backends.kubernetes import (
    APPLY_PATCH,
    FIELD_MANAGER,
    HANDOVER_MANAGER,
    KubernetesCluster,
    _owns_replicas,
)

NS = "liveml-sim"
LIVEML_NS = "default"
TOKEN_SECRET = "liveml-replica-token"
TOKEN = secrets.token_hex(16)
TOKEN_HEADER = "X-LiveML-Replica-Token"
PREFIX = "simtest"  # every API name here starts with it, so leftover processes are easy to find
ROW = {"x1": 1.0, "x2": 1.0}  # the linear model predicts 2 * x1 + x2 = 3
RUNTIME = {"minReplicas": 2, "maxReplicas": 2, "cpu": 0.25, "memory": "1GiB", "gpu": 0, "gpuType": "",
           "threadCount": 1, "queueSize": 16, "env": {}}
TIMEOUT = 60.0


# ------------------------------------------------------------------------------------ helpers


def make_spec(api_name: str, artifact: Path, **changes: Any) -> KubeDeployment:
    runtime = {**RUNTIME, **changes.pop("runtime", {})}
    base: dict[str, Any] = dict(
        deployment_rid=f"ri.foundry-ml-live.main.live-deployment.{uuid.uuid4()}",
        api_name=f"{PREFIX}-{api_name}", liveml_namespace=LIVEML_NS, kube_namespace=NS,
        release_rid=f"ri.models.main.release.{uuid.uuid4()}", release_version="1.0.0",
        model_uuid=str(uuid.uuid4()), artifact_url=str(artifact), requirements={}, generation=1,
        runtime=runtime, image="liveml/runtime:0.1.0", enabled=True, replica_token_secret=TOKEN_SECRET,
        replica_profile="sim", resource_profile="sim")
    return KubeDeployment(**{**base, **changes})


def name_of(spec: KubeDeployment) -> str:
    return object_name(spec.api_name, spec.liveml_namespace)


def runtime_processes(prefix: str) -> list[int]:
    """PIDs of live replica processes whose node id (the pod name) starts with ``prefix``."""
    out = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        cmdline = proc.info["cmdline"] or []
        if proc.info["status"] == psutil.STATUS_ZOMBIE or not any("liveml_runtime" in a for a in cmdline):
            continue
        if any(arg.startswith(prefix) for arg in cmdline):
            out.append(proc.pid)
    return out


def settled(seen: dict[str, Any]) -> bool:
    """ACTIVE, and the Deployment controller has counted the rollout COMPLETE."""
    return seen["state"] == "ACTIVE" and seen["rollout"]["state"] == "COMPLETE"


def observe_until(cluster: KubernetesCluster, name: str, check: Callable[[dict[str, Any]], bool],
                  what: str, timeout: float = TIMEOUT) -> dict[str, Any]:
    seen: dict[str, Any] = {}

    def probe() -> bool:
        seen.clear()
        seen.update(cluster.observe(name))
        return check(seen)

    try:
        wait_for(probe, timeout=timeout, interval=0.1, what=what)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; last observation: {json.dumps(seen, default=str)[:3000]}") from None
    return dict(seen)


def raw(response: Any) -> Any:
    return json.loads(response.data)


def events(cluster: KubernetesCluster, selector: str) -> list[dict[str, Any]]:
    listed = cluster.core.list_namespaced_event(NS, field_selector=selector, _preload_content=False)
    return raw(listed)["items"]


def transform(url: str, token: str | None) -> requests.Response:
    session = requests.Session()
    session.trust_env = False  # the pod IPs are loopback addresses: never through a proxy
    headers = {TOKEN_HEADER: token} if token is not None else {}
    return session.post(f"{url}/v1/transform", json={"requestData": [ROW], "requestParams": {}},
                        headers=headers, timeout=30)


def put_token_secret(cluster: KubernetesCluster) -> None:
    cluster.core.patch_namespaced_secret(
        TOKEN_SECRET, NS, {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": TOKEN_SECRET},
                           "stringData": {"token": TOKEN}},
        field_manager="liveml-tests", force=True, _content_type=APPLY_PATCH)


# ----------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("kube-sim-models")
    frame = pd.DataFrame({"x1": [1.0, 2.0, 3.0, 4.0], "x2": [0.0, 1.0, 0.0, 1.0]})
    linear = folder / "linear.joblib"
    joblib.dump(LinearRegression().fit(frame, frame["x1"] * 2 + frame["x2"]), linear)
    return {"linear": linear, "echo": save(EnvEcho(), folder / "echo.pkl")}


@pytest.fixture(scope="module")
def sim() -> Iterator[KubeSim]:
    cluster = KubeSim().start()
    yield cluster
    cluster.stop()
    assert not runtime_processes(f"liveml-{PREFIX}"), "replica processes outlived the simulator"


@pytest.fixture(scope="module")
def cluster(sim: KubeSim) -> Iterator[KubernetesCluster]:
    api_client = sim.api_client()
    cluster = KubernetesCluster(NS, api_client)
    put_token_secret(cluster)
    yield cluster
    api_client.close()


@pytest.fixture(scope="module")
def served(cluster: KubernetesCluster, artifacts: dict[str, Path]) -> KubeDeployment:
    """Two replicas of the linear model, ACTIVE (shared by the serving tests, in file order)."""
    spec = make_spec("served", artifacts["linear"])
    cluster.apply(spec)
    observe_until(cluster, name_of(spec), settled, "the deployment to be ACTIVE with its rollout COMPLETE")
    return spec


# -------------------------------------------------------------------------------------- tests


def test_kubernetes_sim_serves_predictions_behind_the_replica_token(cluster: KubernetesCluster,
                                                                    served: KubeDeployment) -> None:
    # pods turn ready before the Deployment controller counts them: ACTIVE may come a moment
    # before the rollout is COMPLETE, so wait for both
    seen = observe_until(cluster, name_of(served), settled, "ACTIVE with the rollout COMPLETE")
    assert seen["reason"] == "" and seen["desired"] == 2
    assert len(seen["urls"]) == 2
    assert all(re.fullmatch(r"http://127\.1\.\d+\.\d+:8080", url) for url in seen["urls"])
    pods = {p["metadata"]["name"] for p in cluster.pods(name_of(served))}
    assert {p["node_id"] for p in seen["pods"]} == pods
    for url in seen["urls"]:
        answer = transform(url, TOKEN)
        assert answer.status_code == 200, answer.text
        assert answer.json()["responseData"][0]["prediction"] == pytest.approx(3.0)
        assert answer.json()["modelUuid"] == served.model_uuid
        assert transform(url, None).status_code == 401
        assert transform(url, "not-the-token").status_code == 401


def test_kubernetes_sim_logs_are_the_replicas_json_lines(cluster: KubernetesCluster,
                                                         served: KubeDeployment) -> None:
    name = name_of(served)
    logs = cluster.logs(name)
    assert set(logs) == {p["metadata"]["name"] for p in cluster.pods(name)} and len(logs) == 2
    for pod, text in logs.items():
        records = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
        messages = [r["message"] for r in records]
        assert any(m.startswith("Replica listening on 127.1.") for m in messages), messages
        assert "Replica ready" in messages
        assert {r["tags"]["node_id"] for r in records} == {pod}
        assert {r["tags"]["deployment_rid"] for r in records} == {served.deployment_rid}
    later = cluster.logs(name, since_seconds=3600)  # read again: what was there still is
    assert set(later) == set(logs) and all(later[pod].startswith(text) for pod, text in logs.items())
    pod = sorted(logs)[0]
    stamped = cluster.core.read_namespaced_pod_log(pod, NS, timestamps=True, tail_lines=2,
                                                   _preload_content=False).data.decode()
    lines = stamped.splitlines()
    assert len(lines) == 2
    full = cluster.logs(name)[pod].splitlines()  # read after: it ends with them, or goes on
    tail = [line.split(" ", 1)[1] for line in lines]
    assert tail == full[len(logs[pod].splitlines()) - 2:][:2] or tail == full[-2:]
    assert all(re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z \{", line) for line in lines), lines
    with pytest.raises(ApiException) as info:  # the container never restarted
        cluster.core.read_namespaced_pod_log(pod, NS, previous=True, _preload_content=False)
    assert info.value.status == 400 and "previous terminated container" in str(info.value.body)


def test_kubernetes_sim_pod_and_node_metrics(cluster: KubernetesCluster, served: KubeDeployment) -> None:
    name = name_of(served)
    metrics = cluster.pod_metrics(name)
    assert sorted(m["pod"] for m in metrics) == sorted(p["metadata"]["name"] for p in cluster.pods(name))
    assert all(m["memory"] > 10 * 2**20 and m["cpu"] >= 0 and m["window"] == "10s" for m in metrics), metrics
    (node,) = cluster.node_metrics()
    assert node["node"] == "sim-node" and node["memory"] > 0 and node["cpu"] >= 0
    (listed,) = raw(cluster.core.list_node(_preload_content=False))["items"]
    assert listed["metadata"]["labels"]["kubernetes.io/hostname"] == "sim-node"
    assert set(listed["status"]["allocatable"]) >= {"cpu", "memory", "pods"}
    assert "nvidia.com/gpu" not in listed["status"]["allocatable"]


def test_kubernetes_sim_reroll_keeps_two_ready_pods_and_replaces_the_processes(
        cluster: KubernetesCluster, served: KubeDeployment) -> None:
    name = name_of(served)
    before = observe_until(cluster, name, settled, "ACTIVE with the rollout COMPLETE")
    old_pods = {p["node_id"] for p in before["pods"]}
    assert all(runtime_processes(pod) for pod in old_pods)
    cluster.apply(dataclasses.replace(served, generation=2, release_version="1.1.0"))
    deadline = time.monotonic() + 2 * TIMEOUT
    fewest, observations = 2, 0
    while True:
        seen = cluster.observe(name)
        observations += 1
        fewest = min(fewest, len(seen["urls"]))
        assert len(seen["urls"]) >= 2 and seen["state"] == "ACTIVE", seen
        pods = seen["pods"]
        if (seen["rollout"]["state"] == "COMPLETE" and seen["rollout"]["observed"] and len(pods) == 2
                and all(p["current"] and p["generation"] == "2" for p in pods)):
            break
        assert time.monotonic() < deadline, f"the re-roll did not complete: {seen}"
        time.sleep(0.05)
    assert observations > 10 and fewest >= 2  # the poll saw the rollout under way
    assert not old_pods & {p["node_id"] for p in pods}
    assert not any(runtime_processes(pod) for pod in old_pods)  # a pod is gone only once its process is
    for url in seen["urls"]:
        assert transform(url, TOKEN).status_code == 200
    scaled = [e["message"] for e in events(cluster, f"involvedObject.name={name},reason=ScalingReplicaSet")]
    assert any(m.startswith("Scaled down replica set") and m.endswith("to 0") for m in scaled), scaled


def test_kubernetes_sim_gpu_request_without_gpus_is_unschedulable(cluster: KubernetesCluster, sim: KubeSim,
                                                                  artifacts: dict[str, Path]) -> None:
    spec = make_spec("gpu", artifacts["linear"], runtime={"minReplicas": 1, "maxReplicas": 1, "gpu": 1})
    name = name_of(spec)
    cluster.apply(spec)
    seen = observe_until(cluster, name, lambda s: "Unschedulable" in s["reason"], "an Unschedulable pod")
    assert seen["state"] == "STARTING"
    assert "0/1 nodes are available: 1 Insufficient nvidia.com/gpu." in seen["reason"]
    (pod,) = seen["pods"]
    assert pod["phase"] == "Pending" and pod["url"] is None and pod["node_id"] not in sim.processes()
    selector = f"involvedObject.name={pod['node_id']},involvedObject.kind=Pod,type=Warning"
    wait_for(lambda: any(e["count"] >= 2 for e in events(cluster, selector)), timeout=15,
             what="a repeated FailedScheduling event")
    (event,) = events(cluster, selector)
    assert event["reason"] == "FailedScheduling" and "Insufficient nvidia.com/gpu" in event["message"]
    assert event["source"]["component"] == "default-scheduler"
    cluster.delete(spec)
    wait_for(lambda: not cluster.pods(name), timeout=15, what="the pending pod to go")


def test_kubernetes_sim_crash_loop_is_failed_with_the_previous_log(cluster: KubernetesCluster,
                                                                   artifacts: dict[str, Path]) -> None:
    spec = make_spec("crash", artifacts["echo"],
                     runtime={"minReplicas": 1, "maxReplicas": 1, "env": {"FAIL_AT_LOAD": "1"}})
    name = name_of(spec)
    cluster.apply(spec)
    seen = observe_until(cluster, name, lambda s: s["state"] == "FAILED", "FAILED")
    assert "CrashLoopBackOff" in seen["reason"] and "last exit code 3 (Error)" in seen["reason"]
    assert "FAIL_AT_LOAD is set" in seen["reason"]  # the termination message: the log's tail
    (pod,) = seen["pods"]
    assert pod["restarts"] >= 1 and not pod["ready"]
    previous = cluster.core.read_namespaced_pod_log(pod["node_id"], NS, previous=True,
                                                    _preload_content=False).data.decode()
    assert "Model failed to start: RuntimeError: FAIL_AT_LOAD is set" in previous
    back_offs = events(cluster, f"involvedObject.name={pod['node_id']},reason=BackOff")
    assert back_offs and back_offs[0]["type"] == "Warning"
    cluster.delete(spec)
    wait_for(lambda: not cluster.pods(name), timeout=30, what="the crashing pod to go")
    assert not runtime_processes(name)


def test_kubernetes_sim_disable_then_delete_leaves_nothing(cluster: KubernetesCluster,
                                                           served: KubeDeployment) -> None:
    name = name_of(served)
    assert cluster.pods(name)
    cluster.disable(served)
    seen = observe_until(cluster, name, lambda s: s["state"] == "DISABLED" and not s["pods"],
                         "DISABLED with no pods")
    assert seen["urls"] == [] and seen["desired"] == 0
    assert not runtime_processes(name)
    deployment = raw(cluster.apps.read_namespaced_deployment(name, NS, _preload_content=False))
    assert deployment["spec"]["replicas"] == 0
    assert raw(cluster.core.read_namespaced_service(name, NS, _preload_content=False))["spec"]["selector"]
    with pytest.raises(ApiException) as info:  # no PDB at 0 replicas
        cluster.policy.read_namespaced_pod_disruption_budget(name, NS, _preload_content=False)
    assert info.value.status == 404
    cluster.delete(served)
    assert cluster.observe(name)["exists"] is False
    for read in (cluster.apps.read_namespaced_deployment, cluster.core.read_namespaced_service):
        with pytest.raises(ApiException) as info:
            read(name, NS, _preload_content=False)
        assert info.value.status == 404
    assert not cluster.pods(name) and not runtime_processes(name)


# ------------------------------------------------------------- with a simulator of their own


def test_kubernetes_sim_image_pull_failure_deadline_and_replica_handover(artifacts: dict[str, Path]) -> None:
    """No process starts here (the image cannot be pulled), so the sim may run fast time."""
    bad = "liveml/runtime:missing"
    with KubeSim(bad_images={bad}, time_scale=0.005) as sim:  # progress deadline 600 s -> 3 s
        api_client = sim.api_client()
        cluster = KubernetesCluster(NS, api_client)
        spec = make_spec("pull", artifacts["linear"], image=bad, runtime={"minReplicas": 3, "maxReplicas": 3})
        name = name_of(spec)
        cluster.apply(spec)
        seen = observe_until(cluster, name, lambda s: s["state"] == "FAILED" and len(s["pods"]) == 3,
                             "FAILED for the image")
        assert re.search(r"pod \S+: (ErrImagePull|ImagePullBackOff)", seen["reason"]), seen["reason"]
        failed = events(cluster, f"involvedObject.name={seen['pods'][0]['node_id']},reason=Failed")
        assert any(bad in e["message"] for e in failed) and all(e["type"] == "Warning" for e in failed)
        seen = observe_until(cluster, name, lambda s: s["rollout"]["state"] == "FAILED",
                             "the progress deadline")
        assert "exceeded its progress deadline" in seen["reason"]

        # 3 fixed replicas -> autoscaled 1..2: the hand-over keeps max(min, current) clamped, not 1
        cluster.apply(dataclasses.replace(spec, runtime={**spec.runtime.dump(), "minReplicas": 1,
                                                          "maxReplicas": 2}))
        deployment = raw(cluster.apps.read_namespaced_deployment(name, NS, _preload_content=False))
        assert deployment["spec"]["replicas"] == 2
        assert _owns_replicas(deployment, HANDOVER_MANAGER) and not _owns_replicas(deployment, FIELD_MANAGER)
        observe_until(cluster, name, lambda s: s["desired"] == 2 and len(s["pods"]) == 2, "2 pods")

        # the HPA (3..4) lifts the count by a scale update, which takes spec.replicas over
        cluster.apply(dataclasses.replace(spec, runtime={**spec.runtime.dump(), "minReplicas": 3,
                                                          "maxReplicas": 4}))
        observe_until(cluster, name, lambda s: s["desired"] == 3 and len(s["pods"]) == 3, "3 pods")
        deployment = raw(cluster.apps.read_namespaced_deployment(name, NS, _preload_content=False))
        assert _owns_replicas(deployment, "kube-controller-manager") is False  # an Update, not an Apply
        owners = {e["manager"]: e for e in deployment["metadata"]["managedFields"]}
        assert "f:replicas" in owners["kube-controller-manager"]["fieldsV1"]["f:spec"]
        assert owners["kube-controller-manager"]["operation"] == "Update"
        assert "f:replicas" not in owners.get(HANDOVER_MANAGER, {}).get("fieldsV1", {}).get("f:spec", {})

        cluster.delete(spec)
        wait_for(lambda: not cluster.pods(name), timeout=15, what="the pods to go")
        api_client.close()


def test_kubernetes_sim_memory_limit_kills_and_stop_leaves_no_process(artifacts: dict[str, Path]) -> None:
    sim = KubeSim().start()
    try:
        api_client = sim.api_client()
        cluster = KubernetesCluster(NS, api_client)
        put_token_secret(cluster)
        spec = make_spec("oom", artifacts["linear"], runtime={"minReplicas": 1, "maxReplicas": 1,
                                                               "memory": "64MiB"})
        name = name_of(spec)
        cluster.apply(spec)
        seen = observe_until(cluster, name, lambda s: "OOMKilled" in s["reason"], "an OOM kill")
        assert "last exit code 137 (OOMKilled)" in seen["reason"]
        (pod,) = cluster.pods(name)
        (status,) = pod["status"]["containerStatuses"]
        assert status["lastState"]["terminated"]["reason"] == "OOMKilled"
        assert status["lastState"]["terminated"]["exitCode"] == 137
        wait_for(lambda: runtime_processes(name), timeout=TIMEOUT, what="a restarted replica process")
        api_client.close()
    finally:
        sim.stop()  # with a replica running or restarting
    assert not runtime_processes(name)
