"""The requests KubernetesCluster makes, through the real ``kubernetes`` client, to a fake API server
(tests/kube_fake.py), and ``summarize`` on canned Deployment and pod JSON. No cluster is needed."""
from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kube_fake import FakeKube, status
from kubernetes.client.exceptions import ApiException

from liveml_ext.backends.k8s_manifests import KubeDeployment, object_name, render
from liveml_ext.backends.kubernetes import (
    APPLY_PATCH,
    HANDOVER_MANAGER,
    KubernetesCluster,
    cpu_cores,
    label_selector,
    memory_bytes,
    summarize,
)

NS = "liveml"
RUNTIME = {"minReplicas": 2, "maxReplicas": 4, "cpu": 1.5, "memory": "2GiB", "gpu": 0, "gpuType": "",
           "threadCount": 2, "queueSize": 64, "env": {}, "scaleUpLoadThreshold": 0.8,
           "scaleUpDelay": 10.0, "scaleDownDelay": 60.0}


def spec(**changes: Any) -> KubeDeployment:
    runtime = {**RUNTIME, **changes.pop("runtime", {})}
    base = dict(
        deployment_rid="ri.foundry-ml-live.main.live-deployment.5f1c2d3e-0000-4000-8000-00000000abcd",
        api_name="house_prices", liveml_namespace="default", kube_namespace=NS,
        release_rid="ri.models.main.release.0b7e9a10-0000-4000-8000-000000000001",
        release_version="1.2.0", model_uuid="8c6f2b1e-1111-4222-8333-944455556666",
        artifact_url="s3://liveml-artifacts/artifacts/3f/3fa9c2d1e0b8a7f6", requirements={},
        generation=3, runtime=runtime, image="liveml/runtime:0.1.0", enabled=True,
        replica_token_secret="liveml-replica-token", replica_profile="autoscaled", resource_profile="large")
    return KubeDeployment(**{**base, **changes})


NAME = object_name("house_prices", "default")
PATHS = {
    "Deployment": f"/apis/apps/v1/namespaces/{NS}/deployments/{NAME}",
    "Service": f"/api/v1/namespaces/{NS}/services/{NAME}",
    "PodDisruptionBudget": f"/apis/policy/v1/namespaces/{NS}/poddisruptionbudgets/{NAME}",
    "HorizontalPodAutoscaler": f"/apis/autoscaling/v2/namespaces/{NS}/horizontalpodautoscalers/{NAME}",
}
PODS = f"/api/v1/namespaces/{NS}/pods"


@pytest.fixture
def cluster(fake: FakeKube) -> Iterator[KubernetesCluster]:
    api_client = fake.api_client()
    yield KubernetesCluster(NS, api_client)
    api_client.close()


def applies(fake: FakeKube, manager: str = "liveml") -> dict[str, dict[str, Any]]:
    """The applied bodies by kind, checking each request is a forced server-side apply."""
    out = {}
    for request in fake.made("PATCH"):
        if request.query.get("fieldManager") != [manager]:
            continue
        assert request.content_type == APPLY_PATCH, request.headers
        assert request.query.get("force") == ["true"], request.query
        body = request.json
        assert request.path == PATHS[body["kind"]], (request.path, body["kind"])
        out[body["kind"]] = body
    return out


def deletes(fake: FakeKube) -> list[str]:
    return [r.path for r in fake.made("DELETE")]


# ------------------------------------------------------------------------------------ apply


def test_kubernetes_apply_sends_every_rendered_object_by_forced_server_side_apply(
        fake: FakeKube, cluster: KubernetesCluster) -> None:
    cluster.apply(spec())
    patches = fake.made("PATCH")
    assert [r.path for r in patches] == [PATHS[k] for k in
                                        ("Deployment", "Service", "PodDisruptionBudget",
                                         "HorizontalPodAutoscaler")]
    for request, manifest in zip(patches, render(spec()), strict=True):
        assert request.query == {"fieldManager": ["liveml"], "force": ["true"]}
        assert request.content_type == APPLY_PATCH
        assert request.json == manifest
    assert "replicas" not in patches[0].json["spec"]  # the HPA owns the count
    # the only other request: a read for the replica hand-over (the Deployment is new: 404)
    assert [(r.method, r.path) for r in fake.requests if r.method != "PATCH"] == [
        ("GET", PATHS["Deployment"])]


