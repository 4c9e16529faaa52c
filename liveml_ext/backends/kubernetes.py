"""A thin layer over the official ``kubernetes`` client for one live deployment's objects.

``KubernetesCluster`` applies what ``k8s_manifests.render`` gives (server-side apply, field
manager ``liveml``, forced), removes a PodDisruptionBudget or HPA the new render no longer has,
deletes everything of a deployment, and reads back what the cluster does: the Deployment's status
and its pods (``observe``, mapped to liveml's states by the pure ``summarize``), pod logs and
``metrics.k8s.io`` usage. It holds no state of its own: a controller calls it per deployment.

Every call goes through the generated typed APIs with ``_preload_content=False`` and reads the
JSON itself, so results are plain dicts with the API's camelCase keys (as ``summarize`` and the
tests expect) and no strict model deserialization can fail on fields newer than the client.

Calls and the RBAC verbs they need (``ROLE_RULES``, ``CLUSTER_ROLE_RULES``; the Role and
ClusterRole in ``deploy/kubernetes/``):

- ``apply``: PATCH (and, for objects that do not exist yet, create) deployments, services,
  poddisruptionbudgets, horizontalpodautoscalers; GET deployments (replica hand-over to the HPA);
  DELETE poddisruptionbudgets and horizontalpodautoscalers when the new render has none;
- ``delete``: DELETE all four kinds; ``managed``: LIST deployments;
- ``observe``: GET deployments, LIST pods; ``logs``/``pod_log``: LIST pods, GET pods/log;
- ``events``: LIST events; ``autoscalers``: LIST horizontalpodautoscalers;
- ``ensure_secret``: GET, create/PATCH the replica token Secret;
- ``pod_metrics``/``all_pod_metrics``: LIST ``metrics.k8s.io`` pods; ``node_metrics``: LIST
  ``metrics.k8s.io`` nodes and ``nodes``: LIST nodes (cluster scoped: a ClusterRole).
"""
from __future__ import annotations

import base64
import dataclasses
import json
import os
import secrets
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import kubernetes.client
import kubernetes.config
from kubernetes.client.exceptions import ApiException

from ..core.states import DeploymentState, RolloutState, deployment_state
from .k8s_manifests import (
    ANNOTATION,
    CONTAINER,
    MANAGED_BY,
    PORT_NAME,
    KubeDeployment,
    object_name,
    parse_quantity,
    render,
)
from .k8s_manifests import _selector as selector_labels

APPLY_PATCH = "application/apply-patch+yaml"
FIELD_MANAGER = "liveml"
HANDOVER_MANAGER = "liveml-hpa-handover"
DEFAULT_PORT = 8080
METRICS_GROUP, METRICS_VERSION = "metrics.k8s.io", "v1beta1"
SERVICE_ACCOUNT_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
MANAGED_SELECTOR = "app.kubernetes.io/managed-by=liveml,app.kubernetes.io/name=liveml-replica"

# What the control plane's service account needs (docs/operators-kubernetes.md and the Role and
# ClusterRole in deploy/kubernetes/ must grant at least this; tests compare them). Server-side
# apply of an object that does not exist yet also needs ``create``.
ROLE_RULES: list[dict[str, list[str]]] = [
    {"apiGroups": ["apps"], "resources": ["deployments"],
     "verbs": ["get", "list", "create", "patch", "delete"]},
    {"apiGroups": [""], "resources": ["services"], "verbs": ["create", "patch", "delete"]},
    {"apiGroups": ["policy"], "resources": ["poddisruptionbudgets"],
     "verbs": ["create", "patch", "delete"]},
    {"apiGroups": ["autoscaling"], "resources": ["horizontalpodautoscalers"],
     "verbs": ["list", "create", "patch", "delete"]},
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]},
    {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
    {"apiGroups": [""], "resources": ["events"], "verbs": ["list"]},
    {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "create", "patch"]},
    {"apiGroups": ["metrics.k8s.io"], "resources": ["pods"], "verbs": ["list"]},
]
CLUSTER_ROLE_RULES: list[dict[str, list[str]]] = [
    {"apiGroups": [""], "resources": ["nodes"], "verbs": ["list"]},
    {"apiGroups": ["metrics.k8s.io"], "resources": ["nodes"], "verbs": ["list"]},
]

