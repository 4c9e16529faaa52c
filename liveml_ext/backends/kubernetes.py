"""A thin layer over the official ``kubernetes`` client for one live deployment's objects.

``KubernetesCluster`` applies what ``k8s_manifests.render`` gives (server-side apply, field
manager ``liveml``, forced), removes a PodDisruptionBudget or HPA the new render no longer has,
deletes everything of a deployment, and reads back what the cluster does: the Deployment's status
and its pods (``observe``, mapped to liveml's states by the pure ``summarize``), pod logs and
``metrics.k8s.io`` usage. It holds no state of its own: a controller calls it per deployment.

Every call goes through the generated typed APIs with ``_preload_content=False`` and reads the
JSON itself, so results are plain dicts with the API's camelCase keys (as ``summarize`` and the
tests expect) and no strict model deserialization can fail on fields newer than the client.

Calls and the RBAC verbs they need (``docs/operators-kubernetes.md``):

- ``apply``: PATCH deployments, services, poddisruptionbudgets, horizontalpodautoscalers; GET
  deployments (replica hand-over to the HPA); DELETE poddisruptionbudgets and
  horizontalpodautoscalers when the new render has none;
- ``delete``: DELETE all four kinds;
- ``observe``: GET deployments, LIST pods; ``logs``: LIST pods, GET pods/log;
- ``pod_metrics``: LIST ``metrics.k8s.io`` pods; ``node_metrics``: LIST ``metrics.k8s.io`` nodes
  (cluster scoped: a ClusterRole).
"""
from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping
from typing import Any

import kubernetes.client
import kubernetes.config
from kubernetes.client.exceptions import ApiException

from .k8s_manifests import ANNOTATION, PORT_NAME, KubeDeployment, object_name, parse_quantity, render
from .k8s_manifests import _selector as selector_labels

APPLY_PATCH = "application/apply-patch+yaml"
FIELD_MANAGER = "liveml"
HANDOVER_MANAGER = "liveml-hpa-handover"
DEFAULT_PORT = 8080
METRICS_GROUP, METRICS_VERSION = "metrics.k8s.io", "v1beta1"

# waiting reasons of a container that will not fix themselves soon
IMAGE_REASONS = ("ImagePullBackOff", "ErrImagePull", "InvalidImageName", "ErrImageNeverPull")
FATAL_REASONS = ("CrashLoopBackOff", *IMAGE_REASONS, "CreateContainerConfigError",
                 "CreateContainerError", "RunContainerError")

STARTING, ACTIVE, DEGRADED, FAILED, DISABLED = "STARTING", "ACTIVE", "DEGRADED", "FAILED", "DISABLED"
PROGRESSING, COMPLETE = "PROGRESSING", "COMPLETE"


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
                 field_manager: str = FIELD_MANAGER) -> None:
        self.namespace = namespace
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
    def from_config(cls, namespace: str, kubeconfig: str | None = None) -> KubernetesCluster:
        """From a kubeconfig file (``kubeconfig``, else ``$KUBECONFIG`` or ``~/.kube/config``), or
        the pod's service account when ``kubeconfig`` is None and none of those exists."""
        configuration = kubernetes.client.Configuration()
        if kubeconfig is None:
            try:
                kubernetes.config.load_incluster_config(client_configuration=configuration)
            except kubernetes.config.ConfigException:
                kubernetes.config.load_kube_config(client_configuration=configuration)
        else:
            kubernetes.config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
        return cls(namespace, kubernetes.client.ApiClient(configuration))

    # ------------------------------------------------------------------------------------ helpers

    @staticmethod
    def _json(response: Any) -> Any:
        data = response.data
        return json.loads(data) if data else {}

    def _apply(self, kind: str, body: Mapping[str, Any], manager: str) -> dict[str, Any]:
        patch, _ = self._kinds[kind]
        return self._json(patch(body["metadata"]["name"], self.namespace, dict(body), field_manager=manager,
                                force=True, _content_type=APPLY_PATCH, _preload_content=False))

    def _delete(self, kind: str, name: str) -> bool:
        """True when deleted, False when it was not there."""
        _, delete = self._kinds[kind]
        try:
            delete(name, self.namespace, propagation_policy="Background", _preload_content=False)
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def _read_deployment(self, name: str) -> dict[str, Any] | None:
        try:
            return self._json(self.apps.read_namespaced_deployment(name, self.namespace,
                                                                   _preload_content=False))
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
                                                        _preload_content=False)).get("items") or []

    def observe(self, name: str) -> dict[str, Any]:
        """``summarize`` of the Deployment and its pods; state FAILED with reason "not found"
        when the Deployment does not exist."""
        deployment = self._read_deployment(name)
        if deployment is None:
            return {**summarize({"metadata": {"name": name}, "spec": {"replicas": 0}}, []),
                    "state": FAILED, "reason": f"Deployment {name} not found", "exists": False}
        return {**summarize(deployment, self.pods(name)), "exists": True}

    def logs(self, name: str, since_seconds: int | None = None, container: str | None = None
             ) -> dict[str, str]:
        """The log text of each pod of the deployment (pod name -> text)."""
        out: dict[str, str] = {}
        for pod in self.pods(name):
            pod_name = pod["metadata"]["name"]
            kwargs: dict[str, Any] = {"_preload_content": False}
            if since_seconds is not None:
                kwargs["since_seconds"] = int(since_seconds)
            if container is not None:
                kwargs["container"] = container
            try:
                response = self.core.read_namespaced_pod_log(pod_name, self.namespace, **kwargs)
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
            _preload_content=False))
        return [_usage(item, "pod") for item in doc.get("items") or []]

    def node_metrics(self) -> list[dict[str, Any]]:
        """Per node: ``{"node", "timestamp", "window", "cpu" (cores), "memory" (bytes)}``."""
        doc = self._json(self.custom.list_cluster_custom_object(METRICS_GROUP, METRICS_VERSION, "nodes",
                                                                _preload_content=False))
        return [_usage(item, "node") for item in doc.get("items") or []]


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
            return condition
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
            "generation": annotations.get(ANNOTATION + "generation")}