def test_kubernetes_apply_of_a_new_generation_changes_the_pod_template(
        fake: FakeKube, cluster: KubernetesCluster) -> None:
    cluster.apply(spec(generation=3))
    first = applies(fake)["Deployment"]
    fake.clear()
    cluster.apply(spec(generation=4, release_version="1.2.1"))
    second = applies(fake)["Deployment"]
    annotations = second["spec"]["template"]["metadata"]["annotations"]
    assert first["spec"]["template"]["metadata"]["annotations"]["liveml.dev/generation"] == "3"
    assert annotations["liveml.dev/generation"] == "4"
    assert annotations["liveml.dev/release-version"] == "1.2.1"
    assert second["spec"]["selector"] == first["spec"]["selector"]  # same pods, rolled


def test_kubernetes_apply_of_a_fixed_count_sets_replicas_and_deletes_the_hpa(
        fake: FakeKube, cluster: KubernetesCluster) -> None:
    fake.route("DELETE", PATHS["HorizontalPodAutoscaler"], 200, status(200, "", ""))
    cluster.apply(spec(runtime={"minReplicas": 3, "maxReplicas": 3}))
    applied = applies(fake)
    assert applied["Deployment"]["spec"]["replicas"] == 3
    assert set(applied) == {"Deployment", "Service", "PodDisruptionBudget"}
    assert deletes(fake) == [PATHS["HorizontalPodAutoscaler"]]
    assert fake.made("DELETE")[0].query.get("propagationPolicy") == ["Background"]
    assert not fake.made("GET")  # no hand-over read without an HPA


def test_kubernetes_apply_of_one_replica_deletes_hpa_and_pdb_tolerating_404(
        fake: FakeKube, cluster: KubernetesCluster) -> None:
    cluster.apply(spec(runtime={"minReplicas": 1, "maxReplicas": 1}))  # both DELETEs answer 404
    assert set(applies(fake)) == {"Deployment", "Service"}
    assert sorted(deletes(fake)) == sorted([PATHS["HorizontalPodAutoscaler"], PATHS["PodDisruptionBudget"]])


def owned_deployment(manager: str, operation: str, replicas: int) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": NAME, "namespace": NS, "generation": 2, "managedFields": [
                {"manager": manager, "operation": operation, "apiVersion": "apps/v1",
                 "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:replicas": {}}}}]},
            "spec": {"replicas": replicas}}


def test_kubernetes_apply_hands_replicas_over_before_the_hpa_takes_them(
        fake: FakeKube, cluster: KubernetesCluster) -> None:
    # liveml applied a fixed count of 6 before; now 2..4 autoscaled: the count must not drop to 1
    fake.route("GET", PATHS["Deployment"], 200, owned_deployment("liveml", "Apply", 6))
    cluster.apply(spec())
    patches = fake.made("PATCH")
    assert patches[0].query == {"fieldManager": [HANDOVER_MANAGER], "force": ["true"]}
    assert patches[0].content_type == APPLY_PATCH
    assert patches[0].json == {"apiVersion": "apps/v1", "kind": "Deployment",
                               "metadata": {"name": NAME, "namespace": NS}, "spec": {"replicas": 4}}
    assert patches[1].path == PATHS["Deployment"] and "replicas" not in patches[1].json["spec"]


def test_kubernetes_apply_leaves_replicas_alone_when_the_hpa_owns_them(
        fake: FakeKube, cluster: KubernetesCluster) -> None:
    fake.route("GET", PATHS["Deployment"], 200,
               owned_deployment("kube-controller-manager", "Update", 3))
    cluster.apply(spec())
    assert not applies(fake, HANDOVER_MANAGER)
    assert len(fake.made("PATCH")) == 4


def test_kubernetes_apply_raises_api_errors(fake: FakeKube, cluster: KubernetesCluster) -> None:
    fake.route("PATCH", PATHS["Service"], 422, status(422, "Invalid", "spec.ports: Required value"))
    with pytest.raises(ApiException) as info:
        cluster.apply(spec())
    assert info.value.status == 422


def test_kubernetes_apply_refuses_another_namespace(cluster: KubernetesCluster) -> None:
    with pytest.raises(ValueError, match="namespace"):
        cluster.apply(spec(kube_namespace="other"))


def test_kubernetes_disable_scales_to_zero_and_deletes_hpa_and_pdb(
        fake: FakeKube, cluster: KubernetesCluster) -> None:
    cluster.disable(spec())
    applied = applies(fake)
    assert set(applied) == {"Deployment", "Service"}
    assert applied["Deployment"]["spec"]["replicas"] == 0
    assert sorted(deletes(fake)) == sorted([PATHS["HorizontalPodAutoscaler"], PATHS["PodDisruptionBudget"]])


