"""The control loop: the HPA, the Deployment (ReplicaSet) controller with its rollout arithmetic,
garbage collection of orphans and the scheduler."""
from __future__ import annotations

import collections
import copy
import tempfile
import threading
import time
import traceback
import uuid
from collections.abc import Mapping
from fractions import Fraction
from typing import Any

from .common import (
    CONTROLLER_MANAGER,
    IP_SPACE,
    MAX_PODS,
    NODE_NAME,
    SCHEDULER_RETRY,
    _deletion_rank,
    _Managed,
    _Object,
    _Pod,
    _pod_requests,
    _port_free,
    _Rollout,
    _suffix,
    drop_path,
    rfc3339,
    rolling_bounds,
    template_hash,
)


class Controllers:
    """Controllers and the scheduler, run every ``tick`` (mixed into ``KubeSim``)."""

    # -------------------------------------------------------------------------- controllers

    def _control_loop(self) -> None:
        while not self._halt.wait(self.tick):
            try:
                with self._lock:
                    if self._stopping:
                        return
                    self._autoscale()
                    for stored in [o for (k, _, _), o in self._objects.items() if k == "Deployment"]:
                        self._reconcile(stored)
                    self._collect_orphans()
                    self._schedule()
            except Exception:  # noqa: BLE001 - keep the cluster running; show the bug
                traceback.print_exc()

    def _autoscale(self) -> None:
        """HPA: keep the target's replicas within [minReplicas, maxReplicas] (no metric-based scaling)."""
        for (kind, ns, _), hpa in list(self._objects.items()):
            if kind != "HorizontalPodAutoscaler":
                continue
            spec = hpa.obj.get("spec") or {}
            ref = spec.get("scaleTargetRef") or {}
            target = self._objects.get(("Deployment", ns, str(ref.get("name"))))
            if ref.get("kind") != "Deployment" or target is None:
                continue
            current = int(target.obj["spec"].get("replicas", 1))
            low, high = int(spec.get("minReplicas", 1)), int(spec.get("maxReplicas", 1))
            desired = 0 if current == 0 else min(high, max(low, current))  # 0: autoscaling disabled
            if desired != current:
                self._scale_subresource(target, desired)
                why = ("Current number of replicas below Spec.MinReplicas" if desired > current
                       else "Current number of replicas above Spec.MaxReplicas")
                self._event(hpa.obj, "Normal", "SuccessfulRescale", f"New size: {desired}; reason: {why}",
                            "horizontal-pod-autoscaler")
            new_status = {**(hpa.obj.get("status") or {}), "currentReplicas": current,
                          "desiredReplicas": desired}
            if desired != current:
                new_status["lastScaleTime"] = rfc3339()
            if new_status != hpa.obj.get("status"):
                hpa.obj["status"] = new_status
                hpa.obj["metadata"]["resourceVersion"] = self._next_rv()

    def _scale_subresource(self, stored: _Object, replicas: int) -> None:
        """An Update of ``deployments/scale`` by the controller manager: it takes ``spec.replicas``."""
        for entry in stored.managers.values():
            drop_path(entry.body, ("spec", "replicas"))
        stored.managers = {m: e for m, e in stored.managers.items() if e.body}
        stored.managers[CONTROLLER_MANAGER] = _Managed("Update", {"spec": {"replicas": replicas}}, rfc3339(),
                                                       "autoscaling/v1", "scale")
        meta = stored.obj["metadata"]
        obj = self._build("Deployment", "apps/v1", meta["namespace"], meta["name"], stored.managers,
                          stored.obj)
        obj["metadata"]["resourceVersion"] = self._next_rv()
        stored.obj = obj

    def _reconcile(self, stored: _Object) -> None:
        """The Deployment controller: pods for the current template, rolled as the strategy says."""
        dep = stored.obj
        meta, spec = dep["metadata"], dep["spec"]
        rollout = self._rollouts.setdefault(meta["uid"], _Rollout())
        desired = int(spec.get("replicas", 1))
        current = template_hash(spec["template"])
        rollout.hashes.setdefault(current, time.monotonic())
        strategy = spec.get("strategy") or {}
        mine = [p for p in self._pods.values() if p.owner_uid == meta["uid"]]
        live = [p for p in mine if not p.terminating]
        new = [p for p in live if p.template_hash == current]
        old = [p for p in live if p.template_hash != current]
        if strategy.get("type") == "Recreate":
            if old:
                self._scale_down(dep, rollout, old, len(old))
            elif not any(p.template_hash != current for p in mine):  # the old pods are all gone
                self._scale_to(dep, rollout, current, new, desired)
        elif not old:
            self._scale_to(dep, rollout, current, new, desired)
        else:
            surge, unavailable = rolling_bounds(strategy, desired)
            up = min(desired + surge - len(live), desired - len(new))
            if up > 0:
                new += self._create_pods(dep, rollout, current, up, len(new))
                live = [*new, *old]
            min_available = desired - unavailable
            new_unavailable = sum(not p.available for p in new)
            budget = len(live) - min_available - new_unavailable
            if budget > 0:
                # first the old pods that are not available anyway, oldest template first
                def order(p: _Pod) -> tuple[Any, ...]:
                    return (rollout.hashes.get(p.template_hash, 0.0), *_deletion_rank(p))

                unhealthy = sorted((p for p in old if not p.available), key=order)
                self._scale_down(dep, rollout, unhealthy[:budget], None)
                old = [p for p in old if not p.terminating]
                available = sum(p.available for p in [*new, *old])
                down = min(available - min_available, len(old))
                if down > 0:
                    self._scale_down(dep, rollout, sorted(old, key=order)[:down], None)
        self._deployment_status(stored, rollout, current, desired)

    def _scale_to(self, dep: Mapping[str, Any], rollout: _Rollout, current: str, new: list[_Pod],
                  desired: int) -> None:
        if len(new) < desired:
            self._create_pods(dep, rollout, current, desired - len(new), len(new))
        elif len(new) > desired:
            self._scale_down(dep, rollout, sorted(new, key=_deletion_rank), len(new) - desired)
        else:
            self._resize(dep, rollout, current, desired)

    def _resize(self, dep: Mapping[str, Any], rollout: _Rollout, h: str, size: int) -> None:
        """The (virtual) ReplicaSet of template ``h`` now wants ``size`` pods: a ScalingReplicaSet
        event when that changed (replacing a deleted pod is no scaling)."""
        before = rollout.sizes.get(h, 0)
        if size != before:
            rollout.sizes[h] = size
            way = "up" if size > before else "down"
            self._event(dep, "Normal", "ScalingReplicaSet", f"Scaled {way} replica set "
                        f"{dep['metadata']['name']}-{h} from {before} to {size}", "deployment-controller")

    def _scale_down(self, dep: Mapping[str, Any], rollout: _Rollout, ranked: list[_Pod],
                    count: int | None) -> None:
        chosen = ranked if count is None else ranked[:count]
        uid = dep["metadata"]["uid"]
        for pod in chosen:
            self._terminate(pod, None)
        for h in {p.template_hash for p in chosen}:
            live = sum(1 for p in self._pods.values()
                       if p.owner_uid == uid and p.template_hash == h and not p.terminating)
            self._resize(dep, rollout, h, live)

    def _create_pods(self, dep: Mapping[str, Any], rollout: _Rollout, current: str, count: int,
                     have: int) -> list[_Pod]:
        meta = dep["metadata"]
        template = dep["spec"]["template"]
        tmeta = template.get("metadata") or {}
        rs_name = f"{meta['name']}-{current}"
        rs_uid = str(uuid.uuid5(uuid.NAMESPACE_URL, meta["uid"] + current))
        created = []
        for _ in range(count):
            name = f"{rs_name}-{_suffix()}"
            while (meta["namespace"], name) in self._pods:
                name = f"{rs_name}-{_suffix()}"
            pod_spec = copy.deepcopy(template.get("spec") or {})
            obj = {"apiVersion": "v1", "kind": "Pod",
                   "metadata": {"name": name, "generateName": f"{rs_name}-", "namespace": meta["namespace"],
                                "uid": str(uuid.uuid4()), "resourceVersion": self._next_rv(),
                                "creationTimestamp": rfc3339(),
                                "labels": {**(tmeta.get("labels") or {}), "pod-template-hash": current},
                                "annotations": dict(tmeta.get("annotations") or {}),
                                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                                                     "name": rs_name, "uid": rs_uid, "controller": True,
                                                     "blockOwnerDeletion": True}]},
                   "spec": pod_spec, "status": {"phase": "Pending"}}
            if not obj["metadata"]["annotations"]:
                del obj["metadata"]["annotations"]
            pod = _Pod(meta["namespace"], name, obj, meta["uid"], current, _pod_requests(pod_spec))
            pod.obj["status"] = self._pod_status(pod)
            self._pods[(pod.namespace, name)] = pod
            created.append(pod)
        self._resize(dep, rollout, current, max(have + count, rollout.sizes.get(current, 0)))
        return created

    def _deployment_status(self, stored: _Object, rollout: _Rollout, current: str, desired: int) -> None:
        dep = stored.obj
        meta, spec = dep["metadata"], dep["spec"]
        live = [p for p in self._pods.values() if p.owner_uid == meta["uid"] and not p.terminating]
        new = [p for p in live if p.template_hash == current]
        ready = sum(p.available for p in live)
        ready_new = sum(p.available for p in new)
        old = len(live) - len(new)
        strategy = spec.get("strategy") or {}
        rolling = strategy.get("type") == "RollingUpdate"
        unavailable_ok = rolling_bounds(strategy, desired)[1] if rolling else 0
        now, mono = rfc3339(), time.monotonic()
        counts = (current, desired, len(new), ready, old)
        previous = rollout.counts
        progressed = (previous is None or previous[0] != current or previous[1] != desired
                      or len(new) > previous[2] or ready > previous[3] or old < previous[4])
        rollout.counts = counts
        complete = old == 0 and len(new) == desired and ready_new >= desired
        rs_name = f"{meta['name']}-{current}"
        cond = rollout.progressing

        def progressing(state: str, reason: str, message: str, touch: bool) -> dict[str, Any]:
            same = cond is not None and cond["status"] == state
            return {"type": "Progressing", "status": state,
                    "lastUpdateTime": now if touch or cond is None else cond["lastUpdateTime"],
                    "lastTransitionTime": cond["lastTransitionTime"] if same and cond else now,
                    "reason": reason, "message": message}

        if complete:
            if cond is None or cond["reason"] != "NewReplicaSetAvailable":
                cond = progressing("True", "NewReplicaSetAvailable",
                                   f'ReplicaSet "{rs_name}" has successfully progressed.', True)
            rollout.progressed_at = mono
        elif progressed:
            cond = progressing("True", "ReplicaSetUpdated", f'ReplicaSet "{rs_name}" is progressing.', True)
            rollout.progressed_at = mono
        elif cond is not None and cond["reason"] == "ReplicaSetUpdated":
            deadline = float(spec.get("progressDeadlineSeconds", 600)) * self.time_scale
            if mono - rollout.progressed_at > deadline:
                cond = progressing("False", "ProgressDeadlineExceeded",
                                   f'ReplicaSet "{rs_name}" has timed out progressing.', True)
        rollout.progressing = cond
        minimum = ready >= desired - unavailable_ok
        avail = rollout.available
        if avail is None or (avail["status"] == "True") != minimum:
            avail = {"type": "Available", "status": "True" if minimum else "False", "lastUpdateTime": now,
                     "lastTransitionTime": now,
                     "reason": "MinimumReplicasAvailable" if minimum else "MinimumReplicasUnavailable",
                     "message": "Deployment has minimum availability." if minimum
                     else "Deployment does not have minimum availability."}
            rollout.available = avail
        new_status: dict[str, Any] = {"observedGeneration": meta.get("generation", 1)}
        for key, value in (("replicas", len(live)), ("updatedReplicas", len(new)), ("readyReplicas", ready),
                           ("availableReplicas", ready), ("unavailableReplicas", max(0, len(live) - ready))):
            if value:
                new_status[key] = value  # the API omits zero counts
        new_status["conditions"] = [c for c in (avail, cond) if c is not None]
        if new_status != dep.get("status"):
            dep["status"] = new_status
            meta["resourceVersion"] = self._next_rv()

    def _collect_orphans(self) -> None:
        """Pods whose Deployment is gone terminate (background propagation)."""
        owners = {o.obj["metadata"]["uid"] for (k, _, _), o in self._objects.items() if k == "Deployment"}
        for pod in list(self._pods.values()):
            if pod.owner_uid not in owners and not pod.terminating:
                self._terminate(pod, None)
        for uid in [u for u in self._rollouts if u not in owners]:
            del self._rollouts[uid]

    def _schedule(self) -> None:
        """Fit Pending pods onto the one node; start a kubelet worker for each placed pod."""
        used: dict[str, Fraction] = collections.defaultdict(Fraction)
        gpus_used: set[int] = set()
        placed = [p for p in self._pods.values() if p.scheduled]
        for pod in placed:
            for name, amount in pod.requests.items():
                used[name] += amount
            gpus_used.update(pod.gpus)
        capacity = {"cpu": Fraction(self.cpu), "memory": Fraction(self.memory),
                    self.gpu_resource: Fraction(self.gpus)}
        count = len(placed)
        now = time.monotonic()
        for pod in sorted((p for p in self._pods.values() if not p.scheduled and not p.terminating),
                          key=lambda p: p.created):
            reasons = set()
            selector = pod.obj["spec"].get("nodeSelector") or {}
            if any(self.node_labels.get(k) != v for k, v in selector.items()):
                reasons.add("node(s) didn't match Pod's node affinity/selector")
            for name, amount in pod.requests.items():
                if name == "ephemeral-storage" or amount == 0:
                    continue
                if used[name] + amount > capacity.get(name, Fraction(0)):
                    reasons.add(f"Insufficient {name}")
            if count >= MAX_PODS:
                reasons.add("Too many pods")
            if reasons:
                message = f"0/1 nodes are available: {', '.join('1 ' + r for r in sorted(reasons))}."
                if message != pod.unschedulable or now - pod.sched_event_at >= SCHEDULER_RETRY:
                    pod.unschedulable, pod.sched_event_at = message, now
                    self._event(pod.obj, "Warning", "FailedScheduling", message, "default-scheduler")
                    self._refresh(pod)
                continue
            pod.scheduled, pod.unschedulable = True, ""
            count += 1
            for name, amount in pod.requests.items():
                used[name] += amount
            wanted = int(pod.requests.get(self.gpu_resource, 0))
            pod.gpus = tuple(sorted(set(range(self.gpus)) - gpus_used)[:wanted])
            gpus_used.update(pod.gpus)
            pod.ip = self._allocate_ip(pod)
            pod.start_time = rfc3339()
            pod.obj["spec"]["nodeName"] = NODE_NAME
            pod.workdir = tempfile.mkdtemp(prefix=f"kubesim-{pod.name}-")
            self._event(pod.obj, "Normal", "Scheduled",
                        f"Successfully assigned {pod.namespace}/{pod.name} to {NODE_NAME}",
                        "default-scheduler")
            self._refresh(pod)
            pod.worker = threading.Thread(target=self._kubelet, args=(pod,), name=f"kubelet-{pod.name}",
                                          daemon=True)
            pod.worker.start()

    def _allocate_ip(self, pod: _Pod) -> str:
        in_use = {p.ip for p in self._pods.values() if p.ip}
        ports = [int(port["containerPort"]) for port in pod.container.get("ports") or []
                 if port.get("containerPort")]
        for _ in range(IP_SPACE):
            self._ip_next = (self._ip_next + 1) % IP_SPACE
            ip = f"127.1.{self._ip_next // 254}.{self._ip_next % 254 + 1}"
            if ip not in in_use and all(_port_free(ip, port) for port in ports):
                return ip
        raise RuntimeError("the simulator ran out of loopback pod IPs")

