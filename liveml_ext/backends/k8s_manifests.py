"""Kubernetes objects for one live deployment, rendered as plain dicts (no cluster, no client).

``render(KubeDeployment(...))`` gives, in this order:

- an ``apps/v1 Deployment`` of replica pods (``python -m liveml_runtime serve``) that rolls one pod
  at a time and never below the wanted count (``maxSurge: 1``, ``maxUnavailable: 0``), as the
  local backend does;
- a ``v1 Service`` (ClusterIP, port 80 to the replica port) over those pods;
- a ``policy/v1 PodDisruptionBudget`` (``maxUnavailable: 1``) when ``minReplicas >= 2``;
- an ``autoscaling/v2 HorizontalPodAutoscaler`` when ``minReplicas < maxReplicas``. The
  Deployment then leaves ``replicas`` out, so applying it again never fights the autoscaler.

A disabled deployment keeps its Deployment and Service at 0 replicas (no PDB, no HPA).

``check(manifests)`` states liveml's own rules (on top of the Kubernetes schema) and ``to_yaml``
writes the objects as a multi-document YAML stream. Nothing here does I/O.

Choices worth knowing:

- Names: ``object_name`` is ``liveml-<api name>-<hash of (namespace, api name)>``, at most 46
  characters, so that pod names (``<name>-<pod-template-hash>-<5 chars>``) stay within 63 and
  equal the pod's host name. The hash keeps names unique when several liveml namespaces share one
  Kubernetes namespace and when two API names differ only in characters that DNS forbids (``_``).
- RIDs and versions go in ``liveml.dev/*`` annotations: they are not valid label values.
- Autoscaling: the local autoscaler scales on requests in flight per thread against
  ``scaleUpLoadThreshold``. Kubernetes has no such metric without a custom-metrics adapter, so the
  HPA targets the average CPU utilization (of the CPU request, which equals the limit) at
  ``scaleUpLoadThreshold`` x 100 %, clamped to 10..90 % (utilization cannot pass 100 % when the
  limit equals the request, so a higher target could never scale up). It scales one pod at a
  time, up after ``scaleUpDelay`` and down after ``scaleDownDelay`` seconds of stable
  recommendations (the HPA's stabilization windows). The HPA never goes below one replica.
- Shutdown: ``preStop`` sleeps ``PRE_STOP_SECONDS`` so that endpoint controllers and the gateway
  drop the pod before it gets SIGTERM; the replica then drains for up to ``DRAIN_SECONDS``;
  ``terminationGracePeriodSeconds`` must cover both.
- ``$`` in arguments and environment values is written as ``$$``: Kubernetes expands ``$(VAR)``
  there, the local backend does not, and a value must mean the same on both.
"""
from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import yaml

from ..core.models import RuntimeConfiguration
from ..core.units import parse_memory
from .base import typed_runtime

APP_NAME = "liveml-replica"
MANAGED_BY = "liveml"
CONTAINER = "replica"
PORT_NAME = "http"
SERVICE_PORT = 80
ANNOTATION = "liveml.dev/"
REQUIREMENTS_ENV = "LIVEML_REQUIREMENTS"
INPUT_EXAMPLE_ENV = "LIVEML_INPUT_EXAMPLE"  # the submission's input example, inline JSON
TOKEN_ENV = "LIVEML_REPLICA_TOKEN"
GATEWAY_TOKEN_ENV = "LIVEML_GATEWAY_TOKEN"
THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"  # set on nodes by NVIDIA GPU feature discovery
PRE_STOP_SECONDS = 5
DRAIN_SECONDS = 30  # the replica's own drain deadline after SIGTERM (runtime/liveml_runtime/server.py)
STARTUP_SECONDS = 600  # default: models may take long to download and load (--startup-timeout)
PROGRESS_DEADLINE_SECONDS = 600  # default rollout deadline (--progress-deadline)
RUN_AS = 10001  # the runtime image's user (runtime/Dockerfile)
MAX_OBJECT_NAME = 46  # 46 + len("-<10 char pod-template-hash>-<5 chars>") = 63
HPA_MAX_WINDOW = 3600  # the API's limit on stabilizationWindowSeconds

DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
DNS1035_LABEL = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")
LABEL_NAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
#: IANA_SVC_NAME: at most 15 characters, a DNS-1123 label with a letter and no "--"
PORT_NAME_RE = re.compile(r"(?=.{1,15}$)(?=.*[a-z])(?!.*--)[a-z0-9]([-a-z0-9]*[a-z0-9])?")
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class KubeDeployment:
    """What the Kubernetes objects of one live deployment are made from.

    ``runtime`` is the deployment's ``RuntimeConfiguration`` (a camelCase mapping is read into
    one, so a standalone render may pass a dict);
    ``artifact_url`` an fsspec URL the pod can read; ``replica_credential`` the pods' credential
    for their release's artifact and ``gateway_token`` what the gateway presents to them (both
    per deployment, ``liveml_ext.credentials``). Without them (a standalone render) pods read the
    token of Secret ``replica_token_secret`` in ``kube_namespace`` instead. The dict fields are
    read, never changed.
    """

    deployment_rid: str
    api_name: str
    liveml_namespace: str
    kube_namespace: str
    release_rid: str
    release_version: str
    model_uuid: str
    artifact_url: str
    requirements: Mapping[str, str]
    generation: int
    runtime: RuntimeConfiguration
    image: str
    enabled: bool
    replica_token_secret: str
    replica_profile: str
    resource_profile: str
    gpu_resource: str = "nvidia.com/gpu"
    port: int = 8080
    termination_grace_seconds: int = 45
    startup_seconds: int = STARTUP_SECONDS  # how long a pod may take to become ready
    progress_deadline_seconds: int = PROGRESS_DEADLINE_SECONDS  # a rollout's deadline
    input_example: Mapping[str, Any] | None = None  # the submission's {"columns", "rows"}
    spark: bool = False  # a Spark model: the JVM sizes its heap from the container's memory limit
    replica_credential: str = ""  # reads this release's artifact only
    gateway_token: str = ""  # the gateway's requests to this deployment's pods carry it

    def __post_init__(self) -> None:
        object.__setattr__(self, "runtime", typed_runtime(self.runtime))
        low, high = self.min_replicas, self.max_replicas
        if not 0 <= low <= high:
            raise ValueError(f"minReplicas {low} and maxReplicas {high}: want 0 <= min <= max")
        if self.termination_grace_seconds < PRE_STOP_SECONDS + DRAIN_SECONDS:
            raise ValueError(f"termination_grace_seconds {self.termination_grace_seconds} is shorter "
                             f"than the pre-stop pause and the drain ({PRE_STOP_SECONDS + DRAIN_SECONDS} s)")
        if not 0 < self.port < 65536:
            raise ValueError(f"port {self.port} is not a TCP port")
        if not DNS1123_LABEL.fullmatch(self.kube_namespace) or len(self.kube_namespace) > 63:
            raise ValueError(f"{self.kube_namespace!r} is not a Kubernetes namespace name")
        for key in self.runtime.env:
            if not ENV_NAME.fullmatch(key):
                raise ValueError(f"{key!r} is not an environment variable name")

    @property
    def min_replicas(self) -> int:
        return self.runtime.min_replicas

    @property
    def max_replicas(self) -> int:
        return self.runtime.max_replicas

    @property
    def autoscaled(self) -> bool:
        """An HPA owns the replica count: enabled, and room between min and max."""
        return self.enabled and self.min_replicas < self.max_replicas


# ---------------------------------------------------------------------------------------- names


def _slug(text: str) -> str:
    """Lower case letters, digits and single dashes, no dash at either end."""
    return re.sub(r"-+", "-", re.sub(r"[^a-z0-9]+", "-", text.lower())).strip("-")


def object_name(api_name: str, liveml_namespace: str) -> str:
    """The name of every object of a deployment: a DNS-1035 label of at most 46 characters
    (``liveml-<api name>-<8 hex>``), the same for the same (namespace, API name), different for
    different ones."""
    digest = hashlib.sha256(f"{liveml_namespace}\0{api_name}".encode()).hexdigest()[:8]
    room = MAX_OBJECT_NAME - len("liveml-") - len(digest) - 1
    slug = _slug(api_name)[:room].rstrip("-")
    return f"liveml-{slug}-{digest}" if slug else f"liveml-{digest}"