def _problem(pod: Mapping[str, Any]) -> str:
    text = f"pod {pod['node_id']}: {pod['reason']}"
    return f"{text} ({pod['message']})" if pod["message"] else text


def summarize(deployment: Mapping[str, Any], pods: list[Mapping[str, Any]]) -> dict[str, Any]:
    """A Deployment and its pods (API JSON) in liveml's vocabulary. Pure.

    Returns ``state`` (STARTING | ACTIVE | DEGRADED | FAILED | DISABLED), ``reason`` ("" when all
    is well), ``urls`` (ready, non-terminating pods, for the gateway, sorted), ``rollout``
    (``state`` PROGRESSING | COMPLETE | FAILED, ``desired``, ``updated``, ``ready``,
    ``available``, ``observed`` = the controller has seen the latest generation, ``reason``) and
    ``pods`` (``pod_summary`` of each).

    The rules: desired 0 is DISABLED. With no ready pod: FAILED when the rollout passed its
    progress deadline or a pod is crash-looping / cannot get its image (and the like), else
    STARTING (the reason names unschedulable pods, e.g. no GPU free). With ready pods: ACTIVE
    when at least the desired count is ready and no pod has a problem (also while a rollout still
    progresses); else DEGRADED with the reason.
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
    deadline = bool(progressing and progressing.get("status") == "False"
                    and progressing.get("reason") == "ProgressDeadlineExceeded")
    complete = observed and updated >= desired and total == updated and available >= updated
    rollout_reason = ""
    if deadline:
        rollout_state = FAILED
        rollout_reason = "the rollout exceeded its progress deadline" + (
            f": {progressing['message']}" if progressing.get("message") else "")
    elif complete:
        rollout_state = COMPLETE
    else:
        rollout_state = PROGRESSING
        rollout_reason = f"rolling out: {updated}/{desired} updated, {available} available"
    rollout = {"state": rollout_state, "desired": desired, "updated": updated, "total": total,
               "ready": int(status.get("readyReplicas") or 0), "available": available,
               "observed": observed, "reason": rollout_reason}
    problems = [_problem(p) for p in live if p["reason"]]
    fatal = any(p["reason"] in FATAL_REASONS for p in live)
    ready = len(urls)
    out = {"name": meta.get("name"), "urls": urls, "rollout": rollout, "pods": summaries,
           "ready": ready, "desired": desired}
    if desired == 0:
        return {**out, "state": DISABLED, "reason": "scaled to 0 replicas" + (
            f"; {ready} still draining" if ready else "")}
    reasons = ([rollout_reason] if deadline else []) + problems
    if ready == 0:
        if deadline or fatal:
            return {**out, "state": FAILED, "reason": "; ".join(reasons)}
        why = f"0/{desired} replicas ready"
        return {**out, "state": STARTING, "reason": "; ".join([why, *problems])}
    if ready >= desired and not reasons:
        return {**out, "state": ACTIVE, "reason": ""}
    if ready < desired:
        reasons.insert(0, f"{ready}/{desired} replicas ready")
    return {**out, "state": DEGRADED, "reason": "; ".join(reasons)}