# waiting reasons of a container that will not fix themselves soon
IMAGE_REASONS = ("ImagePullBackOff", "ErrImagePull", "InvalidImageName", "ErrImageNeverPull")
FATAL_REASONS = ("CrashLoopBackOff", *IMAGE_REASONS, "CreateContainerConfigError",
                 "CreateContainerError", "RunContainerError")



def _name_of(spec_or_name: KubeDeployment | str) -> str:
    if isinstance(spec_or_name, KubeDeployment):
        return object_name(spec_or_name.api_name, spec_or_name.liveml_namespace)
    return spec_or_name


def label_selector(name: str) -> str:
    """The pods of a deployment's object name, as a ``labelSelector`` query value."""
    return ",".join(f"{k}={v}" for k, v in selector_labels(name).items())


def _owns_replicas(deployment: Mapping[str, Any], manager: str) -> bool:
    """Whether ``manager`` holds ``spec.replicas`` by apply (managedFields)."""
    for entry in (deployment.get("metadata") or {}).get("managedFields") or []:
        if entry.get("manager") == manager and entry.get("operation") == "Apply":
            if "f:replicas" in ((entry.get("fieldsV1") or {}).get("f:spec") or {}):
                return True
    return False


class KubernetesCluster:
    """The objects of live deployments in one Kubernetes namespace."""

    def __init__(self, namespace: str, api_client: kubernetes.client.ApiClient | None = None,
                 field_manager: str = FIELD_MANAGER, request_timeout: float = 30.0) -> None:
        self.namespace = namespace
        # every call: raw JSON back, and a deadline (a hung API server must not hang the caller)
        self._call: dict[str, Any] = {"_preload_content": False,
                                      "_request_timeout": request_timeout}
        self.api_client = api_client or kubernetes.client.ApiClient()
        self.field_manager = field_manager
        self.core = kubernetes.client.CoreV1Api(self.api_client)
        self.apps = kubernetes.client.AppsV1Api(self.api_client)
        self.policy = kubernetes.client.PolicyV1Api(self.api_client)
        self.autoscaling = kubernetes.client.AutoscalingV2Api(self.api_client)
        self.custom = kubernetes.client.CustomObjectsApi(self.api_client)
        # kind -> (patch, delete); both take (name, namespace, ...)
        self._kinds: dict[str, tuple[Callable[..., Any], Callable[..., Any]]] = {
            "Deployment": (self.apps.patch_namespaced_deployment, self.apps.delete_namespaced_deployment),
            "Service": (self.core.patch_namespaced_service, self.core.delete_namespaced_service),
            "PodDisruptionBudget": (self.policy.patch_namespaced_pod_disruption_budget,
                                    self.policy.delete_namespaced_pod_disruption_budget),
            "HorizontalPodAutoscaler": (self.autoscaling.patch_namespaced_horizontal_pod_autoscaler,
                                        self.autoscaling.delete_namespaced_horizontal_pod_autoscaler),
        }

    @classmethod
    def from_config(cls, namespace: str | None = None, kubeconfig: str | None = None,
                    context: str | None = None) -> KubernetesCluster:
        """From a kubeconfig file (``kubeconfig``, else ``$KUBECONFIG`` or ``~/.kube/config``), or
        the pod's service account when ``kubeconfig`` is None and the process runs in a pod.

        ``namespace`` None: the pod's own namespace in a cluster, else the kubeconfig context's
        namespace, else ``default``.
        """
        configuration = kubernetes.client.Configuration()
        own_namespace = None
        if kubeconfig is None and os.path.exists(SERVICE_ACCOUNT_NAMESPACE) and \
                os.environ.get("KUBERNETES_SERVICE_HOST"):
            kubernetes.config.load_incluster_config(client_configuration=configuration)
            with open(SERVICE_ACCOUNT_NAMESPACE) as fh:
                own_namespace = fh.read().strip()
        else:
            kubernetes.config.load_kube_config(config_file=kubeconfig, context=context or None,
                                               client_configuration=configuration)
            try:
                _, active = kubernetes.config.list_kube_config_contexts(config_file=kubeconfig)
                if context:
                    contexts, _ = kubernetes.config.list_kube_config_contexts(config_file=kubeconfig)
                    active = next((c for c in contexts if c["name"] == context), active)
                own_namespace = (active or {}).get("context", {}).get("namespace")
            except kubernetes.config.ConfigException:
                own_namespace = None
        return cls(namespace or own_namespace or "default", kubernetes.client.ApiClient(configuration))

    def close(self) -> None:
        self.api_client.close()

    # ------------------------------------------------------------------------------------ helpers

    @staticmethod
    def _json(response: Any) -> dict[str, Any]:
        data = response.data
        doc: dict[str, Any] = json.loads(data) if data else {}
        return doc

    def _apply(self, kind: str, body: Mapping[str, Any], manager: str) -> dict[str, Any]:
        patch, _ = self._kinds[kind]
        return self._json(patch(body["metadata"]["name"], self.namespace, dict(body), field_manager=manager,
                                force=True, _content_type=APPLY_PATCH, **self._call))

    def _delete(self, kind: str, name: str) -> bool:
        """True when deleted, False when it was not there."""
        _, delete = self._kinds[kind]
        try:
            delete(name, self.namespace, propagation_policy="Background", **self._call)
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def _read_deployment(self, name: str) -> dict[str, Any] | None:
        try:
            return self._json(self.apps.read_namespaced_deployment(name, self.namespace,
                                                                   **self._call))
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def _check_namespace(self, spec: KubeDeployment) -> None:
        if spec.kube_namespace != self.namespace:
            raise ValueError(f"the deployment renders into namespace {spec.kube_namespace!r}, "
                             f"this cluster object manages {self.namespace!r}")

    # ------------------------------------------------------------------------------------ changes

    def apply(self, spec: KubeDeployment) -> None:
        """Server-side apply of every rendered object; delete the PDB/HPA the render lacks.

        When the render hands the replica count to an HPA (the Deployment leaves ``replicas``
        out) while liveml still owns ``spec.replicas``, a separate field manager first takes the
        field over at its current value (clamped to min..max), as the Kubernetes documentation
        on transferring ownership advises: dropping a field one solely owns would reset it to the
        default of 1 replica. The HPA's next scale takes it from there.
        """
        self._check_namespace(spec)
        manifests = render(spec)
        name = manifests[0]["metadata"]["name"]
        if spec.autoscaled:
            self._hand_over_replicas(spec, name)
        for manifest in manifests:
            self._apply(manifest["kind"], manifest, self.field_manager)
        rendered = {m["kind"] for m in manifests}
        for kind in ("HorizontalPodAutoscaler", "PodDisruptionBudget"):
            if kind not in rendered:
                self._delete(kind, name)

    def _hand_over_replicas(self, spec: KubeDeployment, name: str) -> None:
        current = self._read_deployment(name)
        if current is None or not _owns_replicas(current, self.field_manager):
            return
        replicas = int((current.get("spec") or {}).get("replicas", 1))
        replicas = min(spec.max_replicas, max(spec.min_replicas, 1, replicas))
        self._apply("Deployment", {"apiVersion": "apps/v1", "kind": "Deployment",
                                   "metadata": {"name": name, "namespace": self.namespace},
                                   "spec": {"replicas": replicas}}, HANDOVER_MANAGER)

    def disable(self, spec: KubeDeployment) -> None:
        """Scale to 0 and drop the PDB and HPA; the Deployment and Service stay."""
        self.apply(_replace_enabled(spec, False))

    def delete(self, spec_or_name: KubeDeployment | str) -> None:
        """Delete the HPA, PDB, Service and Deployment (in that order); absent ones are fine."""
        name = _name_of(spec_or_name)
        for kind in ("HorizontalPodAutoscaler", "PodDisruptionBudget", "Service", "Deployment"):
            self._delete(kind, name)

    # ------------------------------------------------------------------------------------- reads

    def pods(self, name: str) -> list[dict[str, Any]]:
        return self._json(self.core.list_namespaced_pod(self.namespace, label_selector=label_selector(name),
                                                        **self._call)).get("items") or []

    def observe(self, name: str) -> dict[str, Any]:
        """``summarize`` of the Deployment and its pods; state FAILED with reason "not found"
        when the Deployment does not exist."""
        deployment = self._read_deployment(name)
        if deployment is None:
            return {**summarize({"metadata": {"name": name}, "spec": {"replicas": 0}}, []),
                    "state": DeploymentState.FAILED, "reason": f"Deployment {name} not found",
                    "exists": False}
        return {**summarize(deployment, self.pods(name)), "exists": True}

    def logs(self, name: str, since_seconds: int | None = None, container: str | None = None
             ) -> dict[str, str]:
        """The log text of each pod of the deployment (pod name -> text)."""
        out: dict[str, str] = {}
        for pod in self.pods(name):
            pod_name = pod["metadata"]["name"]
            kwargs: dict[str, Any] = dict(self._call)
            if since_seconds is not None:
                kwargs["since_seconds"] = int(since_seconds)
            if container is not None:
                kwargs["container"] = container
            try:
                # with _preload_content=False (self._call): the raw urllib3 response
                response: Any = self.core.read_namespaced_pod_log(pod_name, self.namespace,
                                                                  **kwargs)
            except ApiException as exc:
                if exc.status in (400, 404):  # container not started yet, or the pod just went
                    out[pod_name] = ""
                    continue
                raise
            out[pod_name] = response.data.decode("utf-8", errors="replace")
        return out

    def pod_metrics(self, name: str) -> list[dict[str, Any]]:
        """Per pod: ``{"pod", "timestamp", "window", "cpu" (cores), "memory" (bytes)}``."""
        doc = self._json(self.custom.list_namespaced_custom_object(
            METRICS_GROUP, METRICS_VERSION, self.namespace, "pods", label_selector=label_selector(name),
            **self._call))
        return [_usage(item, "pod") for item in doc.get("items") or []]

    def node_metrics(self) -> list[dict[str, Any]]:
        """Per node: ``{"node", "timestamp", "window", "cpu" (cores), "memory" (bytes)}``."""
        doc = self._json(self.custom.list_cluster_custom_object(METRICS_GROUP, METRICS_VERSION, "nodes",
                                                                **self._call))
        return [_usage(item, "node") for item in doc.get("items") or []]


    def pod_log(self, pod: str, since_seconds: int | None = None, previous: bool = False,
                timestamps: bool = True, container: str = CONTAINER) -> str:
        """One pod's log text ("" when the container has not started or the pod is gone).

        With ``timestamps`` every line starts with the RFC 3339 time the kubelet saw it."""
        kwargs: dict[str, Any] = {**self._call, "container": container, "timestamps": timestamps}
        if since_seconds is not None:
            kwargs["since_seconds"] = max(1, int(since_seconds))
        if previous:
            kwargs["previous"] = True
        try:
            response: Any = self.core.read_namespaced_pod_log(pod, self.namespace, **kwargs)
        except ApiException as exc:
            if exc.status in (400, 404):
                return ""
            raise
        text: str = response.data.decode("utf-8", errors="replace")
        return text

    def follow_pod_log(self, pod: str, since_seconds: int | None = None, idle_timeout: float = 60.0,
                       container: str = CONTAINER) -> Iterator[str]:
        """A pod's log as it is written (``follow=true``, with timestamps), in chunks of whole
        lines, until its container exits (the kubelet ends the stream), the pod is gone, or no
        byte came for ``idle_timeout`` seconds. Nothing when the container has not started."""
        kwargs: dict[str, Any] = {"_preload_content": False, "container": container,
                                  "timestamps": True, "follow": True,
                                  "_request_timeout": (self._call["_request_timeout"], idle_timeout)}
        if since_seconds is not None:
            kwargs["since_seconds"] = max(1, int(since_seconds))
        try:
            response: Any = self.core.read_namespaced_pod_log(pod, self.namespace, **kwargs)
        except ApiException as exc:
            if exc.status in (400, 404):
                return
            raise
        partial = b""
        try:
            for chunk in response.stream(64 * 1024, decode_content=True):
                partial += chunk
                whole, _, partial = partial.rpartition(b"\n")
                if whole:
                    yield (whole + b"\n").decode("utf-8", errors="replace")
            if partial:
                yield partial.decode("utf-8", errors="replace")
        finally:
            response.release_conn()

    def events(self) -> list[dict[str, Any]]:
        """The namespace's events (``v1 Event``), for the pods and Deployments liveml made."""
        return self._json(self.core.list_namespaced_event(self.namespace, **self._call)
                          ).get("items") or []

    def nodes(self) -> dict[str, dict[str, float]]:
        """Allocatable ``cpu`` (cores) and ``memory`` (bytes) of every node, by name."""
        doc = self._json(self.core.list_node(**self._call))
        out = {}
        for item in doc.get("items") or []:
            allocatable = (item.get("status") or {}).get("allocatable") or {}
            out[(item.get("metadata") or {}).get("name", "")] = {
                "cpu": cpu_cores(allocatable.get("cpu", "0")),
                "memory": float(memory_bytes(allocatable.get("memory", "0")))}
        return out

    def all_pod_metrics(self) -> list[dict[str, Any]]:
        """``pod_metrics`` of every liveml replica pod in the namespace, with its ``instance``
        (the object name of its deployment)."""
        doc = self._json(self.custom.list_namespaced_custom_object(
            METRICS_GROUP, METRICS_VERSION, self.namespace, "pods", label_selector=MANAGED_SELECTOR,
            **self._call))
        return [{**_usage(item, "pod"),
                 "instance": ((item.get("metadata") or {}).get("labels") or {}).get(
                     "app.kubernetes.io/instance", "")} for item in doc.get("items") or []]

    def autoscalers(self) -> dict[str, dict[str, Any]]:
        """Object name -> the HPA's ``currentReplicas``, ``desiredReplicas`` and ``utilization``
        (average CPU utilization of the pods as a fraction of their request, None before the HPA
        has measured) for every HPA liveml made in the namespace."""
        doc = self._json(self.autoscaling.list_namespaced_horizontal_pod_autoscaler(
            self.namespace, label_selector=MANAGED_SELECTOR, **self._call))
        out = {}
        for item in doc.get("items") or []:
            status = item.get("status") or {}
            utilization = None
            for metric in status.get("currentMetrics") or []:
                current = (metric.get("resource") or {}).get("current") or {}
                if (metric.get("resource") or {}).get("name") == "cpu" and \
                        current.get("averageUtilization") is not None:
                    utilization = float(current["averageUtilization"]) / 100.0
            out[item["metadata"]["name"]] = {"current": int(status.get("currentReplicas") or 0),
                                             "desired": int(status.get("desiredReplicas") or 0),
                                             "utilization": utilization}
        return out

    def managed(self) -> dict[str, str]:
        """Object name -> deployment RID of every Deployment liveml made in the namespace."""
        doc = self._json(self.apps.list_namespaced_deployment(
            self.namespace, label_selector=MANAGED_SELECTOR, **self._call))
        return {item["metadata"]["name"]:
                ((item["metadata"].get("annotations") or {}).get(ANNOTATION + "deployment-rid") or "")
                for item in doc.get("items") or []}

    def ensure_secret(self, name: str) -> str:
        """The ``token`` of Secret ``name``; the Secret is created with a random one when missing
        (server-side apply, so a concurrent creator wins consistently)."""
        try:
            doc = self._json(self.core.read_namespaced_secret(name, self.namespace, **self._call))
        except ApiException as exc:
            if exc.status != 404:
                raise
            doc = {}
        token = ((doc.get("data") or {}).get("token"))
        if token:
            return base64.b64decode(token).decode()
        body = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                "metadata": {"name": name, "namespace": self.namespace,
                             "labels": {"app.kubernetes.io/managed-by": MANAGED_BY}},
                "stringData": {"token": secrets.token_urlsafe(24)}}
        self.core.patch_namespaced_secret(name, self.namespace, body, field_manager=self.field_manager,
                                          _content_type=APPLY_PATCH, **self._call)
        doc = self._json(self.core.read_namespaced_secret(name, self.namespace, **self._call))
        return base64.b64decode((doc.get("data") or {})["token"]).decode()