def label_value(text: str) -> str | None:
    """``text`` when it is a valid label value, else None (it then lives in an annotation)."""
    return text if len(text) <= 63 and LABEL_VALUE.fullmatch(text) else None


def gpu_product(gpu_type: str) -> str:
    """A GPU model as GPU feature discovery labels it: ``NVIDIA A100-SXM4-40GB`` ->
    ``NVIDIA-A100-SXM4-40GB`` (characters a label value cannot hold become dashes)."""
    value = re.sub(r"[^A-Za-z0-9_.-]+", "-", gpu_type.strip())
    return re.sub(r"^[^A-Za-z0-9]+|[^A-Za-z0-9]+$", "", value[:63])


# ------------------------------------------------------------------------------------ resources


def cpu_quantity(cores: float) -> str:
    """Cores as a millicore quantity: 1.5 -> ``1500m`` (at least ``1m``)."""
    return f"{max(1, round(float(cores) * 1000))}m"


_BINARY = (("Ei", 2**60), ("Pi", 2**50), ("Ti", 2**40), ("Gi", 2**30), ("Mi", 2**20), ("Ki", 2**10))
_DECIMAL = (("E", 10**18), ("P", 10**15), ("T", 10**12), ("G", 10**9), ("M", 10**6), ("k", 10**3))


def memory_quantity(memory: str | int) -> str:
    """liveml's memory size as an exact Kubernetes quantity: ``1GiB`` -> ``1Gi``, ``512MB`` ->
    ``512M``, an odd byte count -> that count."""
    size = parse_memory(memory)
    for suffix, unit in _BINARY + _DECIMAL:
        if size >= unit and size % unit == 0:
            return f"{size // unit}{suffix}"
    return str(size)


_QUANTITY = re.compile(r"([+-]?(?:\d+\.?\d*|\.\d+))(?:([eE][+-]?\d+)|(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]))?")
_SUFFIX = {"n": Fraction(1, 10**9), "u": Fraction(1, 10**6), "m": Fraction(1, 1000), "": Fraction(1),
           **{s: Fraction(u) for s, u in _BINARY + _DECIMAL}}