@pytest.mark.parametrize("target", ["spec", "name"])
def test_kubernetes_delete_removes_all_four_objects(fake: FakeKube, cluster: KubernetesCluster,
                                                    target: str) -> None:
    fake.route("DELETE", PATHS["Deployment"], 200, status(200, "", ""))
    fake.route("DELETE", PATHS["Service"], 200, status(200, "", ""))
    cluster.delete(spec() if target == "spec" else NAME)  # PDB and HPA answer 404: tolerated
    assert deletes(fake) == [PATHS[k] for k in ("HorizontalPodAutoscaler", "PodDisruptionBudget",
                                                 "Service", "Deployment")]


def test_kubernetes_delete_raises_other_errors(fake: FakeKube, cluster: KubernetesCluster) -> None:
    fake.route("DELETE", PATHS["Service"], 403, status(403, "Forbidden", "services is forbidden"))
    with pytest.raises(ApiException) as info:
        cluster.delete(NAME)
    assert info.value.status == 403


# ------------------------------------------------------------------------------------ reads


def pod(name: str, ip: str | None = "10.1.0.7", ready: bool = True, phase: str = "Running",
        waiting: str | None = None, message: str = "", restarts: int = 0, generation: str = "3",
        scheduled: tuple[str, str] | None = None, last: dict[str, Any] | None = None,
        terminating: bool = False) -> dict[str, Any]:
    conditions = [{"type": "Ready", "status": "True" if ready else "False"}]
    if scheduled:
        conditions.append({"type": "PodScheduled", "status": "False", "reason": scheduled[0],
                           "message": scheduled[1]})
    container: dict[str, Any] = {"name": "replica", "ready": ready, "restartCount": restarts,
                                 "state": {"running": {}} if not waiting else
                                 {"waiting": {"reason": waiting, "message": message}}}
    if last:
        container["lastState"] = {"terminated": last}
    status_: dict[str, Any] = {"phase": phase, "conditions": conditions}
    if ip:
        status_["podIP"] = ip
    if not scheduled:
        status_["containerStatuses"] = [container]
    meta: dict[str, Any] = {"name": name, "namespace": NS, "annotations": {
        "liveml.dev/release-rid": "ri.r.1", "liveml.dev/generation": generation}}
    if terminating:
        meta["deletionTimestamp"] = "2024-05-01T10:00:00Z"
    return {"metadata": meta, "spec": {"containers": [{"name": "replica", "ports": [
        {"name": "http", "containerPort": 8080}]}]}, "status": status_}


def deployment(desired: int = 2, generation: int = 5, observed: int = 5, replicas: int | None = None,
               updated: int | None = None, ready: int | None = None, available: int | None = None,
               progressing: tuple[str, str, str] = ("True", "NewReplicaSetAvailable", ""),
               template_generation: str = "3") -> dict[str, Any]:
    replicas = desired if replicas is None else replicas
    updated = desired if updated is None else updated
    ready = desired if ready is None else ready
    available = ready if available is None else available
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": NAME, "namespace": NS, "generation": generation},
            "spec": {"replicas": desired, "template": {"metadata": {"annotations": {
                "liveml.dev/release-rid": "ri.r.1", "liveml.dev/generation": template_generation}}}},
            "status": {"observedGeneration": observed, "replicas": replicas, "updatedReplicas": updated,
                       "readyReplicas": ready, "availableReplicas": available, "conditions": [
                           {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"},
                           {"type": "Progressing", "status": progressing[0], "reason": progressing[1],
                            "message": progressing[2]}]}}


def test_kubernetes_observe_reads_the_deployment_and_its_pods_by_label(
        fake: FakeKube, cluster: KubernetesCluster) -> None:
    fake.route("GET", PATHS["Deployment"], 200, deployment())
    fake.route("GET", PODS, 200, {"kind": "PodList",
                                  "items": [pod("p-a", "10.1.0.7"), pod("p-b", "10.1.0.8")]})
    seen = cluster.observe(NAME)
    assert seen["state"] == "ACTIVE" and seen["exists"]
    assert seen["urls"] == ["http://10.1.0.7:8080", "http://10.1.0.8:8080"]
    (listing,) = fake.made("GET", PODS)
    assert listing.query["labelSelector"] == [label_selector(NAME)]
    assert label_selector(NAME) == ("app.kubernetes.io/name=liveml-replica,"
                                    f"app.kubernetes.io/instance={NAME},app.kubernetes.io/managed-by=liveml")