def _replace_enabled(spec: KubeDeployment, enabled: bool) -> KubeDeployment:
    return dataclasses.replace(spec, enabled=enabled)


# ------------------------------------------------------------------------------------- metrics


def cpu_cores(quantity: Any) -> float:
    """``"123456n"`` -> 0.000123456, ``"250m"`` -> 0.25, ``"2"`` -> 2.0."""
    return float(parse_quantity(quantity))


def memory_bytes(quantity: Any) -> int:
    """``"123Ki"`` -> 125952, ``"1Gi"`` -> 1073741824, ``"100M"`` -> 100000000."""
    return int(parse_quantity(quantity))


def _usage(item: Mapping[str, Any], key: str) -> dict[str, Any]:
    meta = item.get("metadata") or {}
    if "containers" in item:  # PodMetrics: one usage per container
        usages = [c.get("usage") or {} for c in item.get("containers") or []]
    else:  # NodeMetrics
        usages = [item.get("usage") or {}]
    return {key: meta.get("name"), "timestamp": item.get("timestamp"), "window": item.get("window"),
            "cpu": sum(cpu_cores(u.get("cpu", "0")) for u in usages),
            "memory": sum(memory_bytes(u.get("memory", "0")) for u in usages)}


# ----------------------------------------------------------------------------------- summarize