def parse_quantity(value: Any) -> Fraction:
    """A Kubernetes quantity (``"1500m"``, ``"1Gi"``, ``2``, ``"1e3"``) as an exact number."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a quantity")
    if isinstance(value, int | float):
        return Fraction(value)
    m = _QUANTITY.fullmatch(str(value).strip())
    if not m:
        raise ValueError(f"{value!r} is not a quantity")
    number = Fraction(m.group(1))
    if m.group(2):
        return number * Fraction(10) ** int(m.group(2)[1:])
    return number * _SUFFIX[m.group(3) or ""]


# ------------------------------------------------------------------------------------- render


def _escape(value: str) -> str:
    """Keep Kubernetes from expanding ``$(VAR)`` in a literal value."""
    return value.replace("$", "$$")


def _selector(name: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": APP_NAME, "app.kubernetes.io/instance": name,
            "app.kubernetes.io/managed-by": MANAGED_BY}


def _labels(spec: KubeDeployment, name: str) -> dict[str, str]:
    labels = {**_selector(name), "app.kubernetes.io/component": "replica"}
    for key, text in (("namespace", spec.liveml_namespace), ("api-name", spec.api_name)):
        if label_value(text) is not None:
            labels[ANNOTATION + key] = text
    return labels


def _annotations(spec: KubeDeployment) -> dict[str, str]:
    return {
        ANNOTATION + "deployment-rid": spec.deployment_rid,
        ANNOTATION + "namespace": spec.liveml_namespace,
        ANNOTATION + "api-name": spec.api_name,
        ANNOTATION + "release-rid": spec.release_rid,
        ANNOTATION + "release-version": spec.release_version,
        ANNOTATION + "model-uuid": spec.model_uuid,
        ANNOTATION + "generation": str(spec.generation),
        ANNOTATION + "replica-profile": spec.replica_profile,
        ANNOTATION + "resource-profile": spec.resource_profile,
    }


def _metadata(spec: KubeDeployment, name: str) -> dict[str, Any]:
    return {"name": name, "namespace": spec.kube_namespace, "labels": _labels(spec, name),
            "annotations": _annotations(spec)}


def _token_env(spec: KubeDeployment) -> list[dict[str, Any]]:
    """The pods' own credentials, else (a standalone render) the Secret's token."""
    if not spec.replica_credential:
        return [{"name": TOKEN_ENV, "valueFrom": {"secretKeyRef": {
            "name": spec.replica_token_secret, "key": "token"}}}]
    return [{"name": TOKEN_ENV, "value": spec.replica_credential},
            {"name": GATEWAY_TOKEN_ENV, "value": spec.gateway_token or spec.replica_credential}]


def _env(spec: KubeDeployment, threads: int) -> list[dict[str, Any]]:
    """Platform variables first, then the deployment's own (sorted); the platform's win, as on the
    local backend."""
    gpu = spec.runtime.gpu
    env: list[dict[str, Any]] = [
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}}},
        *_token_env(spec),
        {"name": REQUIREMENTS_ENV,
         "value": _escape(json.dumps(dict(spec.requirements), sort_keys=True, separators=(",", ":")))},
        *({"name": key, "value": str(threads)} for key in THREAD_ENV),
        {"name": "PYTHONUNBUFFERED", "value": "1"},
    ]
    if spec.input_example:
        env.append({"name": INPUT_EXAMPLE_ENV, "value": _escape(
            json.dumps(dict(spec.input_example), sort_keys=True, separators=(",", ":")))})
    if not gpu:  # as on the local backend: a replica without GPUs does not see any
        env.append({"name": "CUDA_VISIBLE_DEVICES", "value": ""})
    if spec.spark:  # as on the local backend: the driver heap is half of the memory limit
        env.append({"name": "LIVEML_MEMORY_LIMIT", "valueFrom": {"resourceFieldRef": {
            "containerName": CONTAINER, "resource": "limits.memory", "divisor": "1"}}})
    reserved = {item["name"] for item in env}
    user = spec.runtime.env
    env += [{"name": key, "value": _escape(str(user[key]))} for key in sorted(user) if key not in reserved]
    return env


def _resources(spec: KubeDeployment) -> dict[str, Any]:
    config = spec.runtime
    amounts: dict[str, Any] = {"cpu": cpu_quantity(config.cpu),
                               "memory": memory_quantity(config.memory)}
    gpu = config.gpu
    if gpu:
        amounts[spec.gpu_resource] = gpu
    return {"requests": dict(amounts), "limits": dict(amounts)}


def _probe(path: str, period: int, timeout: int, failures: int) -> dict[str, Any]:
    return {"httpGet": {"path": path, "port": PORT_NAME, "scheme": "HTTP"}, "periodSeconds": period,
            "timeoutSeconds": timeout, "successThreshold": 1, "failureThreshold": failures}


def _container(spec: KubeDeployment, threads: int) -> dict[str, Any]:
    config = spec.runtime
    args = ["serve", "--artifact", _escape(spec.artifact_url), "--host", "0.0.0.0",
            "--port", str(spec.port), "--model-uuid", _escape(spec.model_uuid),
            "--node-id", "$(POD_NAME)", "--deployment-rid", _escape(spec.deployment_rid),
            "--release", _escape(spec.release_version),
            "--thread-count", str(config.thread_count),
            "--max-queue", str(config.queue_size)]
    startup_period = 5
    return {
        "name": CONTAINER,
        "image": spec.image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["python", "-m", "liveml_runtime"],
        "args": args,
        "ports": [{"name": PORT_NAME, "containerPort": spec.port, "protocol": "TCP"}],
        "env": _env(spec, threads),
        "resources": _resources(spec),
        # until the model is loaded and self-tested; then readiness and liveness take over
        "startupProbe": _probe("/health/ready", startup_period, 2,
                               max(1, math.ceil(spec.startup_seconds / startup_period))),
        "readinessProbe": _probe("/health/ready", 5, 2, 3),
        # generous: a replica busy with long predictions must not be restarted
        "livenessProbe": _probe("/health/live", 10, 5, 6),
        "lifecycle": {"preStop": {"exec": {
            # the image's python, not a sleep binary the image might not have; 1.27 lacks preStop.sleep
            "command": ["python", "-c", f"import time; time.sleep({PRE_STOP_SECONDS})"]}}},
        "securityContext": {"allowPrivilegeEscalation": False, "privileged": False,
                            "capabilities": {"drop": ["ALL"]}},
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }


def _pod_spec(spec: KubeDeployment, name: str) -> dict[str, Any]:
    config = spec.runtime
    threads = max(1, math.ceil(config.cpu))
    pod: dict[str, Any] = {
        "containers": [_container(spec, threads)],
        "terminationGracePeriodSeconds": spec.termination_grace_seconds,
        "automountServiceAccountToken": False,  # replicas never call the Kubernetes API
        "enableServiceLinks": False,  # no env var per Service of the namespace
        "securityContext": {"runAsNonRoot": True, "runAsUser": RUN_AS, "runAsGroup": RUN_AS,
                            "fsGroup": RUN_AS, "seccompProfile": {"type": "RuntimeDefault"}},
        # spread replicas over nodes when the cluster allows it (a node loss takes one)
        "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "kubernetes.io/hostname",
                                       "whenUnsatisfiable": "ScheduleAnyway",
                                       "labelSelector": {"matchLabels": _selector(name)}}],
    }
    if config.gpu:
        if config.gpu_type:
            pod["nodeSelector"] = {GPU_PRODUCT_LABEL: gpu_product(config.gpu_type)}
        # GPU nodes are commonly tainted with the device plugin's resource name
        pod["tolerations"] = [{"key": spec.gpu_resource, "operator": "Exists", "effect": "NoSchedule"}]
    return pod


def render_deployment(spec: KubeDeployment) -> dict[str, Any]:
    name = object_name(spec.api_name, spec.liveml_namespace)
    body: dict[str, Any] = {}
    if not spec.enabled:
        body["replicas"] = 0
    elif not spec.autoscaled:
        body["replicas"] = spec.min_replicas
    body.update({
        "revisionHistoryLimit": 3,
        "progressDeadlineSeconds": spec.progress_deadline_seconds,
        "selector": {"matchLabels": _selector(name)},
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
        "template": {
            "metadata": {"labels": _labels(spec, name),
                         # a new release or generation changes the template, so pods roll
                         "annotations": {ANNOTATION + "deployment-rid": spec.deployment_rid,
                                         ANNOTATION + "release-rid": spec.release_rid,
                                         ANNOTATION + "release-version": spec.release_version,
                                         ANNOTATION + "generation": str(spec.generation)}},
            "spec": _pod_spec(spec, name),
        },
    })
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": _metadata(spec, name), "spec": body}


def render_service(spec: KubeDeployment) -> dict[str, Any]:
    name = object_name(spec.api_name, spec.liveml_namespace)
    return {"apiVersion": "v1", "kind": "Service", "metadata": _metadata(spec, name),
            "spec": {"type": "ClusterIP", "selector": _selector(name),
                     "ports": [{"name": PORT_NAME, "port": SERVICE_PORT, "targetPort": spec.port,
                                "protocol": "TCP"}]}}


def render_pdb(spec: KubeDeployment) -> dict[str, Any]:
    name = object_name(spec.api_name, spec.liveml_namespace)
    return {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": _metadata(spec, name),
            "spec": {"maxUnavailable": 1, "selector": {"matchLabels": _selector(name)},
                     # a crash-looping pod must not block a node drain
                     "unhealthyPodEvictionPolicy": "AlwaysAllow"}}


def hpa_cpu_target(threshold: float) -> int:
    """The HPA's average CPU utilization target (%) for a ``scaleUpLoadThreshold``."""
    return min(90, max(10, round(float(threshold) * 100)))


