"""Kubernetes events of the namespace, relayed to the deployments they are about.

Once per poll the controller reads the namespace's events; each new or repeated one about one of
liveml's objects (a pod, Deployment, ReplicaSet or HPA of a deployment) becomes a liveml event
when it is a warning (FailedScheduling, BackOff, Unhealthy, ...) and a log record otherwise.
Events from before this control plane started are not replayed.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from .kube_logs import object_of_pod


class EventRelay:
    """What was seen of each event (by uid, with its count), and the relaying.

    ``owners`` gives object name -> deployment RID now; ``emit(rid, kind, message, level,
    **fields)`` records a liveml event; ``shipper`` takes the rest as log records."""

    def __init__(self, owners: Callable[[], dict[str, str]], emit: Callable[..., None],
                 shipper: Any) -> None:
        self.owners = owners
        self.emit = emit
        self.shipper = shipper
        self.seen: dict[str, int] = {}
        self.since = dt.datetime.now(dt.UTC)

    @staticmethod
    def _owner(involved: dict[str, Any], by_name: dict[str, str]) -> tuple[str, str] | None:
        """(deployment rid, node id) of an event's object, when it is one of ours."""
        kind, name = involved.get("kind"), involved.get("name") or ""
        if kind == "Pod":
            rid = by_name.get(object_of_pod(name))
            return (rid, name) if rid else None
        if kind in ("Deployment", "HorizontalPodAutoscaler", "ReplicaSet"):
            rid = by_name.get(name) or by_name.get(name.rsplit("-", 1)[0])  # a ReplicaSet: -<hash>
            return (rid, "control-plane") if rid else None
        return None

    def dispatch(self, events: list[dict[str, Any]]) -> None:
        """New or repeated Kubernetes events: warnings become liveml events, the rest logs."""
        since = self.since.isoformat().replace("+00:00", "Z")
        by_name = self.owners()
        for ev in sorted(events, key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or ""):
            uid = (ev.get("metadata") or {}).get("uid") or ""
            count = int(ev.get("count") or 1)
            if self.seen.get(uid, 0) >= count:
                continue
            first_time = uid not in self.seen
            self.seen[uid] = count
            when = ev.get("lastTimestamp") or ev.get("eventTime") or ""
            if first_time and when and when < since[:len(when)]:
                continue  # from before this control plane started
            owner = self._owner(ev.get("involvedObject") or {}, by_name)
            if owner is None:
                continue
            rid, node = owner
            reason, message = ev.get("reason") or "", (ev.get("message") or "").strip()
            obj = f"{(ev.get('involvedObject') or {}).get('kind')}/" \
                  f"{(ev.get('involvedObject') or {}).get('name')}"
            text = f"Kubernetes {reason} on {obj}: {message}" + (f" (x{count})" if count > 1 else "")
            if ev.get("type") == "Warning":
                self.emit(rid, "kubernetes", text, level="WARNING", reason=reason, object=obj,
                          count=count)
            elif self.shipper is not None:
                self.shipper.emit(rid, text, logger="kubernetes.events", node_id=node,
                                  event="kubernetes", reason=reason, object=obj)
        if len(self.seen) > 20_000:
            listed = {(e.get("metadata") or {}).get("uid") for e in events}
            self.seen = {k: v for k, v in self.seen.items() if k in listed}