def test_kubernetes_observe_of_a_missing_deployment(cluster: KubernetesCluster) -> None:
    seen = cluster.observe(NAME)
    assert (seen["exists"], seen["state"], seen["urls"]) == (False, "FAILED", [])


def test_kubernetes_logs_read_each_pod_log(fake: FakeKube, cluster: KubernetesCluster) -> None:
    fake.route("GET", PODS, 200, {"items": [pod("p-a"), pod("p-b")]})
    fake.route("GET", f"{PODS}/p-a/log", 200, '{"level": "INFO", "message": "ready"}\n')
    fake.route("GET", f"{PODS}/p-b/log", 200, "")
    assert cluster.logs(NAME, since_seconds=60) == {"p-a": '{"level": "INFO", "message": "ready"}\n',
                                                    "p-b": ""}
    reads = fake.made("GET", f"{PODS}/p-")
    assert [r.path for r in reads] == [f"{PODS}/p-a/log", f"{PODS}/p-b/log"]
    assert all(r.query == {"sinceSeconds": ["60"]} for r in reads)


def test_kubernetes_logs_of_a_pod_not_started_yet_are_empty(fake: FakeKube,
                                                            cluster: KubernetesCluster) -> None:
    fake.route("GET", PODS, 200, {"items": [pod("p-a")]})
    fake.route("GET", f"{PODS}/p-a/log", 400, status(400, "BadRequest", "container is waiting to start"))
    assert cluster.logs(NAME) == {"p-a": ""}
    assert fake.made("GET", f"{PODS}/p-a/log")[0].query == {}


def test_kubernetes_pod_and_node_metrics(fake: FakeKube, cluster: KubernetesCluster) -> None:
    path = f"/apis/metrics.k8s.io/v1beta1/namespaces/{NS}/pods"
    fake.route("GET", path, 200, {"kind": "PodMetricsList", "items": [
        {"metadata": {"name": "p-a"}, "timestamp": "2024-05-01T10:00:00Z", "window": "15s",
         "containers": [{"name": "replica", "usage": {"cpu": "250m", "memory": "123Ki"}},
                        {"name": "sidecar", "usage": {"cpu": "123456n", "memory": "1Mi"}}]}]})
    fake.route("GET", "/apis/metrics.k8s.io/v1beta1/nodes", 200, {"kind": "NodeMetricsList", "items": [
        {"metadata": {"name": "node-1"}, "timestamp": "t", "window": "20s",
         "usage": {"cpu": "1500m", "memory": "8Gi"}}]})
    (metrics,) = cluster.pod_metrics(NAME)
    assert metrics["pod"] == "p-a" and metrics["window"] == "15s"
    assert metrics["cpu"] == pytest.approx(0.25 + 0.000123456)
    assert metrics["memory"] == 123 * 1024 + 1024 * 1024
    assert fake.made("GET", path)[0].query == {"labelSelector": [label_selector(NAME)]}
    assert cluster.node_metrics() == [{"node": "node-1", "timestamp": "t", "window": "20s", "cpu": 1.5,
                                       "memory": 8 * 2**30}]


def test_kubernetes_quantities() -> None:
    assert cpu_cores("123456n") == pytest.approx(0.000123456)
    assert cpu_cores("250m") == 0.25 and cpu_cores("2") == 2.0
    assert memory_bytes("123Ki") == 125952 and memory_bytes("100M") == 10**8 and memory_bytes("1Gi") == 2**30


def test_kubernetes_from_config_reads_a_kubeconfig(fake: FakeKube, tmp_path: Path) -> None:
    kubeconfig = tmp_path / "config"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "fake",
        "clusters": [{"name": "fake", "cluster": {"server": fake.url}}],
        "users": [{"name": "me", "user": {"token": "secret-token"}}],
        "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "me"}}]}))
    cluster = KubernetesCluster.from_config(NS, str(kubeconfig))
    cluster.delete(NAME)
    assert len(fake.made("DELETE")) == 4
    assert fake.made("DELETE")[0].headers["authorization"] == "Bearer secret-token"


# -------------------------------------------------------------------------------- summarize