def _window(seconds: Any) -> int:
    return min(HPA_MAX_WINDOW, max(0, math.ceil(float(seconds))))


def render_hpa(spec: KubeDeployment) -> dict[str, Any]:
    name = object_name(spec.api_name, spec.liveml_namespace)
    config = spec.runtime
    return {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": _metadata(spec, name),
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
                "minReplicas": max(1, spec.min_replicas),
                "maxReplicas": spec.max_replicas,
                "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {
                    "type": "Utilization",
                    "averageUtilization": hpa_cpu_target(config.scale_up_load_threshold)}}}],
                "behavior": {
                    "scaleUp": {"stabilizationWindowSeconds": _window(config.scale_up_delay),
                                "selectPolicy": "Max",
                                "policies": [{"type": "Pods", "value": 1, "periodSeconds": 15}]},
                    "scaleDown": {"stabilizationWindowSeconds": _window(config.scale_down_delay),
                                  "selectPolicy": "Max",
                                  "policies": [{"type": "Pods", "value": 1, "periodSeconds": 60}]},
                }}}


def render(spec: KubeDeployment) -> list[dict[str, Any]]:
    """Deployment, Service, then a PodDisruptionBudget and an HPA when they apply. Fresh dicts
    every call: callers may change them."""
    manifests = [render_deployment(spec), render_service(spec)]
    if spec.enabled and spec.min_replicas >= 2:
        manifests.append(render_pdb(spec))
    if spec.autoscaled:
        manifests.append(render_hpa(spec))
    return manifests