def _condition(conditions: Any, kind: str) -> dict[str, Any] | None:
    for condition in conditions or []:
        if condition.get("type") == kind:
            found: dict[str, Any] = condition
            return found
    return None


def _pod_port(pod: Mapping[str, Any]) -> int:
    for container in (pod.get("spec") or {}).get("containers") or []:
        for port in container.get("ports") or []:
            if port.get("name") == PORT_NAME and port.get("containerPort"):
                return int(port["containerPort"])
    return DEFAULT_PORT


def pod_summary(pod: Mapping[str, Any], template_annotations: Mapping[str, str] | None = None
                ) -> dict[str, Any]:
    """One pod in liveml's words: node id (the pod name), phase, ready, URL, restarts and the
    problem keeping it from serving (``reason``/``message``, "" when none)."""
    meta, status = pod.get("metadata") or {}, pod.get("status") or {}
    terminating = bool(meta.get("deletionTimestamp"))
    ready_condition = _condition(status.get("conditions"), "Ready")
    ready = bool(ready_condition and ready_condition.get("status") == "True") and not terminating
    ip = status.get("podIP")
    statuses = status.get("containerStatuses") or []
    restarts = sum(int(s.get("restartCount") or 0) for s in statuses)
    reason = message = ""
    for container in [*(status.get("initContainerStatuses") or []), *statuses]:
        waiting = (container.get("state") or {}).get("waiting") or {}
        if waiting.get("reason") in FATAL_REASONS:
            reason, message = waiting["reason"], waiting.get("message") or ""
            last = (container.get("lastState") or {}).get("terminated") or {}
            if reason == "CrashLoopBackOff" and last:
                message = (f"last exit code {last.get('exitCode')} ({last.get('reason') or 'Error'})"
                           + (f": {last['message'].strip()[-500:]}" if last.get("message") else ""))
            break
    if not reason and not ready and not terminating and restarts >= 2:
        # between back-offs a crash-looping container runs again for a while with no waiting
        # reason; two failed restarts in a row are a crash loop all the same
        for container in statuses:
            last = (container.get("lastState") or {}).get("terminated") or {}
            if last and int(last.get("exitCode") or 0) != 0 and not container.get("ready"):
                reason = "CrashLoopBackOff"
                message = (f"last exit code {last.get('exitCode')} ({last.get('reason') or 'Error'})"
                           + (f": {last['message'].strip()[-500:]}" if last.get("message") else ""))
                break
    scheduled = _condition(status.get("conditions"), "PodScheduled")
    if not reason and scheduled and scheduled.get("status") == "False":
        reason, message = scheduled.get("reason") or "Unschedulable", scheduled.get("message") or ""
    if not reason and status.get("phase") == "Failed":
        reason, message = status.get("reason") or "Failed", status.get("message") or ""
    annotations = meta.get("annotations") or {}
    current = template_annotations is None or all(
        annotations.get(key) == template_annotations.get(key)
        for key in (ANNOTATION + "release-rid", ANNOTATION + "generation"))
    return {"node_id": meta.get("name"), "phase": status.get("phase"), "ready": ready,
            "terminating": terminating, "ip": ip,
            "url": f"http://{ip}:{_pod_port(pod)}" if ip else None,
            "restarts": restarts, "reason": reason, "message": message, "current": current,
            "release_rid": annotations.get(ANNOTATION + "release-rid"),
            "release_version": annotations.get(ANNOTATION + "release-version"),
            "generation": annotations.get(ANNOTATION + "generation"),
            "node": (pod.get("spec") or {}).get("nodeName")}