def test_kubernetes_summarize_active() -> None:
    out = summarize(deployment(), [pod("p-b", "10.1.0.8"), pod("p-a", "10.1.0.7")])
    assert (out["state"], out["reason"]) == ("ACTIVE", "")
    assert out["urls"] == ["http://10.1.0.7:8080", "http://10.1.0.8:8080"]
    assert out["rollout"]["state"] == "COMPLETE"
    assert [p["node_id"] for p in out["pods"]] == ["p-a", "p-b"]


def test_kubernetes_summarize_rollout_in_progress_keeps_serving() -> None:
    # 2 wanted, 1 new pod starting (surge), the 2 old ones ready
    d = deployment(desired=2, replicas=3, updated=1, ready=2, available=2, template_generation="4",
                   progressing=("True", "ReplicaSetUpdated", "ReplicaSet is progressing."))
    out = summarize(d, [pod("old-a", "10.1.0.7"), pod("old-b", "10.1.0.8"),
                        pod("new-a", "10.1.0.9", ready=False, generation="4")])
    assert out["state"] == "ACTIVE"
    assert out["rollout"]["state"] == "PROGRESSING"
    assert out["rollout"]["reason"] == "rolling out: 1/2 updated, 2 available"
    assert out["urls"] == ["http://10.1.0.7:8080", "http://10.1.0.8:8080"]
    assert {p["node_id"]: p["current"] for p in out["pods"]} == {"old-a": False, "old-b": False,
                                                                 "new-a": True}


def test_kubernetes_summarize_unobserved_generation_is_progressing() -> None:
    out = summarize(deployment(generation=6, observed=5), [pod("p-a"), pod("p-b", "10.1.0.8")])
    assert out["rollout"]["state"] == "PROGRESSING" and not out["rollout"]["observed"]


def test_kubernetes_summarize_crash_loop_without_ready_pods_is_failed() -> None:
    last = {"exitCode": 1, "reason": "Error", "message": "ModuleNotFoundError: No module named 'xgboost'\n"}
    crashing = [pod(n, ready=False, waiting="CrashLoopBackOff", message="back-off 40s restarting",
                    restarts=4, last=last) for n in ("p-a", "p-b")]
    out = summarize(deployment(ready=0, available=0), crashing)
    assert out["state"] == "FAILED"
    assert out["reason"] == ("pod p-a: CrashLoopBackOff (last exit code 1 (Error): ModuleNotFoundError: "
                             "No module named 'xgboost'); pod p-b: CrashLoopBackOff (last exit code 1 "
                             "(Error): ModuleNotFoundError: No module named 'xgboost')")
    assert out["urls"] == [] and out["pods"][0]["restarts"] == 4


def test_kubernetes_summarize_crash_loop_stays_failed_while_the_container_runs_again() -> None:
    """Between back-offs the container runs (no waiting reason) but is not ready: after two failed
    restarts that is still a crash loop, not a fresh start."""
    last = {"exitCode": 1, "reason": "Error", "message": "RuntimeError: FAIL_AT_LOAD is set\n"}
    running_again = pod("p-a", ready=False, restarts=2, last=last)
    out = summarize(deployment(desired=1, ready=0, available=0), [running_again])
    assert out["state"] == "FAILED"
    assert "CrashLoopBackOff (last exit code 1 (Error): RuntimeError: FAIL_AT_LOAD is set)" in out["reason"]
    # one restart is not yet a loop (e.g. a node hiccup): still starting
    once = summarize(deployment(desired=1, ready=0, available=0), [pod("p-a", ready=False, restarts=1,
                                                                      last=last)])
    assert once["state"] == "STARTING"


def test_kubernetes_summarize_crash_loop_of_a_new_release_with_old_pods_serving_is_degraded() -> None:
    d = deployment(desired=2, replicas=3, updated=1, ready=2, template_generation="4",
                   progressing=("True", "ReplicaSetUpdated", ""))
    out = summarize(d, [pod("old-a", "10.1.0.7"), pod("old-b", "10.1.0.8"),
                        pod("new-a", "10.1.0.9", ready=False, waiting="CrashLoopBackOff", restarts=3,
                            generation="4")])
    assert out["state"] == "DEGRADED"
    assert out["reason"] == "pod new-a: CrashLoopBackOff"
    assert len(out["urls"]) == 2


