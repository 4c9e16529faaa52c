"""Pod logs into the log shipper, for the Kubernetes controller.

Each poll reads the new lines of each pod's log (the pod log API, with the kubelet's timestamps;
``sinceSeconds`` a little before the last line shipped, duplicates dropped by timestamp and
line digest), a restarted container's previous log first, so a crash's traceback is kept. A
terminating pod's log is followed (``follow=true``, one thread per such pod) until its container
exits. Read positions are kept in ``state_file`` across control-plane restarts.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import math
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..store.home import write_private

log = logging.getLogger("liveml.controller.kubernetes")


@dataclass
class LogTail:
    """How far one pod's log has been read: the last kubelet timestamp and the lines at it."""

    last: str = ""
    at_last: set[int] = field(default_factory=set)
    restarts: int = 0


def _ts_key(stamp: str) -> str:
    """An RFC 3339 UTC time with its fraction padded to 9 digits, so that strings compare in
    time order (the kubelet trims trailing zeros)."""
    base, _, frac = stamp.rstrip("Z").partition(".")
    return f"{base}.{frac.ljust(9, '0')[:9]}Z"


def _epoch(stamp: str) -> float:
    base = stamp.rstrip("Z").partition(".")[0]
    return dt.datetime.fromisoformat(base).replace(tzinfo=dt.UTC).timestamp()


def split_log(text: str) -> list[tuple[str, bytes]]:
    """``<timestamp> <line>`` lines of the pod log API as (normalized timestamp, line)."""
    out = []
    for line in text.splitlines():
        stamp, sep, rest = line.partition(" ")
        if sep and stamp[:4].isdigit() and "T" in stamp:
            out.append((_ts_key(stamp), rest.encode()))
    return out


def object_of_pod(pod: str) -> str:
    """The object name of a Deployment's pod: ``<name>-<template hash>-<suffix>``."""
    return pod.rsplit("-", 2)[0]


class PodLogs:
    """How far each pod's log has been read, and the reading (worker threads call ``tail``).

    ``owner`` gives the deployment RID of an object name (None when it is not one of ours): a
    pod no longer listed is forgotten only by the deployment that owns it."""

    def __init__(self, cluster: Any, shipper: Any, state_file: Path | None,
                 owner: Callable[[str], str | None]) -> None:
        self.cluster = cluster
        self.shipper = shipper
        self.state_file = state_file
        self.owner = owner
        self.tails: dict[str, LogTail] = self._load()
        self._lock = threading.Lock()
        #: pods whose log is followed to its end: True while the stream runs, False after
        self.following: dict[str, bool] = {}

    def tail(self, rid: str, pods: list[dict[str, Any]]) -> None:
        """New lines of each pod's log into the shipper (on a worker thread)."""
        for pod in pods:
            node = pod["node_id"]
            if (pod["phase"] == "Pending" and not pod["restarts"]) or node in self.following:
                continue
            with self._lock:  # other deployments' passes run on other threads
                tail = self.tails.setdefault(node, LogTail())
            tags = {"node_id": node, "deployment_rid": rid,
                    "release": pod.get("release_version") or ""}
            try:
                if pod["restarts"] > tail.restarts:  # the crashed container's last words first
                    self.ship(tail, self.cluster.pod_log(node, previous=True), tags)
                    tail.restarts = pod["restarts"]
                if pod["terminating"]:  # its last lines come after the last poll: follow it
                    self.following[node] = True
                    threading.Thread(target=self._follow, args=(tail, node, tags), daemon=True,
                                     name=f"liveml-log-{node}").start()
                    continue
                self.ship(tail, self.cluster.pod_log(node, since_seconds=self._since(tail)), tags)
            except Exception as exc:  # noqa: BLE001 - try again next poll
                log.debug("could not read the log of pod %s: %s", node, exc)
        listed = {p["node_id"] for p in pods}
        with self._lock:
            known = list(self.tails)
        for node in [n for n in known if n not in listed and self.owner(object_of_pod(n)) == rid
                     and not self.following.get(n)]:
            with self._lock:
                self.tails.pop(node, None)  # the pod is gone
            self.following.pop(node, None)
        self.save()

    @staticmethod
    def _since(tail: LogTail) -> int | None:
        """``sinceSeconds`` that covers the last line shipped (a little before: dedupe does the
        rest), or None for the whole log."""
        return None if not tail.last else math.ceil(time.time() - _epoch(tail.last)) + 2

    def _follow(self, tail: LogTail, node: str, tags: dict[str, str]) -> None:
        """A terminating pod's log to its last line (on a thread of its own, as long as the
        pod drains). A stream that fails gives the pod back to polling."""
        ended = False
        try:
            for text in self.cluster.follow_pod_log(node, since_seconds=self._since(tail)):
                self.ship(tail, text, tags)
            ended = True
        except Exception as exc:  # noqa: BLE001 - polled again instead
            log.debug("could not follow the log of pod %s: %s", node, exc)
        finally:
            if ended:
                self.following[node] = False
            else:
                self.following.pop(node, None)

    def ship(self, tail: LogTail, text: str, tags: dict[str, str]) -> None:
        lines, times = [], []
        with self._lock:
            for stamp, line in split_log(text):
                digest = zlib.crc32(line)  # stable across restarts, unlike hash()
                if stamp < tail.last or (stamp == tail.last and digest in tail.at_last):
                    continue
                if stamp > tail.last:
                    tail.last, tail.at_last = stamp, set()
                tail.at_last.add(digest)
                lines.append(line)
                times.append(stamp)
        if lines:
            self.shipper.ingest(lines, tags, times)

    def _load(self) -> dict[str, LogTail]:
        if self.state_file is None:
            return {}
        try:
            doc = json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return {}
        return {pod: LogTail(last=t.get("last", ""), at_last=set(t.get("atLast", [])),
                             restarts=t.get("restarts", 0)) for pod, t in doc.items()}

    def save(self) -> None:
        if self.state_file is None:
            return
        with self._lock:
            doc = {pod: {"last": t.last, "atLast": sorted(t.at_last), "restarts": t.restarts}
                   for pod, t in list(self.tails.items())}
        write_private(self.state_file, json.dumps(doc))
