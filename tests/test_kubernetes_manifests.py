"""The Kubernetes objects of a live deployment: goldens, the Kubernetes schema, liveml's own rules.

No cluster is needed. Rewrite the goldens after an intended change with
``LIVEML_UPDATE_GOLDEN=1 pytest -k kubernetes tests/test_kubernetes_manifests.py`` and review the diff.
"""
from __future__ import annotations

import copy
import dataclasses
import difflib
import json
import os
import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import kubernetes_validate.utils
import pytest
import yaml
from kube_sim import expand

from liveml_ext.backends.k8s_manifests import (
    KubeDeployment,
    check,
    cpu_quantity,
    memory_quantity,
    object_name,
    parse_quantity,
    render,
    to_yaml,
)
from liveml_ext.controller.kubernetes import KubeSettings
from liveml_ext.credentials import ReplicaCredentials

GOLDEN = Path(__file__).resolve().parent / "golden" / "kubernetes"
UPDATE_GOLDEN = os.environ.get("LIVEML_UPDATE_GOLDEN") == "1"
FILE_OF_KIND = {"Deployment": "deployment", "Service": "service", "PodDisruptionBudget": "pdb",
                "HorizontalPodAutoscaler": "hpa"}

RUNTIME = {"minReplicas": 2, "maxReplicas": 4, "cpu": 1.5, "memory": "2GiB", "gpu": 0, "gpuType": "",
           "threadCount": 2, "queueSize": 64, "env": {"LOG_FORMAT": "json", "GREETING": "costs $(PRICE)"},
           "scaleUpLoadThreshold": 0.8, "scaleUpDelay": 10.0, "scaleDownDelay": 60.0}


CREDENTIALS = ReplicaCredentials("golden-key")
RID = "ri.foundry-ml-live.main.live-deployment.5f1c2d3e-0000-4000-8000-00000000abcd"
SHA = "3fa9c2d1e0b8a7f6" * 4


def spec(**changes: Any) -> KubeDeployment:
    """A 2..4 replica CPU deployment with an HPA; ``runtime={...}`` entries update RUNTIME."""
    runtime = {**RUNTIME, **changes.pop("runtime", {})}
    base = dict(
        deployment_rid=RID, replica_credential=CREDENTIALS.issue(RID, SHA),
        gateway_token=CREDENTIALS.hop(RID),
        api_name="house_prices", liveml_namespace="default", kube_namespace="liveml",
        release_rid="ri.models.main.release.0b7e9a10-0000-4000-8000-000000000001",
        release_version="1.2.0", model_uuid="8c6f2b1e-1111-4222-8333-944455556666",
        artifact_url="s3://liveml-artifacts/artifacts/3f/3fa9c2d1e0b8a7f6",
        requirements={"scikit-learn": "1.5.0", "pandas": "2.2.2", "numpy": "1.26.4"},
        generation=3, runtime=runtime, image="liveml/runtime:0.1.0", enabled=True,
        replica_token_secret="liveml-replica-token", replica_profile="autoscaled",
        resource_profile="large")
    return KubeDeployment(**{**base, **changes})


def gpu_spec(**changes: Any) -> KubeDeployment:
    """A fixed 3-replica deployment with one A100 per replica."""
    runtime = {"minReplicas": 3, "maxReplicas": 3, "cpu": 4, "memory": "16GiB", "gpu": 1,
               "gpuType": "NVIDIA A100-SXM4-40GB", "threadCount": 4, "queueSize": 128, "env": {},
               **changes.pop("runtime", {})}
    return spec(api_name="image-classifier", liveml_namespace="vision", release_version="7.0.1",
                generation=1, replica_profile="high-availability", resource_profile="gpu-a100",
                runtime=runtime, **changes)


def spark_spec(**changes: Any) -> KubeDeployment:
    """A fixed 2-replica Spark pipeline: the Spark variant of the replica image."""
    requirements = {"pyspark": "4.3.0", "pandas": "3.1.1", "pyarrow": "26.0.1"}
    runtime = {"minReplicas": 2, "maxReplicas": 2, "cpu": 2, "memory": "4GiB", "gpu": 0,
               "gpuType": "", "threadCount": 2, "queueSize": 64, "env": {},
               **changes.pop("runtime", {})}
    return spec(api_name="churn-spark", release_version="2.0.0", generation=1,
                replica_profile="default", resource_profile="spark", runtime=runtime,
                requirements=requirements, spark=True,
                image=KubeSettings(image="liveml/runtime:0.1.0").image_for(requirements),
                **changes)