def test_kubernetes_summarize_image_pull_back_off() -> None:
    message = 'Back-off pulling image "liveml/runtime:0.9"'
    out = summarize(deployment(desired=1, ready=0), [pod("p-a", ip=None, ready=False, phase="Pending",
                                                         waiting="ImagePullBackOff", message=message)])
    assert out["state"] == "FAILED"
    assert out["reason"] == f"pod p-a: ImagePullBackOff ({message})"
    out = summarize(deployment(desired=1, ready=0), [pod("p-a", ip=None, ready=False, phase="Pending",
                                                         waiting="ErrImagePull")])
    assert (out["state"], out["reason"]) == ("FAILED", "pod p-a: ErrImagePull")


def test_kubernetes_summarize_unschedulable_for_lack_of_gpus_is_starting_with_the_reason() -> None:
    message = "0/3 nodes are available: 3 Insufficient nvidia.com/gpu."
    out = summarize(deployment(desired=1, ready=0), [pod("p-a", ip=None, ready=False, phase="Pending",
                                                         scheduled=("Unschedulable", message))])
    assert out["state"] == "STARTING"
    assert out["reason"] == f"0/1 replicas ready; pod p-a: Unschedulable ({message})"
    # one of two placed: serving, but short of the wanted count
    out = summarize(deployment(desired=2, ready=1), [
        pod("p-a"), pod("p-b", ip=None, ready=False, phase="Pending", scheduled=("Unschedulable", message))])
    assert out["state"] == "DEGRADED"
    assert out["reason"] == f"1/2 replicas ready; pod p-b: Unschedulable ({message})"


def test_kubernetes_summarize_progress_deadline_exceeded() -> None:
    message = 'ReplicaSet "x-7d9" has timed out progressing.'
    failed = ("False", "ProgressDeadlineExceeded", message)
    out = summarize(deployment(desired=1, ready=0, updated=1, progressing=failed),
                    [pod("p-a", ready=False)])
    assert out["state"] == "FAILED" and out["rollout"]["state"] == "FAILED"
    assert out["reason"] == f"the rollout exceeded its progress deadline: {message}"
    # old pods still serve
    out = summarize(deployment(desired=2, replicas=3, updated=1, ready=2, progressing=failed,
                               template_generation="4"),
                    [pod("old-a"), pod("old-b", "10.1.0.8"),
                     pod("new-a", "10.1.0.9", ready=False, generation="4")])
    assert out["state"] == "DEGRADED" and out["reason"].startswith("the rollout exceeded")


def test_kubernetes_summarize_disabled_and_terminating_pods() -> None:
    out = summarize(deployment(desired=0, replicas=0, updated=0, ready=0), [])
    assert out["state"] == "DISABLED"
    out = summarize(deployment(desired=1, ready=1), [pod("p-a"), pod("p-b", "10.1.0.8", terminating=True)])
    assert out["urls"] == ["http://10.1.0.7:8080"]  # a terminating pod takes no new traffic


def test_kubernetes_summarize_is_pure() -> None:
    d, pods = deployment(), [pod("p-a")]
    before = copy.deepcopy((d, pods))
    summarize(d, pods)
    assert (d, pods) == before


def test_kubernetes_spec_helper_is_valid() -> None:
    # the spec the contract tests use renders all four kinds (else the apply tests would prove less)
    assert [m["kind"] for m in render(spec())] == ["Deployment", "Service", "PodDisruptionBudget",
                                                   "HorizontalPodAutoscaler"]
    assert dataclasses.replace(spec(), enabled=False).autoscaled is False


# ------------------------------------------------------------------- reads the controller makes


def test_kubernetes_ensure_secret_reads_an_existing_token(fake: FakeKube, cluster: KubernetesCluster) -> None:
    import base64
    fake.route("GET", f"/api/v1/namespaces/{NS}/secrets/liveml-replica-token", 200,
               {"kind": "Secret", "data": {"token": base64.b64encode(b"s3cret").decode()}})
    assert cluster.ensure_secret("liveml-replica-token") == "s3cret"
    assert not fake.made("PATCH")  # an existing token is never replaced