def _problem(pod: Mapping[str, Any]) -> str:
    text = f"pod {pod['node_id']}: {pod['reason']}"
    return f"{text} ({pod['message']})" if pod["message"] else text


def summarize(deployment: Mapping[str, Any], pods: Sequence[Mapping[str, Any]], settled: int = 0
              ) -> dict[str, Any]:
    """A Deployment and its pods (API JSON) in liveml's vocabulary. Pure.

    Returns ``state`` (STARTING | ACTIVE | DEGRADED | FAILED | DISABLED), ``reason`` ("" when all
    is well), ``urls`` (ready, non-terminating pods, for the gateway, sorted), ``rollout``
    (``state`` PROGRESSING | COMPLETE | FAILED, ``desired``, ``updated``, ``ready``,
    ``available``, ``observed`` = the controller has seen the latest generation, ``reason``) and
    ``pods`` (``pod_summary`` of each), and what ``core.states.deployment_state`` made the state
    of: ``failure`` (a passed progress deadline, a pod crash-looping or without its image, and
    the like) and ``problem`` (e.g. a pod unschedulable for lack of a GPU). ``settled`` is the
    pod count last all ready (the controller knows it; scaling up from it is not DEGRADED).

    The rules: desired 0 is DISABLED (the reason says what still drains); otherwise those of
    ``deployment_state``: a failure is FAILED with no ready pod, else DEGRADED; a problem
    STARTING with no ready pod, else DEGRADED; at least the desired count ready is ACTIVE (also
    while a rollout still progresses).
    """
    meta, spec, status = (deployment.get(k) or {} for k in ("metadata", "spec", "status"))
    desired = int(spec.get("replicas", 1))
    template_annotations = ((spec.get("template") or {}).get("metadata") or {}).get("annotations")
    summaries = sorted((pod_summary(p, template_annotations) for p in pods), key=lambda p: p["node_id"] or "")
    live = [p for p in summaries if not p["terminating"] and p["phase"] not in ("Succeeded",)]
    urls = sorted(p["url"] for p in live if p["ready"] and p["url"])
    updated = int(status.get("updatedReplicas") or 0)
    total = int(status.get("replicas") or 0)
    available = int(status.get("availableReplicas") or 0)
    observed = int(status.get("observedGeneration") or 0) >= int(meta.get("generation") or 0)
    progressing = _condition(status.get("conditions"), "Progressing")
    # a deadline the Deployment controller set before it saw the latest spec is stale: the new
    # rollout starts with a fresh one
    deadline = bool(observed and progressing and progressing.get("status") == "False"
                    and progressing.get("reason") == "ProgressDeadlineExceeded")
    complete = observed and updated >= desired and total == updated and available >= updated
    rollout_reason = ""
    if deadline and progressing is not None:
        rollout_state = RolloutState.FAILED
        rollout_reason = "the rollout exceeded its progress deadline" + (
            f": {progressing['message']}" if progressing.get("message") else "")
    elif complete:
        rollout_state = RolloutState.COMPLETE
    else:
        rollout_state = RolloutState.PROGRESSING
        rollout_reason = f"rolling out: {updated}/{desired} updated, {available} available"
    rollout = {"state": rollout_state, "desired": desired, "updated": updated, "total": total,
               "ready": int(status.get("readyReplicas") or 0), "available": available,
               "observed": observed, "reason": rollout_reason}
    problems = [_problem(p) for p in live if p["reason"]]
    fatal = any(p["reason"] in FATAL_REASONS for p in live)
    ready = len(urls)
    # what failed (a passed deadline, a pod that cannot start) or holds more pods back
    failure = "; ".join(([rollout_reason] if deadline else []) + problems) if deadline or fatal else ""
    problem = "" if failure else "; ".join(problems)
    out = {"name": meta.get("name"), "urls": urls, "rollout": rollout, "pods": summaries,
           "ready": ready, "desired": desired, "failure": failure, "problem": problem}
    state, reason = summary_state(out, settled)
    return {**out, "state": state, "reason": reason}


def summary_state(summary: Mapping[str, Any], settled: int = 0) -> tuple[DeploymentState, str]:
    """The state and reason of a ``summarize`` result, given the pod count last all ready."""
    ready, desired = summary["ready"], summary["desired"]
    if desired == 0:
        return DeploymentState.DISABLED, "scaled to 0 replicas" + (
            f"; {ready} still draining" if ready else "")
    return deployment_state(enabled=True, ready=ready, want=desired, failure=summary["failure"],
                            problem=summary["problem"], settled=settled)