CASES = {"": spec, "gpu-": gpu_spec, "spark-": spark_spec}
EXPECTED_FILES = {"deployment.yaml", "service.yaml", "pdb.yaml", "hpa.yaml",
                  "gpu-deployment.yaml", "gpu-service.yaml", "gpu-pdb.yaml",
                  "spark-deployment.yaml", "spark-service.yaml", "spark-pdb.yaml"}


def of_kind(manifests: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [m for m in manifests if m["kind"] == kind]
    assert len(found) == 1, f"{len(found)} {kind} objects"
    return found[0]


def container(manifests: list[dict[str, Any]]) -> dict[str, Any]:
    return of_kind(manifests, "Deployment")["spec"]["template"]["spec"]["containers"][0]


def kube_versions() -> list[str]:
    """The oldest supported version from 1.27 on and the newest, of the installed kubernetes-validate."""
    known = kubernetes_validate.utils.all_versions()  # "1.27.0", once per schema flavour
    versions = sorted({kubernetes_validate.utils.major_minor(v) for v in known},
                      key=lambda v: tuple(int(p) for p in v.split(".")))
    recent = [v for v in versions if tuple(int(p) for p in v.split(".")) >= (1, 27)]
    assert recent, f"kubernetes-validate knows no version from 1.27 on: {versions}"
    return sorted({recent[0], versions[-1]})


# ----------------------------------------------------------------------------------------- goldens


@pytest.mark.parametrize("prefix", sorted(CASES))
def test_kubernetes_manifests_match_goldens(prefix: str) -> None:
    manifests = render(CASES[prefix]())
    problems = []
    for manifest in manifests:
        path = GOLDEN / f"{prefix}{FILE_OF_KIND[manifest['kind']]}.yaml"
        text = to_yaml([manifest])
        if UPDATE_GOLDEN:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        if not path.exists():
            problems.append(f"{path.name} is missing (LIVEML_UPDATE_GOLDEN=1 writes it)")
        elif path.read_text() != text:
            diff = difflib.unified_diff(path.read_text().splitlines(), text.splitlines(),
                                        f"golden/{path.name}", "rendered", lineterm="")
            problems.append("\n".join(diff))
    assert not problems, "\n\n".join(problems)


def test_kubernetes_goldens_are_all_rendered() -> None:
    rendered = {f"{prefix}{FILE_OF_KIND[m['kind']]}.yaml" for prefix, make in CASES.items()
                for m in render(make())}
    assert rendered == EXPECTED_FILES
    assert {p.name for p in GOLDEN.glob("*.yaml")} == EXPECTED_FILES


def test_kubernetes_yaml_round_trips_without_anchors() -> None:
    manifests = render(spec())
    text = to_yaml(manifests)
    assert list(yaml.safe_load_all(text)) == manifests
    assert "&id" not in text and "*id" not in text  # the shared selector is written out each time
    assert text.count("\n---\n") == len(manifests) - 1 and text.startswith("---\n")
    assert to_yaml(render(spec())) == text


# ------------------------------------------------------------------------------ Kubernetes schema


VALIDATED = {"autoscaled": spec, "gpu": gpu_spec, "disabled": lambda: spec(enabled=False),
             "long-name": lambda: spec(api_name="x_" * 31 + "z", liveml_namespace="team-" + "n" * 58)}


@pytest.mark.parametrize("version", kube_versions())
@pytest.mark.parametrize("case", sorted(VALIDATED))
def test_kubernetes_manifests_validate_strictly(case: str, version: str) -> None:
    for manifest in render(VALIDATED[case]()):
        assert kubernetes_validate.validate(manifest, version, strict=True) == version


@pytest.mark.parametrize("version", kube_versions())
def test_kubernetes_strict_validation_rejects_an_unknown_field(version: str) -> None:
    deployment = of_kind(render(spec()), "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}  # a typo
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, version, strict=True)


# ------------------------------------------------------------------------------------ liveml rules


@pytest.mark.parametrize("make", [spec, gpu_spec, lambda: spec(enabled=False),
                                  lambda: spec(runtime={"minReplicas": 1, "maxReplicas": 1})])
def test_kubernetes_check_passes_on_rendered_manifests(make: Any) -> None:
    assert check(render(make())) == []


def _selector_broken(ms: list[dict[str, Any]]) -> None:
    of_kind(ms, "Deployment")["spec"]["selector"]["matchLabels"]["app.kubernetes.io/instance"] = "other"


def _service_selector_broken(ms: list[dict[str, Any]]) -> None:
    of_kind(ms, "Service")["spec"]["selector"]["app.kubernetes.io/name"] = "something-else"


def _max_unavailable(ms: list[dict[str, Any]]) -> None:
    of_kind(ms, "Deployment")["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] = 1


def _no_readiness(ms: list[dict[str, Any]]) -> None:
    del container(ms)["readinessProbe"]


def _gpu_limit(ms: list[dict[str, Any]]) -> None:
    container(ms)["resources"]["limits"]["nvidia.com/gpu"] = 2


def _long_name(ms: list[dict[str, Any]]) -> None:
    of_kind(ms, "Service")["metadata"]["name"] = "l" * 64


def _bad_label(ms: list[dict[str, Any]]) -> None:
    of_kind(ms, "Service")["metadata"]["labels"]["liveml.dev/release-rid"] = "ri.models.main.release.1-"


def _cpu_request(ms: list[dict[str, Any]]) -> None:
    container(ms)["resources"]["requests"]["cpu"] = "500m"


def _memory_limit(ms: list[dict[str, Any]]) -> None:
    del container(ms)["resources"]["limits"]["memory"]


def _replicas_with_hpa(ms: list[dict[str, Any]]) -> None:
    of_kind(ms, "Deployment")["spec"]["replicas"] = 2


def _hpa_removed(ms: list[dict[str, Any]]) -> None:
    ms.remove(of_kind(ms, "HorizontalPodAutoscaler"))


BREAKS = {
    "selector-matches-pods": (spec, _selector_broken, "does not match the pod labels"),
    "service-selector-matches-pods": (spec, _service_selector_broken, "matches the pods of no rendered"),
    "max-unavailable-0": (spec, _max_unavailable, "maxUnavailable: 0"),
    "readiness-probe": (spec, _no_readiness, "no readiness probe"),
    "gpu-request-equals-limit": (gpu_spec, _gpu_limit,
                                 "the GPU (nvidia.com/gpu) request 1 must equal its limit 2"),
    "name-at-most-63": (spec, _long_name, "is not a DNS-1035 label of at most 63 characters"),
    "label-value": (spec, _bad_label, "is not a label value"),
    "cpu-request-equals-limit": (spec, _cpu_request, "the cpu request '500m' must equal its limit '1500m'"),
    "memory-request-equals-limit": (spec, _memory_limit,
                                    "the memory request '2Gi' must equal its limit None"),
    "no-replicas-with-hpa": (spec, _replicas_with_hpa, "an HPA scales it, so it must not set replicas"),
    "replicas-without-hpa": (spec, _hpa_removed, "no HPA scales it, so it must set replicas"),
}


@pytest.mark.parametrize("rule", sorted(BREAKS))
def test_kubernetes_check_catches_each_broken_rule(rule: str) -> None:
    make, breaker, message = BREAKS[rule]
    manifests = render(make())
    breaker(manifests)
    problems = check(manifests)
    assert len(problems) == 1 and message in problems[0], problems


@pytest.mark.parametrize("name,ok", [("http", True), ("p" * 15, True), ("8080-http", True),
                                     ("p" * 16, False), ("8080", False), ("a--b", False),
                                     ("-http", False), ("HTTP", False)])
def test_kubernetes_check_port_names_are_iana_service_names(name: str, ok: bool) -> None:
    manifests = render(spec())
    container(manifests)["ports"][0]["name"] = name
    problems = [p for p in check(manifests) if "port name" in p]
    if ok:
        assert problems == []
    else:
        assert len(problems) == 1 and "is not an IANA service name" in problems[0], problems


def test_kubernetes_check_compares_quantities_by_value() -> None:
    manifests = render(spec())
    resources = container(manifests)["resources"]
    resources["requests"].update(cpu="1.5", memory="2048Mi")  # the same amounts, other spellings
    assert check(manifests) == []
    assert parse_quantity("1500m") == parse_quantity(1.5) == parse_quantity("1.5")
    assert parse_quantity("1Gi") == parse_quantity("1073741824") and parse_quantity("1e3") == 1000


# ------------------------------------------------------------------------- replicas, PDB and HPA


def test_kubernetes_disabled_deployment_has_zero_replicas_and_no_hpa() -> None:
    manifests = render(spec(enabled=False))
    assert [m["kind"] for m in manifests] == ["Deployment", "Service"]
    assert of_kind(manifests, "Deployment")["spec"]["replicas"] == 0


def test_kubernetes_fixed_count_has_replicas_and_no_hpa() -> None:
    manifests = render(spec(runtime={"minReplicas": 3, "maxReplicas": 3}))
    assert [m["kind"] for m in manifests] == ["Deployment", "Service", "PodDisruptionBudget"]
    assert of_kind(manifests, "Deployment")["spec"]["replicas"] == 3
    assert of_kind(manifests, "PodDisruptionBudget")["spec"]["maxUnavailable"] == 1


def test_kubernetes_single_replica_has_no_pdb() -> None:
    manifests = render(spec(runtime={"minReplicas": 1, "maxReplicas": 1}))
    assert [m["kind"] for m in manifests] == ["Deployment", "Service"]
    assert of_kind(manifests, "Deployment")["spec"]["replicas"] == 1


def test_kubernetes_autoscaled_deployment_leaves_replicas_to_the_hpa() -> None:
    manifests = render(spec(runtime={"minReplicas": 2, "maxReplicas": 5, "scaleUpDelay": 12.5,
                                     "scaleDownDelay": 7200, "scaleUpLoadThreshold": 0.6}))
    assert "replicas" not in of_kind(manifests, "Deployment")["spec"]
    hpa = of_kind(manifests, "HorizontalPodAutoscaler")["spec"]
    target = hpa["metrics"][0]["resource"]
    assert (hpa["scaleTargetRef"]["name"], hpa["minReplicas"], hpa["maxReplicas"]) == (
        of_kind(manifests, "Deployment")["metadata"]["name"], 2, 5)
    assert (target["name"], target["target"]["averageUtilization"]) == ("cpu", 60)
    assert hpa["behavior"]["scaleUp"]["stabilizationWindowSeconds"] == 13  # rounded up
    assert hpa["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 3600  # the API's maximum


def test_kubernetes_hpa_bounds_scale_from_zero_and_high_thresholds() -> None:
    manifests = render(spec(runtime={"minReplicas": 0, "maxReplicas": 3, "scaleUpLoadThreshold": 4}))
    hpa = of_kind(manifests, "HorizontalPodAutoscaler")["spec"]
    assert hpa["minReplicas"] == 1  # an HPA cannot scale to zero
    assert hpa["metrics"][0]["resource"]["target"]["averageUtilization"] == 90
    assert "PodDisruptionBudget" not in [m["kind"] for m in manifests]


def test_kubernetes_spec_rejects_impossible_settings() -> None:
    with pytest.raises(ValueError, match="minReplicas 3 and maxReplicas 2"):
        spec(runtime={"minReplicas": 3, "maxReplicas": 2})
    with pytest.raises(ValueError, match="shorter than the pre-stop pause and the drain"):
        spec(termination_grace_seconds=30)


# ---------------------------------------------------------------------------------------- names


def test_kubernetes_names_fit_63_characters_for_a_very_long_api_name() -> None:
    long_api, namespace = "m" * 40 + "_" + "x" * 22, "n" * 63
    name = object_name(long_api, namespace)
    assert len(name) <= 46 and re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", name), name
    manifests = render(spec(api_name=long_api, liveml_namespace=namespace))
    for manifest in manifests:
        assert manifest["metadata"]["name"] == name
        for value in manifest["metadata"]["labels"].values():
            assert len(value) <= 63
    assert check(manifests) == []


def test_kubernetes_names_are_deterministic_and_unique() -> None:
    assert object_name("house_prices", "default") == object_name("house_prices", "default")
    names = {object_name(api, ns) for api, ns in [("house_prices", "default"), ("house-prices", "default"),
                                                  ("house_prices", "team-a"), ("a" * 63, "default"),
                                                  ("a" * 62 + "b", "default")]}
    assert len(names) == 5
    assert object_name("house_prices", "default").startswith("liveml-house-prices-")


def test_kubernetes_rids_live_in_annotations_not_labels() -> None:
    deployment = of_kind(render(spec(api_name="trailing-")), "Deployment")
    meta = deployment["metadata"]
    assert meta["annotations"]["liveml.dev/deployment-rid"] == spec().deployment_rid
    assert meta["annotations"]["liveml.dev/api-name"] == "trailing-"
    assert "liveml.dev/api-name" not in meta["labels"]  # "trailing-" is not a label value
    assert not any(v.startswith("ri.") for v in meta["labels"].values())


# ---------------------------------------------------------------------------- the replica's pod


def test_kubernetes_gpu_request_equals_limit() -> None:
    manifests = render(gpu_spec(runtime={"gpu": 2}))
    resources = container(manifests)["resources"]
    assert resources["requests"]["nvidia.com/gpu"] == resources["limits"]["nvidia.com/gpu"] == 2
    pod = of_kind(manifests, "Deployment")["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-40GB"}
    assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert "CUDA_VISIBLE_DEVICES" not in {e["name"] for e in container(manifests)["env"]}
    other = container(render(gpu_spec(gpu_resource="amd.com/gpu", runtime={"gpuType": ""})))["resources"]
    assert other["requests"]["amd.com/gpu"] == other["limits"]["amd.com/gpu"] == 1
    assert "nodeSelector" not in of_kind(render(gpu_spec(runtime={"gpuType": ""})),
                                         "Deployment")["spec"]["template"]["spec"]


@pytest.mark.parametrize(("memory", "quantity"), [("1GiB", "1Gi"), ("512MiB", "512Mi"), ("1.5GiB", "1536Mi"),
                                                 ("1GB", "1G"), ("1000", "1k"), ("1234567", "1234567")])
def test_kubernetes_memory_quantities_are_exact(memory: str, quantity: str) -> None:
    assert memory_quantity(memory) == quantity
    resources = container(render(spec(runtime={"memory": memory})))["resources"]
    assert resources["requests"]["memory"] == resources["limits"]["memory"] == quantity


def test_kubernetes_cpu_is_millicores_and_sets_thread_pools() -> None:
    assert (cpu_quantity(0.5), cpu_quantity(2), cpu_quantity(0.0001)) == ("500m", "2000m", "1m")
    c = container(render(spec(runtime={"cpu": 2.25})))
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert c["resources"]["limits"]["cpu"] == c["resources"]["requests"]["cpu"] == "2250m"
    assert env["OMP_NUM_THREADS"] == env["OPENBLAS_NUM_THREADS"] == env["MKL_NUM_THREADS"] == "3"


def test_kubernetes_env_carries_token_requirements_and_literal_values() -> None:
    c = container(render(spec(runtime={"env": {"OMP_NUM_THREADS": "64", "LIVEML_REPLICA_TOKEN": "x",
                                               "PRICE_NOTE": "costs $(PRICE) or $$5"}})))
    env = {e["name"]: e for e in c["env"]}
    assert [e["name"] for e in c["env"]].count("OMP_NUM_THREADS") == 1
    assert env["OMP_NUM_THREADS"]["value"] == "2"  # the platform's value wins, as on the local backend
    # the deployment's own credentials, for its artifact and from the gateway: never the key
    assert env["LIVEML_REPLICA_TOKEN"]["value"] == CREDENTIALS.issue(RID, SHA)
    assert CREDENTIALS.artifact(env["LIVEML_REPLICA_TOKEN"]["value"]) == SHA
    assert env["LIVEML_GATEWAY_TOKEN"]["value"] == CREDENTIALS.hop(RID)
    assert CREDENTIALS.artifact(env["LIVEML_GATEWAY_TOKEN"]["value"]) is None
    assert "golden-key" not in json.dumps(c)
    standalone = {e["name"]: e for e in container(render(spec(replica_credential="")))["env"]}
    assert standalone["LIVEML_REPLICA_TOKEN"]["valueFrom"] == {
        "secretKeyRef": {"name": "liveml-replica-token", "key": "token"}}
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    plain = {name: e["value"] for name, e in env.items() if "value" in e}
    assert expand(env["PRICE_NOTE"]["value"], {**plain, "PRICE": "9"}) == "costs $(PRICE) or $$5"
    assert json.loads(expand(env["LIVEML_REQUIREMENTS"]["value"], plain)) == spec().requirements


def test_kubernetes_env_carries_the_input_example_only_when_there_is_one() -> None:
    assert "LIVEML_INPUT_EXAMPLE" not in {e["name"] for e in container(render(spec()))["env"]}
    example = {"columns": [{"name": "note", "type": "string", "required": True}],
               "rows": [{"note": "costs $(PRICE)"}]}
    env = {e["name"]: e.get("value") for e in container(render(spec(input_example=example)))["env"]}
    assert json.loads(expand(env["LIVEML_INPUT_EXAMPLE"], env)) == example


def test_kubernetes_probes_and_shutdown_fit_the_runtime() -> None:
    manifests = render(spec())
    c, pod = container(manifests), of_kind(manifests, "Deployment")["spec"]["template"]["spec"]
    assert c["readinessProbe"]["httpGet"]["path"] == c["startupProbe"]["httpGet"]["path"] == "/health/ready"
    assert c["livenessProbe"]["httpGet"]["path"] == "/health/live"
    startup = c["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 300  # slow model loads pass
    pause = float(re.search(r"sleep\((\d+)\)", c["lifecycle"]["preStop"]["exec"]["command"][-1]).group(1))
    assert 0 < pause and pause + 30 <= pod["terminationGracePeriodSeconds"]  # 30 s: the replica's drain
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    assert of_kind(manifests, "Service")["spec"]["ports"] == [
        {"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}]


def test_kubernetes_args_parse_with_the_runtime_cli(monkeypatch: pytest.MonkeyPatch) -> None:
    """The rendered command line means what the local backend's does, to the real runtime parser."""
    import liveml_runtime.__main__ as cli
    import liveml_runtime.logs as logs
    import liveml_runtime.server as server

    seen: dict[str, Any] = {}
    monkeypatch.setattr(logs, "configure", lambda tags: None)
    monkeypatch.setattr(server, "serve", lambda config, host, port, port_file: seen.update(
        config=config, host=host, port=port))
    monkeypatch.setattr(cli, "run_loop", lambda main: 0)
    monkeypatch.setenv("LIVEML_REPLICA_TOKEN", "s3cret")
    s = spec(artifact_url="s3://bucket/odd$(name)/ab")
    c = container(render(s))
    assert c["command"] == ["python", "-m", "liveml_runtime"]
    assert cli.main([expand(arg, {"POD_NAME": "liveml-house-prices-7d9f-x2x4q"}) for arg in c["args"]]) == 0
    config = seen["config"]
    assert (seen["host"], seen["port"], config.artifact, config.node_id, config.model_uuid,
            config.deployment_rid, config.release, config.thread_count, config.max_queue, config.token) == (
        "0.0.0.0", 8080, "s3://bucket/odd$(name)/ab", "liveml-house-prices-7d9f-x2x4q", s.model_uuid,
        s.deployment_rid, "1.2.0", 2, 64, "s3cret")
    assert config.requirements == ""  # no file in a pod: the runtime reads LIVEML_REQUIREMENTS


def test_kubernetes_generation_rolls_pods_but_a_replica_count_does_not() -> None:
    def template(s: KubeDeployment) -> dict[str, Any]:
        return of_kind(render(s), "Deployment")["spec"]["template"]

    fixed = {"minReplicas": 3, "maxReplicas": 3}
    base = template(spec(runtime=fixed))
    rolled = template(spec(generation=4, runtime=fixed))
    assert rolled["metadata"]["annotations"]["liveml.dev/generation"] == "4" and rolled != base
    assert template(spec(runtime={"minReplicas": 5, "maxReplicas": 5})) == base


def test_kubernetes_render_returns_fresh_objects() -> None:
    s = spec()
    first = render(s)
    kept = copy.deepcopy(first)
    of_kind(first, "Deployment")["spec"]["selector"]["matchLabels"]["x"] = "y"
    container(first)["env"].clear()
    assert render(s) == kept
    assert dataclasses.replace(s) == s


def test_kubernetes_spark_releases_run_on_the_spark_image() -> None:
    settings = KubeSettings()
    assert settings.image_for({"scikit-learn": "1.5.0"}) == settings.replica_image
    assert settings.image_for({"pyspark": "4.3.0"}) == settings.spark_replica_image
    assert settings.image_for({}, adapter="SparkModelAdapter") == settings.spark_replica_image
    assert settings.spark_replica_image.endswith("-spark")
    assert KubeSettings(image="reg/liveml:1").spark_replica_image == "reg/liveml:1-spark"
    custom = KubeSettings(image="reg/liveml:1", spark_image="reg/liveml-spark:1")
    assert custom.image_for({"PySpark": "4.3.0"}) == "reg/liveml-spark:1"
    assert container(render(spark_spec()))["image"] == "liveml/runtime:0.1.0-spark"
