"""Replay: captured queries run against another release, and the same report as a shadow's.

``replay`` reads the deployment's history of a window (queries captured with both their request
and their answer: ``--capture both``), starts a short-lived pool of the other release (the
controller's ``side_pool``: its own replicas, never the serving ones), sends each captured
request to it, keeps each pair in the comparison store (``source`` replay) and returns
``compare.report`` of the pairs. The live traffic is not touched.
"""
from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

import pandas as pd

from .capture.store import rows
from .capture.writer import pair_record
from .compare import report
from .controller.reconciler import Controller
from .core import models as m
from .core.errors import NothingToReplay, ShadowNotPossible
from .core.registry import Principal
from .core.timewindow import window
from .gateway.pool import Pool
from .gateway.shadow import Pair, side_call
from .store.db import Submission

if TYPE_CHECKING:
    from .controlplane import ControlPlane

#: requests in flight per replica and thread of the replayed release
PER_THREAD = 2


async def replay(cp: ControlPlane, ref: str, req: m.CreateReplay,
                 who: Principal) -> m.DescribeComparison:
    controller = cp.controller
    if not isinstance(controller, Controller):
        raise ShadowNotPossible("replay runs on the local backend only for now")
    start, end = window(req.since)
    with cp.store.session() as s:
        row = cp.deployments.row(s, ref, who, "manage")
        release = cp.shadows.release(s, row, req.release)
        sub = s.get(Submission, release.submission_rid)
        threads = int(row.runtime_configuration.get("threadCount", 1))
        s.expunge_all()
        rid = row.rid
    assert sub is not None
    loop = asyncio.get_running_loop()

    def read() -> list[dict[str, Any]]:
        cp.capture.flush()
        table = cp.history.read(rid, start, end, status="2xx", limit=req.limit)
        return [r for r in rows(table) if r["request"] is not None and r["response"] is not None]

    records = await loop.run_in_executor(None, read)
    if not records:
        raise NothingToReplay(
            "no query of this window was captured with both its request and its answer: turn "
            "capture on (`liveml update DEPLOYMENT --capture both`), send traffic, then replay",
            deploymentRid=rid, since=req.since)
    async with controller.side_pool(rid, release, sub, replicas=req.replicas) as pool:
        gate = asyncio.Semaphore(PER_THREAD * threads * req.replicas)
        pairs = await asyncio.gather(*(_one(cp, pool, gate, r, release.version, req.timeout)
                                       for r in records))
    for pair in pairs:
        cp.capture.keep_pair(pair)
    await loop.run_in_executor(None, cp.capture.flush)
    frame = pd.DataFrame([pair_record(p) for p in pairs])
    return report(frame, rid, "replay", start, end)


async def _one(cp: ControlPlane, pool: Pool, gate: asyncio.Semaphore, record: dict[str, Any],
               version: str, timeout: float) -> Pair:
    body = record["request"].encode()
    async with gate:
        answer = await side_call(cp.gateway, pool, body, record["api"] == "v2", timeout)
    return Pair(time.time(), record["deployment_rid"], record["request_id"], record["api"], body,
                record["release"], record["node_id"], record["status"], record["latency_ms"],
                record["response"].encode(), version, answer.node, answer.status, answer.ms,
                answer.data, answer.error, source="replay")


__all__ = ["replay"]