def test_kubernetes_ensure_secret_creates_a_missing_one_by_apply(fake: FakeKube,
                                                                  cluster: KubernetesCluster) -> None:
    path = f"/api/v1/namespaces/{NS}/secrets/liveml-replica-token"
    original = fake.answer

    def answer(request: Any) -> tuple[int, Any]:
        if request.method == "GET" and request.path == path and fake.made("PATCH", path):
            import base64
            token = fake.made("PATCH", path)[0].json["stringData"]["token"]
            return 200, {"kind": "Secret", "data": {"token": base64.b64encode(token.encode()).decode()}}
        return original(request)

    fake.answer = answer  # type: ignore[method-assign]
    token = cluster.ensure_secret("liveml-replica-token")
    (patch,) = fake.made("PATCH", path)
    assert patch.content_type == APPLY_PATCH and patch.query["fieldManager"] == ["liveml"]
    assert patch.json["stringData"]["token"] == token and len(token) >= 24
    assert patch.json["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "liveml"


def test_kubernetes_pod_log_asks_for_timestamps_since_and_previous(fake: FakeKube,
                                                                   cluster: KubernetesCluster) -> None:
    log_path = f"{PODS}/p1/log"
    fake.route("GET", log_path, 200, "2026-11-26T12:00:00.5Z hello\n")
    assert cluster.pod_log("p1", since_seconds=7) == "2026-11-26T12:00:00.5Z hello\n"
    assert cluster.pod_log("p1", previous=True) == "2026-11-26T12:00:00.5Z hello\n"
    first, second = fake.made("GET", log_path)
    assert first.query == {"container": ["replica"], "sinceSeconds": ["7"], "timestamps": ["true"]}
    assert second.query == {"container": ["replica"], "previous": ["true"], "timestamps": ["true"]}
    fake.route("GET", log_path, 400, status(400, "BadRequest", "previous terminated container not found"))
    assert cluster.pod_log("p1", previous=True) == ""


def test_kubernetes_follow_pod_log_streams_whole_lines(fake: FakeKube,
                                                       cluster: KubernetesCluster) -> None:
    """A terminating pod's log is followed: ``follow=true`` with timestamps, read as the server
    streams it (chunked), handed on in whole lines only, until the server ends the stream."""
    log_path = f"{PODS}/p1/log"
    fake.route("GET", log_path, 200, iter([b"2026-11-26T12:00:00.5Z Draining\n2026-11-26T12:00:01Z Repl",
                                           b"ica stopped\n"]))
    chunks = list(cluster.follow_pod_log("p1", since_seconds=3))
    assert "".join(chunks) == "2026-11-26T12:00:00.5Z Draining\n2026-11-26T12:00:01Z Replica stopped\n"
    assert all(chunk.endswith("\n") for chunk in chunks), chunks
    (read,) = fake.made("GET", log_path)
    assert read.query == {"container": ["replica"], "follow": ["true"], "sinceSeconds": ["3"],
                          "timestamps": ["true"]}
    fake.route("GET", log_path, 400, status(400, "BadRequest", "container is waiting to start"))
    assert list(cluster.follow_pod_log("p1")) == []


def test_kubernetes_events_nodes_managed_and_all_pod_metrics(fake: FakeKube,
                                                             cluster: KubernetesCluster) -> None:
    fake.route("GET", f"/api/v1/namespaces/{NS}/events", 200,
               {"items": [{"metadata": {"uid": "e1"}, "reason": "FailedScheduling"}]})
    fake.route("GET", "/api/v1/nodes", 200, {"items": [
        {"metadata": {"name": "n1"}, "status": {"allocatable": {"cpu": "3500m", "memory": "8Gi"}}}]})
    fake.route("GET", f"/apis/apps/v1/namespaces/{NS}/deployments", 200, {"items": [
        {"metadata": {"name": NAME, "annotations": {"liveml.dev/deployment-rid": "ri.x"}}}]})
    fake.route("GET", f"/apis/metrics.k8s.io/v1beta1/namespaces/{NS}/pods", 200, {"items": [
        {"metadata": {"name": "p1", "labels": {"app.kubernetes.io/instance": NAME}},
         "containers": [{"name": "replica", "usage": {"cpu": "250m", "memory": "64Mi"}}]}]})
    assert cluster.events()[0]["reason"] == "FailedScheduling"
    assert cluster.nodes() == {"n1": {"cpu": 3.5, "memory": 8 * 2**30}}
    assert cluster.managed() == {NAME: "ri.x"}
    (usage,) = cluster.all_pod_metrics()
    assert (usage["pod"], usage["instance"], usage["cpu"], usage["memory"]) == ("p1", NAME, 0.25, 64 * 2**20)
    selector = "app.kubernetes.io/managed-by=liveml,app.kubernetes.io/name=liveml-replica"
    listed = fake.made("GET", f"/apis/apps/v1/namespaces/{NS}/deployments")[0]
    assert listed.query["labelSelector"] == [selector]
    assert fake.made("GET", "/apis/metrics.k8s.io")[0].query["labelSelector"] == [selector]


def test_kubernetes_role_rules_cover_every_call_the_cluster_makes() -> None:
    """Each method's requests (verb, group, resource) are granted by ROLE_RULES/CLUSTER_ROLE_RULES."""
    from liveml_ext.backends.kubernetes import CLUSTER_ROLE_RULES, ROLE_RULES
    granted = {(g, r, v) for rule in ROLE_RULES + CLUSTER_ROLE_RULES for g in rule["apiGroups"]
               for r in rule["resources"] for v in rule["verbs"]}
    needed = {("apps", "deployments", v) for v in ("get", "list", "patch", "delete")} | {
        ("", "services", "patch"), ("", "services", "delete"), ("", "pods", "list"),
        ("", "pods/log", "get"), ("", "events", "list"), ("", "secrets", "get"),
        ("", "secrets", "patch"), ("", "nodes", "list"), ("metrics.k8s.io", "pods", "list"),
        ("metrics.k8s.io", "nodes", "list"), ("policy", "poddisruptionbudgets", "delete"),
        ("autoscaling", "horizontalpodautoscalers", "patch"),
        ("autoscaling", "horizontalpodautoscalers", "list")}
    assert needed <= granted, needed - granted


def test_kubernetes_summarize_ignores_a_deadline_from_before_the_latest_spec() -> None:
    """Right after an apply the Deployment controller has not seen the new spec yet: the old
    rollout's ProgressDeadlineExceeded says nothing about the new one."""
    stale = deployment(generation=6, observed=5, ready=1, available=1, updated=0,
                       progressing=("False", "ProgressDeadlineExceeded", "timed out"))
    out = summarize(stale, [pod("p-old")])
    assert out["rollout"]["state"] == "PROGRESSING" and not out["rollout"]["observed"]
    assert "deadline" not in out["reason"]
    seen = summarize({**stale, "status": {**stale["status"], "observedGeneration": 6}}, [pod("p-old")])
    assert seen["rollout"]["state"] == "FAILED"


def test_kubernetes_autoscalers_read_the_hpas_cpu_utilization(fake: FakeKube,
                                                               cluster: KubernetesCluster) -> None:
    cpu = {"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 93,
                                                                       "averageValue": "1400m"}}}
    fake.route("GET", f"/apis/autoscaling/v2/namespaces/{NS}/horizontalpodautoscalers", 200, {"items": [
        {"metadata": {"name": NAME},
         "status": {"currentReplicas": 2, "desiredReplicas": 3, "currentMetrics": [cpu]}},
        {"metadata": {"name": "liveml-new-0000"}, "status": {"currentReplicas": 1, "desiredReplicas": 1}}]})
    assert cluster.autoscalers() == {
        NAME: {"current": 2, "desired": 3, "utilization": 0.93},
        "liveml-new-0000": {"current": 1, "desired": 1, "utilization": None}}  # not measured yet
    (request,) = fake.made("GET", "/apis/autoscaling")
    assert request.query["labelSelector"] == [
        "app.kubernetes.io/managed-by=liveml,app.kubernetes.io/name=liveml-replica"]


def test_kubernetes_summarize_an_hpa_scale_up_is_not_degraded() -> None:
    """The HPA raised 2 to 3: the 2 ready pods serve while the third starts (ACTIVE); a pod lost
    from a settled 2 is DEGRADED; before the first full count it is STARTING."""
    d = deployment(desired=3, replicas=3, updated=3, ready=2, available=2)
    pods = [pod("p-a"), pod("p-b", "10.1.0.8"), pod("p-c", "10.1.0.9", ready=False)]
    out = summarize(d, pods, settled=2)
    assert (out["state"], out["reason"]) == ("ACTIVE", "scaling up: 2/3 replicas ready")
    lost = summarize(deployment(desired=2, ready=1, available=1),
                     [pod("p-a"), pod("p-b", "10.1.0.8", ready=False)], settled=2)
    assert (lost["state"], lost["reason"]) == ("DEGRADED", "1/2 replicas ready")
    first = summarize(deployment(desired=2, ready=1, available=1),
                      [pod("p-a"), pod("p-b", "10.1.0.8", ready=False)])
    assert (first["state"], first["reason"]) == ("STARTING", "1/2 replicas ready")
