"""What the kubelet and metrics-server serve about pods: container logs (followed too) and
``metrics.k8s.io`` pod and node metrics."""
from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import psutil

from .common import (
    NODE_NAME,
    ApiError,
    _busy_seconds,
    _Instance,
    _Pod,
    _truthy,
    labels_match,
    parse_selector,
    parse_time,
    rfc3339,
    rfc3339_nano,
    tree_usage,
)


class Observe:
    """Pod logs and metrics (mixed into ``KubeSim``)."""

    def _log_text(self, pod: _Pod, query: dict[str, str]) -> str:
        container = pod.container["name"]
        where = f'container "{container}" in pod "{pod.name}"'
        if query.get("container") not in (None, "", container):
            raise ApiError(400, "BadRequest",
                           f"container {query['container']} is not valid for pod {pod.name}")
        if _truthy(query.get("previous")):
            # the kubelet's lastState.terminated instance
            instance = pod.last if (pod.current is not None or pod.waiting is not None) else (
                pod.instances[-2] if len(pod.instances) > 1 else None)
            if instance is None:
                raise ApiError(400, "BadRequest", f"previous terminated {where} not found")
        else:
            instance = pod.current or pod.last
            if instance is None:
                reason = pod.waiting[0] if pod.waiting else "ContainerCreating"
                raise ApiError(400, "BadRequest", f"{where} is waiting to start: {reason}")
        lines = list(instance.lines)
        follow = _truthy(query.get("follow")) and not _truthy(query.get("previous"))
        last = lines[-1][0] if lines else 0
        if query.get("sinceSeconds"):
            floor = time.time_ns() - int(float(query["sinceSeconds"]) * 1e9)
            lines = [line for line in lines if line[0] >= floor]
        elif query.get("sinceTime"):
            floor = int(parse_time(query["sinceTime"]) * 1e9)
            lines = [line for line in lines if line[0] >= floor]
        if query.get("tailLines"):
            tail = int(query["tailLines"])
            lines = lines[-tail:] if tail > 0 else []
        stamp = _truthy(query.get("timestamps"))

        def render(lines: Iterable[tuple[int, str]]) -> str:
            return "".join(f"{rfc3339_nano(at)} {line}\n" if stamp else f"{line}\n"
                           for at, line in lines)

        if follow:
            return self._follow(instance, render(lines), last, render)
        text = render(lines)
        if query.get("limitBytes"):
            text = text.encode()[:int(query["limitBytes"])].decode("utf-8", errors="ignore")
        return text

    def _follow(self, instance: _Instance, first: str, last: int,
                render: Callable[[Iterable[tuple[int, str]]], str]) -> Iterator[bytes]:
        """``follow=true``: what there is, then each new line until the container has exited
        and its output is read (the kubelet ends the stream then)."""
        yield first.encode()
        while not self._stopping:
            done = instance.exit_code is not None and not (instance.reader and
                                                            instance.reader.is_alive())
            new = [line for line in list(instance.lines) if line[0] > last]
            if new:
                last = new[-1][0]
                yield render(new).encode()
            if done:
                return
            time.sleep(0.05)


    def _node_metrics(self, name: str | None) -> tuple[int, Any]:
        if name not in (None, NODE_NAME):
            raise ApiError(404, "NotFound", f'nodemetrics.metrics.k8s.io "{name}" not found')
        now, busy = time.monotonic(), _busy_seconds()
        with self._lock:
            then, before = self._node_sample
            if now - then > 0.5:
                self._node_sample = (now, busy)
        cores = max(0.0, (busy - before) / max(now - then, 1e-3))
        memory = psutil.virtual_memory()
        item = {"metadata": {"name": NODE_NAME, "labels": dict(self.node_labels),
                             "creationTimestamp": rfc3339()},
                "timestamp": rfc3339(), "window": "10s",
                "usage": {"cpu": f"{round(cores * 1e9)}n",
                          "memory": f"{(memory.total - memory.available) // 1024}Ki"}}
        if name is not None:
            return 200, {"kind": "NodeMetrics", "apiVersion": "metrics.k8s.io/v1beta1", **item}
        return 200, {"kind": "NodeMetricsList", "apiVersion": "metrics.k8s.io/v1beta1", "metadata": {},
                     "items": [item]}

    def _pod_metrics(self, ns: str, name: str | None, query: dict[str, str]) -> tuple[int, Any]:
        terms = parse_selector(query.get("labelSelector"))
        with self._lock:
            pods = [(p, p.current.proc.pid) for (n, _), p in sorted(self._pods.items())
                    if n == ns and (name is None or p.name == name)
                    and labels_match(terms, p.obj["metadata"].get("labels"))
                    and p.current is not None and p.current.proc is not None]
        items = []
        for pod, pid in pods:  # psutil outside the lock
            try:
                cpu, rss = tree_usage(pid)
                created = psutil.Process(pid).create_time()
            except psutil.Error:
                continue  # the process just went
            now = time.time()
            with self._lock:
                then, before = pod.cpu_sample or (created, 0.0)
                pod.cpu_sample = (now, cpu)
            cores = max(0.0, (cpu - before) / max(now - then, 1e-3))
            items.append({"metadata": {"name": pod.name, "namespace": ns,
                                       "labels": dict(pod.obj["metadata"].get("labels") or {}),
                                       "creationTimestamp": rfc3339()},
                          "timestamp": rfc3339(), "window": "10s",
                          "containers": [{"name": pod.container["name"],
                                          "usage": {"cpu": f"{round(cores * 1e9)}n",
                                                    "memory": f"{rss // 1024}Ki"}}]})
        if name is not None:
            if not items:
                raise ApiError(404, "NotFound", f'podmetrics.metrics.k8s.io "{ns}/{name}" not found')
            return 200, {"kind": "PodMetrics", "apiVersion": "metrics.k8s.io/v1beta1", **items[0]}
        return 200, {"kind": "PodMetricsList", "apiVersion": "metrics.k8s.io/v1beta1", "metadata": {},
                     "items": items}