# -------------------------------------------------------------------------------------- check


def _label_key_problem(key: str) -> str | None:
    prefix, _, name = key.rpartition("/")
    if prefix and (len(prefix) > 253 or not all(DNS1123_LABEL.fullmatch(p) for p in prefix.split("."))):
        return f"the key prefix {prefix!r} is not a DNS-1123 subdomain"
    if len(name) > 63 or not LABEL_NAME.fullmatch(name):
        return f"the key name {name!r} is not a valid name of at most 63 characters"
    return None


def _check_labels(where: str, labels: Any, out: list[str], values: bool = True) -> None:
    if labels is None:
        return
    if not isinstance(labels, Mapping):
        out.append(f"{where}: not a mapping")
        return
    for key, value in labels.items():
        problem = _label_key_problem(str(key))
        if problem:
            out.append(f"{where}: {problem}")
        if values and (not isinstance(value, str) or label_value(value) is None):
            out.append(f"{where}: the value {value!r} of {key!r} is not a label value "
                       "(at most 63 characters, alphanumerics and -_. inside)")


def _check_name(where: str, name: Any, out: list[str], dns1035: bool = False) -> None:
    rule = DNS1035_LABEL if dns1035 else DNS1123_LABEL
    kind = "DNS-1035" if dns1035 else "DNS-1123"
    if not isinstance(name, str) or len(name) > 63 or not rule.fullmatch(name):
        out.append(f"{where}: the name {name!r} is not a {kind} label of at most 63 characters")


def _matches(selector: Any, labels: Mapping[str, str]) -> bool:
    if not isinstance(selector, Mapping) or not selector:
        return False
    return all(labels.get(k) == v for k, v in selector.items())


def _same(a: Any, b: Any) -> bool:
    try:
        return parse_quantity(a) == parse_quantity(b)
    except ValueError:
        return False


