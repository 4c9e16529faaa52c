"""The simulated API server: routing, namespaces, generic objects (server-side apply, patches,
defaults, validation), pods, events and the node."""
from __future__ import annotations

import base64
import copy
import json
import re
import traceback
import uuid
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote

import yaml

from .common import (
    APPLY_PATCH,
    EVENT_LIMIT,
    JSON_PATCH,
    KUBE_VERSION,
    MAX_PODS,
    MERGE_PATCHES,
    NAMESPACED,
    NODE_NAME,
    PLURALS,
    RESOURCES,
    ApiError,
    Path,
    _cpu_text,
    _group_of,
    _Managed,
    _Object,
    _pod_requests,
    _truthy,
    conflicting,
    drop_path,
    fields_match,
    fields_v1,
    json_patch,
    labels_match,
    leaves,
    merge_into,
    merge_patch,
    ownable,
    parse_selector,
    rfc3339,
    status,
)


class ApiServer:
    """Answers the Kubernetes REST API over ``KubeSim``'s state (mixed into ``KubeSim``)."""

    # ------------------------------------------------------------------------------ routing

    def _answer(self, method: str, path: str, query: dict[str, list[str]], headers: dict[str, str],
                body: bytes) -> tuple[int, Any]:
        """One API request: the last value of each query parameter, errors as ``Status``."""
        try:
            return self._serve(method, unquote(path), {k: v[-1] for k, v in query.items()},
                               headers, body)
        except ApiError as err:
            return err.code, err.status()
        except ValueError as exc:  # a malformed query value
            return 400, status(400, "BadRequest", f"invalid request: {exc}")
        except Exception as exc:  # noqa: BLE001 - a simulator bug answers 500 and shows
            traceback.print_exc()
            return 500, status(500, "InternalError", f"simulator error: {exc!r}")

    def _serve(self, method: str, path: str, query: dict[str, str], headers: dict[str, str],
               body: bytes) -> tuple[int, Any]:
        if self._stopping:
            raise ApiError(503, "ServiceUnavailable", "the simulated cluster is stopped")
        if _truthy(query.get("watch")):
            raise ApiError(400, "BadRequest", "watches are not supported by the simulator")
        if path == "/version" and method == "GET":
            return 200, {"major": "1", "minor": "31", "gitVersion": KUBE_VERSION,
                         "platform": "linux/" + self._arch}
        m = re.fullmatch(r"/api/v1/nodes(?:/([^/]+))?", path)
        if m and method == "GET":
            return self._nodes(m.group(1))
        m = re.fullmatch(r"/apis/metrics\.k8s\.io/v1beta1/nodes(?:/([^/]+))?", path)
        if m and method == "GET":
            return self._node_metrics(m.group(1))
        m = re.fullmatch(r"/apis/metrics\.k8s\.io/v1beta1/namespaces/([^/]+)/pods(?:/([^/]+))?", path)
        if m and method == "GET":
            return self._pod_metrics(m.group(1), m.group(2), query)
        m = re.fullmatch(r"/api/v1/namespaces(?:/([^/]+))?", path)
        if m:
            return self._namespace_call(method, m.group(1), body)
        m = NAMESPACED.fullmatch(path)
        if m:
            prefix, ns, resource, name, sub = m.groups()
            if (prefix, resource) == ("api/v1", "pods"):
                return self._pod_call(method, ns, name, sub, query, body)
            if (prefix, resource) == ("api/v1", "events") and name is None:
                if method != "GET":
                    raise ApiError(405, "MethodNotAllowed", f"{method} events is not supported")
                return self._list_events(ns, query)
            if (prefix, resource) in RESOURCES and sub is None:
                kind, api_version = RESOURCES[(prefix, resource)]
                return self._object_call(method, kind, api_version, ns, name, query, headers, body)
        raise ApiError(404, "NotFound", f"the server could not find the requested resource ({method} {path})")

    @staticmethod
    def _body(body: bytes, content_type: str = "") -> Any:
        if not body:
            raise ApiError(400, "BadRequest", "the request has no body")
        try:
            return json.loads(body)
        except ValueError:
            pass
        if "yaml" in content_type:
            try:
                return yaml.safe_load(body)
            except yaml.YAMLError as exc:
                raise ApiError(400, "BadRequest", f"the body is not YAML: {exc}") from exc
        raise ApiError(400, "BadRequest", "the body is not JSON")

    @staticmethod
    def _not_found(kind: str, name: str) -> ApiError:
        prefix, resource = PLURALS.get(kind, ("api/v1", kind.lower() + "s"))
        group = prefix.split("/")[1] if prefix.startswith("apis/") else ""
        qualified = f"{resource}.{group}" if group else resource
        return ApiError(404, "NotFound", f'{qualified} "{name}" not found',
                        {"name": name, "group": group, "kind": resource})

    def _next_rv(self) -> str:
        self._rv += 1
        return str(self._rv)

    def _list(self, kind: str, items: list[dict[str, Any]]) -> dict[str, Any]:
        api_version = {"Pod": "v1", "Event": "v1", "Node": "v1", "Namespace": "v1"}.get(kind)
        if api_version is None:
            api_version = next(v for (k, v) in RESOURCES.values() if k == kind)
        return {"kind": f"{kind}List", "apiVersion": api_version,
                "metadata": {"resourceVersion": str(self._rv)}, "items": copy.deepcopy(items)}

    # ------------------------------------------------------------------------- namespaces

    def _namespace_obj(self, name: str) -> dict[str, Any]:
        return {"apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": name, "labels": {"kubernetes.io/metadata.name": name},
                             "creationTimestamp": self._namespaces[name]},
                "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}

    def _namespace_call(self, method: str, name: str | None, body: bytes) -> tuple[int, Any]:
        with self._lock:
            if method == "GET" and name is None:
                names = sorted(self._namespaces)
                return 200, self._list("Namespace", [self._namespace_obj(n) for n in names])
            if method == "GET":
                if name not in self._namespaces:
                    raise ApiError(404, "NotFound", f'namespaces "{name}" not found',
                                   {"name": name, "kind": "namespaces"})
                return 200, self._namespace_obj(name)
            if method == "POST" and name is None:
                new = ((self._body(body).get("metadata") or {}).get("name")) or ""
                if not new:
                    raise ApiError(422, "Invalid", "metadata.name: Required value")
                if new in self._namespaces:
                    raise ApiError(409, "AlreadyExists", f'namespaces "{new}" already exists',
                                   {"name": new, "kind": "namespaces"})
                self._namespaces[new] = rfc3339()
                return 201, self._namespace_obj(new)
        raise ApiError(405, "MethodNotAllowed", f"{method} namespaces is not supported by the simulator")

    def _touch_namespace(self, ns: str) -> None:
        self._namespaces.setdefault(ns, rfc3339())

    # ---------------------------------------------------------------------- generic objects

    def _object_call(self, method: str, kind: str, api_version: str, ns: str, name: str | None,
                     query: dict[str, str], headers: dict[str, str], body: bytes) -> tuple[int, Any]:
        content_type = headers.get("content-type", "").split(";")[0].strip()
        manager = query.get("fieldManager") or headers.get("user-agent", "unknown").split("/")[0]
        with self._lock:
            if name is None:
                if method == "GET":
                    terms = parse_selector(query.get("labelSelector"))
                    items = [o.obj for (k, n, _), o in sorted(self._objects.items())
                             if k == kind and n == ns
                             and labels_match(terms, o.obj["metadata"].get("labels"))]
                    return 200, self._list(kind, items)
                if method == "POST":
                    doc = self._body(body, content_type)
                    new = (doc.get("metadata") or {}).get("name") or ""
                    if (kind, ns, new) in self._objects:
                        err = self._not_found(kind, new)
                        raise ApiError(409, "AlreadyExists",
                                       err.message.replace("not found", "already exists"), err.details)
                    return self._write(kind, api_version, ns, new, doc, manager, "Update", force=True)
                raise ApiError(405, "MethodNotAllowed", f"{method} on a {kind} collection is not supported")
            stored = self._objects.get((kind, ns, name))
            if method == "GET":
                if stored is None:
                    raise self._not_found(kind, name)
                return 200, copy.deepcopy(stored.obj)
            if method == "DELETE":
                if stored is None:
                    raise self._not_found(kind, name)
                del self._objects[(kind, ns, name)]
                return 200, status(200, "", "", {"name": name, "group": _group_of(api_version),
                                                 "kind": PLURALS[kind][1],
                                                 "uid": stored.obj["metadata"]["uid"]})
            if method == "PATCH":
                if content_type == APPLY_PATCH:
                    if not query.get("fieldManager"):
                        raise ApiError(400, "BadRequest", "PATCH, application/apply-patch+yaml: "
                                       "fieldManager is required for apply requests")
                    return self._write(kind, api_version, ns, name, self._body(body, content_type),
                                       manager, "Apply", force=_truthy(query.get("force")))
                if stored is None:
                    raise self._not_found(kind, name)
                patch = self._body(body, content_type)
                if content_type in MERGE_PATCHES:
                    patched = merge_patch(stored.obj, patch)
                elif content_type == JSON_PATCH and isinstance(patch, list):
                    patched = json_patch(stored.obj, patch)
                else:
                    raise ApiError(415, "UnsupportedMediaType",
                                   f"the simulator does not take PATCH bodies of type {content_type!r}")
                return self._write(kind, api_version, ns, name, patched, manager, "Update", force=True)
        raise ApiError(405, "MethodNotAllowed", f"{method} {kind} is not supported by the simulator")

    def _write(self, kind: str, api_version: str, ns: str, name: str, doc: Any, manager: str,
               operation: str, force: bool) -> tuple[int, Any]:
        """Apply (or update) ``doc`` as ``manager``; the object is rebuilt from what every manager
        owns. Answers 201 on creation, else 200."""
        if not isinstance(doc, Mapping):
            raise ApiError(400, "BadRequest", "the body is not an object")
        meta = doc.get("metadata") or {}
        if doc.get("kind") not in (None, kind) or doc.get("apiVersion") not in (None, api_version):
            raise ApiError(400, "BadRequest", f"the body is a {doc.get('apiVersion')} {doc.get('kind')}, "
                           f"the URL names a {api_version} {kind}")
        if meta.get("name") != name or not name:
            raise ApiError(400, "BadRequest", f"the name of the object ({meta.get('name')!r}) does not match "
                           f"the name on the URL ({name!r})")
        if meta.get("namespace") not in (None, ns):
            raise ApiError(400, "BadRequest", f"the namespace of the object ({meta['namespace']}) does not "
                           f"match the namespace on the URL ({ns})")
        stored = self._objects.get((kind, ns, name))
        managers = copy.deepcopy(stored.managers) if stored else {}
        content = ownable(doc)
        if operation == "Apply":
            mine = leaves(content)
            found: dict[str, list[Path]] = {}
            for other, entry in managers.items():
                if other != manager:
                    paths = conflicting(mine, leaves(entry.body))
                    if paths:
                        found[other] = paths
            if found and not force:
                listed = "; ".join(f'conflict with "{m}": ' + ", ".join("." + ".".join(p) for p in paths)
                                   for m, paths in found.items())
                raise ApiError(409, "Conflict", f"Apply failed with {sum(map(len, found.values()))} "
                               f"conflict(s): {listed}", {"name": name, "kind": PLURALS[kind][1]})
            for other, paths in found.items():
                for path in paths:
                    drop_path(managers[other].body, path)
            previous = managers.get(manager)
            unchanged = previous is not None and previous.operation == "Apply" and previous.body == content
            # a no-op apply changes nothing, not even the time of the manager's entry
            managers[manager] = _Managed("Apply", content, previous.time if previous and unchanged
                                         else rfc3339(), api_version)
        else:
            # an update owns the fields it changed; fields it removed are gone for every manager
            before = leaves(ownable(stored.obj)) if stored else {}
            after = leaves(content)
            changed = {p: v for p, v in after.items() if before.get(p, object()) != v}
            removed = [p for p in before if p not in after]
            for entry in managers.values():
                for path in [*removed, *conflicting(changed, leaves(entry.body))]:
                    drop_path(entry.body, path)
            if stored is None:
                managers[manager] = _Managed("Update", content, rfc3339(), api_version)
            elif changed:
                owned = managers.get(manager)
                body = owned.body if owned and owned.operation == "Update" else {}
                for path, value in changed.items():
                    node = body
                    for key in path[:-1]:
                        node = node.setdefault(key, {})
                    node[path[-1]] = copy.deepcopy(value)
                managers[manager] = _Managed("Update", body, rfc3339(), api_version)
        managers = {m: e for m, e in managers.items() if e.body}
        obj = self._build(kind, api_version, ns, name, managers, stored.obj if stored else None)
        self._validate(obj, stored.obj if stored else None)
        self._touch_namespace(ns)
        if stored is None:
            self._objects[(kind, ns, name)] = _Object(obj, managers)
            return 201, copy.deepcopy(obj)
        stored.managers = managers
        if obj != stored.obj:
            obj["metadata"]["resourceVersion"] = self._next_rv()
            stored.obj = obj
        return 200, copy.deepcopy(stored.obj)

    def _build(self, kind: str, api_version: str, ns: str, name: str, managers: Mapping[str, _Managed],
               old: Mapping[str, Any] | None) -> dict[str, Any]:
        content: dict[str, Any] = {}
        for entry in managers.values():
            merge_into(content, entry.body)
        given = content.pop("metadata", {})
        content.pop("status", None)
        if old is not None:
            meta = copy.deepcopy(old["metadata"])
        else:
            meta = {"name": name, "namespace": ns, "uid": str(uuid.uuid4()),
                    "resourceVersion": self._next_rv(), "creationTimestamp": rfc3339()}
        for key in ("labels", "annotations"):
            if given.get(key):
                meta[key] = given[key]
            else:
                meta.pop(key, None)
        meta["managedFields"] = [
            {"manager": m, "operation": e.operation, "apiVersion": e.api_version, "time": e.time,
             "fieldsType": "FieldsV1", "fieldsV1": fields_v1(e.body),
             **({"subresource": e.subresource} if e.subresource else {})}
            for m, e in managers.items()]
        obj: dict[str, Any] = {"apiVersion": api_version, "kind": kind, "metadata": meta, **content}
        self._defaults(obj, old)
        if "spec" in obj:
            changed = old is None or old.get("spec") != obj["spec"]
            generation = int((old or {}).get("metadata", {}).get("generation", 0))
            meta["generation"] = generation + (1 if changed else 0)
        if old is not None and "status" in old:
            obj["status"] = copy.deepcopy(old["status"])
        elif kind in ("Deployment", "HorizontalPodAutoscaler", "PodDisruptionBudget", "Service"):
            obj["status"] = {"loadBalancer": {}} if kind == "Service" else {}
        return obj

    def _defaults(self, obj: dict[str, Any], old: Mapping[str, Any] | None) -> None:
        kind = obj["kind"]
        spec = obj.get("spec")
        if kind == "Deployment" and isinstance(spec, dict):
            spec.setdefault("replicas", 1)
            spec.setdefault("progressDeadlineSeconds", 600)
            spec.setdefault("revisionHistoryLimit", 10)
            strategy = spec.setdefault("strategy", {"type": "RollingUpdate"})
            strategy.setdefault("type", "RollingUpdate")
            if strategy["type"] == "RollingUpdate":
                rolling = strategy.setdefault("rollingUpdate", {})
                rolling.setdefault("maxSurge", "25%")
                rolling.setdefault("maxUnavailable", "25%")
            pod = (spec.get("template") or {}).get("spec")
            if isinstance(pod, dict):
                pod.setdefault("restartPolicy", "Always")
                pod.setdefault("terminationGracePeriodSeconds", 30)
                pod.setdefault("dnsPolicy", "ClusterFirst")
                pod.setdefault("schedulerName", "default-scheduler")
                for container in pod.get("containers") or []:
                    container.setdefault("terminationMessagePath", "/dev/termination-log")
                    container.setdefault("terminationMessagePolicy", "File")
                    image = str(container.get("image", ""))
                    latest = ":" not in image.rsplit("/", 1)[-1] or image.endswith(":latest")
                    container.setdefault("imagePullPolicy", "Always" if latest else "IfNotPresent")
                    for kind_ in ("startupProbe", "readinessProbe", "livenessProbe"):
                        probe = container.get(kind_)
                        if isinstance(probe, dict):
                            for key, value in (("timeoutSeconds", 1), ("periodSeconds", 10),
                                               ("successThreshold", 1), ("failureThreshold", 3)):
                                probe.setdefault(key, value)
                    for port in container.get("ports") or []:
                        port.setdefault("protocol", "TCP")
        elif kind == "Service" and isinstance(spec, dict):
            spec.setdefault("type", "ClusterIP")
            spec.setdefault("sessionAffinity", "None")
            if "clusterIP" not in spec:
                previous = ((old or {}).get("spec") or {}).get("clusterIP")
                if not previous:
                    self._service_ips += 1
                    previous = f"10.96.{self._service_ips // 254 % 256}.{self._service_ips % 254 + 1}"
                spec["clusterIP"] = previous
                spec["clusterIPs"] = [previous]
            for port in spec.get("ports") or []:
                port.setdefault("protocol", "TCP")
                port.setdefault("targetPort", port.get("port"))
        elif kind == "HorizontalPodAutoscaler" and isinstance(spec, dict):
            spec.setdefault("minReplicas", 1)
        elif kind == "Secret":
            obj.setdefault("type", "Opaque")
            text = obj.pop("stringData", None) or {}
            if text:
                data = obj.setdefault("data", {})
                for key, value in text.items():
                    data[key] = base64.b64encode(str(value).encode()).decode()

    def _validate(self, obj: Mapping[str, Any], old: Mapping[str, Any] | None) -> None:
        kind, name = obj["kind"], obj["metadata"]["name"]
        problems: list[str] = []
        if not re.fullmatch(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?", name) or len(name) > 253:
            problems.append(f"metadata.name: Invalid value: {name!r}: a lowercase RFC 1123 subdomain")
        spec = obj.get("spec") or {}
        if kind == "Deployment":
            selector = (spec.get("selector") or {}).get("matchLabels") or {}
            template = spec.get("template") or {}
            labels = (template.get("metadata") or {}).get("labels") or {}
            pod = template.get("spec") or {}
            if not selector:
                problems.append("spec.selector: Required value")
            elif any(labels.get(k) != v for k, v in selector.items()):
                problems.append("spec.template.metadata.labels: Invalid value: "
                                f"{labels!r}: `selector` does not match template `labels`")
            if old is not None and (old.get("spec") or {}).get("selector") != spec.get("selector"):
                problems.append(f"spec.selector: Invalid value: {spec.get('selector')!r}: field is immutable")
            containers = pod.get("containers") or []
            if len(containers) != 1 or pod.get("initContainers"):
                problems.append("spec.template.spec.containers: Invalid value: the simulator runs exactly "
                                "one container per pod (and no init containers)")
            for container in containers:
                if not container.get("name") or not container.get("image"):
                    problems.append("spec.template.spec.containers: a container needs a name and an image")
            if pod.get("restartPolicy") != "Always":
                problems.append("spec.template.spec.restartPolicy: Unsupported value: "
                                f"{pod.get('restartPolicy')!r}: supported values: \"Always\"")
            if not isinstance(spec.get("replicas"), int) or spec["replicas"] < 0:
                problems.append(f"spec.replicas: Invalid value: {spec.get('replicas')!r}")
            strategy = spec.get("strategy") or {}
            if strategy.get("type") == "RollingUpdate":
                rolling = strategy.get("rollingUpdate") or {}
                zero = ("0", "0%")
                if str(rolling.get("maxSurge")) in zero and str(rolling.get("maxUnavailable")) in zero:
                    problems.append("spec.strategy.rollingUpdate.maxUnavailable: Invalid value: 0: may not "
                                    "be 0 when `maxSurge` is 0")
            elif strategy.get("type") != "Recreate":
                problems.append(f"spec.strategy.type: Unsupported value: {strategy.get('type')!r}")
            try:
                _pod_requests(pod)
            except ValueError as exc:
                problems.append(f"spec.template.spec.containers[0].resources: {exc}")
        elif kind == "HorizontalPodAutoscaler":
            low, high = spec.get("minReplicas", 1), spec.get("maxReplicas")
            if not isinstance(high, int) or not isinstance(low, int) or not 1 <= low <= high:
                problems.append(f"spec.maxReplicas: Invalid value: {high!r}: must be >= minReplicas "
                                f"({low!r}) >= 1")
        elif kind == "Secret":
            for key, value in (obj.get("data") or {}).items():
                try:
                    base64.b64decode(str(value), validate=True)
                except ValueError:
                    problems.append(f"data[{key}]: Invalid value: not base64")
        if problems:
            group = _group_of(obj["apiVersion"])
            raise ApiError(422, "Invalid", f'{kind}{"." + group if group else ""} "{name}" is invalid: '
                           + ", ".join(problems),
                           {"name": name, "group": group, "kind": PLURALS[kind][1],
                            "causes": [{"reason": "FieldValueInvalid", "message": p} for p in problems]})

    # --------------------------------------------------------------------------------- pods

    def _pod_call(self, method: str, ns: str, name: str | None, sub: str | None, query: dict[str, str],
                  body: bytes) -> tuple[int, Any]:
        with self._lock:
            if name is None:
                if method != "GET":
                    raise ApiError(405, "MethodNotAllowed", f"{method} on pods is not supported")
                terms = parse_selector(query.get("labelSelector"))
                fields = parse_selector(query.get("fieldSelector"))
                items = [p.obj for (n, _), p in sorted(self._pods.items())
                         if n == ns and labels_match(terms, p.obj["metadata"].get("labels"))
                         and fields_match(fields, p.obj)]
                return 200, self._list("Pod", items)
            pod = self._pods.get((ns, name))
            if pod is None:
                raise ApiError(404, "NotFound", f'pods "{name}" not found', {"name": name, "kind": "pods"})
            if sub is None and method == "GET":
                return 200, copy.deepcopy(pod.obj)
            if sub is None and method == "DELETE":
                grace: float | None = None
                if query.get("gracePeriodSeconds"):
                    grace = float(query["gracePeriodSeconds"])
                elif body:
                    options = self._body(body)
                    if isinstance(options, Mapping) and options.get("gracePeriodSeconds") is not None:
                        grace = float(options["gracePeriodSeconds"])
                self._terminate(pod, grace)
                return 200, copy.deepcopy(pod.obj)
            if sub == "log" and method == "GET":
                return 200, self._log_text(pod, query)
        raise ApiError(405, "MethodNotAllowed", f"{method} pods/{sub or ''} is not supported")

    # ------------------------------------------------------------------------------- events

    def _event(self, involved: Mapping[str, Any], type_: str, reason: str, message: str, component: str,
               field_path: str = "") -> None:
        meta = involved["metadata"]
        key = (meta["namespace"], involved["kind"], meta["name"], meta["uid"], field_path, type_, reason,
               message, component)
        now = rfc3339()
        event = self._events.get(key)
        if event is not None:
            event["count"] += 1
            event["lastTimestamp"] = now
            event["metadata"]["resourceVersion"] = self._next_rv()
            return
        ref: dict[str, Any] = {"kind": involved["kind"], "namespace": meta["namespace"], "name": meta["name"],
                               "uid": meta["uid"], "apiVersion": involved["apiVersion"]}
        if field_path:
            ref["fieldPath"] = field_path
        source: dict[str, Any] = {"component": component}
        if component == "kubelet":
            source["host"] = NODE_NAME
        self._events[key] = {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": f"{meta['name']}.{uuid.uuid4().hex[:16]}", "namespace": meta["namespace"],
                         "uid": str(uuid.uuid4()), "resourceVersion": self._next_rv(),
                         "creationTimestamp": now},
            "involvedObject": ref, "reason": reason, "message": message, "type": type_, "count": 1,
            "firstTimestamp": now, "lastTimestamp": now, "source": source,
            "reportingComponent": component, "reportingInstance": NODE_NAME if component == "kubelet" else "",
        }
        while len(self._events) > EVENT_LIMIT:
            del self._events[next(iter(self._events))]

    def _list_events(self, ns: str, query: dict[str, str]) -> tuple[int, Any]:
        fields = parse_selector(query.get("fieldSelector"))
        with self._lock:
            items = [e for e in self._events.values()
                     if e["metadata"]["namespace"] == ns and fields_match(fields, e)]
            return 200, self._list("Event", items)

    # ------------------------------------------------------------------------ node, metrics

    def _node(self) -> dict[str, Any]:
        capacity = {"cpu": _cpu_text(self.cpu), "memory": f"{self.memory // 1024}Ki", "pods": str(MAX_PODS)}
        if self.gpus:
            capacity[self.gpu_resource] = str(self.gpus)
        return {"apiVersion": "v1", "kind": "Node",
                "metadata": {"name": NODE_NAME, "uid": self._node_uid, "labels": dict(self.node_labels),
                             "creationTimestamp": self._created, "resourceVersion": "1"},
                "spec": {},
                "status": {"capacity": capacity, "allocatable": dict(capacity),
                           "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                                           "message": "kubelet is posting ready status"}],
                           "addresses": [{"type": "InternalIP", "address": "127.0.0.1"},
                                         {"type": "Hostname", "address": NODE_NAME}],
                           "nodeInfo": {"kubeletVersion": KUBE_VERSION, "operatingSystem": "linux",
                                        "architecture": self._arch,
                                        "containerRuntimeVersion": "sim://local-processes"}}}

    def _nodes(self, name: str | None) -> tuple[int, Any]:
        with self._lock:
            if name is None:
                return 200, self._list("Node", [self._node()])
            if name != NODE_NAME:
                raise ApiError(404, "NotFound", f'nodes "{name}" not found', {"name": name, "kind": "nodes"})
            return 200, self._node()