def check(manifests: Iterable[Mapping[str, Any]]) -> list[str]:
    """liveml's rules for rendered objects; one readable string per violation, [] when all hold.

    1. the Deployment's selector, the Service's and the PDB's match the pod template's labels;
    2. the rolling update has ``maxUnavailable: 0``;
    3. every container has a readiness probe;
    4. GPUs (any extended resource) are requested exactly as much as limited;
    5. names are DNS-1123 labels (Service names DNS-1035) of at most 63 characters, and label keys
       and values are valid (values at most 63 characters);
    6. cpu and memory requests equal the limits;
    7. a Deployment has ``replicas`` exactly when no HPA targets it, and an HPA targets an
       existing Deployment.
    """
    docs = list(manifests)
    out: list[str] = []
    deployments = {(d.get("metadata", {}).get("namespace"), d.get("metadata", {}).get("name")): d
                   for d in docs if d.get("kind") == "Deployment"}
    hpa_targets: set[tuple[Any, Any]] = set()
    for doc in docs:
        kind, meta = doc.get("kind", "?"), doc.get("metadata") or {}
        where = f"{kind} {meta.get('name')!r}"
        _check_name(where, meta.get("name"), out, dns1035=kind == "Service")
        _check_name(f"{where} namespace", meta.get("namespace"), out)
        _check_labels(f"{where} labels", meta.get("labels"), out)
        _check_labels(f"{where} annotations", meta.get("annotations"), out, values=False)
        spec = doc.get("spec") or {}
        if kind == "HorizontalPodAutoscaler":
            ref = spec.get("scaleTargetRef") or {}
            if ref.get("kind") == "Deployment":
                key = (meta.get("namespace"), ref.get("name"))
                hpa_targets.add(key)
                if key not in deployments:
                    out.append(f"{where}: it targets Deployment {ref.get('name')!r}, which is not rendered")
        if kind in ("Service", "PodDisruptionBudget"):
            selector = spec.get("selector") if kind == "Service" else (spec.get("selector") or {}).get(
                "matchLabels")
            _check_labels(f"{where} selector", selector, out)
            targets = [d for (ns, _), d in deployments.items() if ns == meta.get("namespace")]
            if not any(_matches(selector, (d["spec"]["template"].get("metadata") or {}).get("labels") or {})
                       for d in targets if isinstance(d.get("spec"), Mapping)):
                out.append(f"{where}: its selector {selector!r} matches the pods of no rendered Deployment")
    for (namespace, name), doc in deployments.items():
        where = f"Deployment {name!r}"
        spec = doc.get("spec") or {}
        template = spec.get("template") or {}
        pod_labels = (template.get("metadata") or {}).get("labels") or {}
        selector = (spec.get("selector") or {}).get("matchLabels")
        _check_labels(f"{where} pod labels", pod_labels, out)
        _check_labels(f"{where} selector", selector, out)
        if not _matches(selector, pod_labels):
            out.append(f"{where}: the selector {selector!r} does not match the pod labels "
                       f"{dict(pod_labels)!r}")
        strategy = spec.get("strategy") or {}
        rolling = strategy.get("rollingUpdate") or {}
        if strategy.get("type") != "RollingUpdate" or rolling.get("maxUnavailable") != 0:
            out.append(f"{where}: the strategy must be RollingUpdate with maxUnavailable: 0 "
                       f"(is {strategy.get('type')!r}, maxUnavailable {rolling.get('maxUnavailable')!r})")
        targeted = (namespace, name) in hpa_targets
        if targeted and "replicas" in spec:
            out.append(f"{where}: an HPA scales it, so it must not set replicas (is {spec['replicas']!r})")
        if not targeted and "replicas" not in spec:
            out.append(f"{where}: no HPA scales it, so it must set replicas")
        pod = template.get("spec") or {}
        _check_labels(f"{where} nodeSelector", pod.get("nodeSelector"), out)
        for container in pod.get("containers") or []:
            cwhere = f"{where} container {container.get('name')!r}"
            _check_name(cwhere, container.get("name"), out)
            for port in container.get("ports") or []:
                pname = port.get("name")
                if pname is not None and not PORT_NAME_RE.fullmatch(pname):
                    out.append(f"{cwhere}: the port name {pname!r} is not an IANA service name")
            if not container.get("readinessProbe"):
                out.append(f"{cwhere}: it has no readiness probe")
            resources = container.get("resources") or {}
            requests, limits = resources.get("requests") or {}, resources.get("limits") or {}
            for res in ("cpu", "memory"):
                if res not in requests or res not in limits or not _same(requests[res], limits[res]):
                    out.append(f"{cwhere}: the {res} request {requests.get(res)!r} must equal its limit "
                               f"{limits.get(res)!r}")
            for res in sorted({*requests, *limits} - {"cpu", "memory", "ephemeral-storage"}):
                if res not in requests or res not in limits or not _same(requests[res], limits[res]):
                    out.append(f"{cwhere}: the GPU ({res}) request {requests.get(res)!r} must equal its "
                               f"limit {limits.get(res)!r}")
    return out


# --------------------------------------------------------------------------------------- YAML


class _Dumper(yaml.SafeDumper):
    """Safe YAML without anchors (the same dict in two places is written twice)."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def to_yaml(manifests: Iterable[Mapping[str, Any]]) -> str:
    """A multi-document YAML stream; keys keep the order ``render`` builds them in (apiVersion,
    kind, metadata, spec, ...), which is fixed, so the text is stable."""
    return yaml.dump_all([_plain(m) for m in manifests], Dumper=_Dumper, sort_keys=False,
                         default_flow_style=False, explicit_start=True, allow_unicode=True, width=4096)


def _plain(value: Any) -> Any:
    """Mappings and sequences as dict and list, which the safe dumper writes."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value
