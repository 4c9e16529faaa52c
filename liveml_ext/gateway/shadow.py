"""The gateway's mirror: copies of sampled live queries go to a deployment's shadow pool.

``Mirror.offer`` runs after the caller's answer is decided; it only schedules a task, so the
live answer never waits for the shadow and never changes. The task sends the same body to a
ready shadow replica with the shadow's own timeout, counts what happens (mirrored, answered,
errors, skipped when the shadow is busy or not ready, latencies of both sides) and hands both
answers to the pair sink, from which ``liveml compare`` reads. A shadow failure is only counted.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .pool import Gateway, Pool

log = logging.getLogger("liveml.shadow")

#: latencies kept per shadow for its p50/p99 (the newest ones)
KEEP = 10_000
#: shadow queries in flight per shadow replica and thread: past it a sampled query is skipped
PER_THREAD = 4


def percentile(values: Any, q: float) -> float | None:
    """The ``q`` quantile (0..1) of ``values`` by the nearest rank, None when empty."""
    ordered = sorted(values)
    if not ordered:
        return None
    return float(ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))])


@dataclass(frozen=True)
class SideAnswer:
    """What one query sent to a side pool (a shadow's, a replay's) got."""

    status: int  # 0 when no answer came
    data: bytes
    node: str
    error: str  # why no answer came ("" when one did)
    ms: float


async def side_call(gateway: Gateway, pool: Pool, body: bytes, v2: bool,
                    timeout: float) -> SideAnswer:
    """Send ``body`` to the least loaded member of a side pool, once, within ``timeout``;
    never raises (a failure is the answer's ``error``)."""
    started = time.perf_counter()
    status, data, node, error = 0, b"", "", ""
    member = gateway.least_loaded(pool)
    if member is None:
        error = "no ready replica"
    else:
        node = member.node_id
        member.inflight += 1
        try:
            status, data = await asyncio.wait_for(gateway.client.post(
                member.url, "/v2/transform" if v2 else "/v1/transform", body, timeout,
                token=member.token), timeout)
        except TimeoutError:
            error = f"no answer within {timeout:g}s"
        except Exception as exc:  # noqa: BLE001 - a side pool's failure is only counted
            error = f"{type(exc).__name__}: {exc}"
        finally:
            member.inflight -= 1
    return SideAnswer(status, data, node, error, (time.perf_counter() - started) * 1000.0)


@dataclass
class ShadowStats:
    mirrored: int = 0
    answered: int = 0
    errors: int = 0
    skipped: int = 0
    latencies: deque[float] = field(default_factory=lambda: deque(maxlen=KEEP))
    live_latencies: deque[float] = field(default_factory=lambda: deque(maxlen=KEEP))


@dataclass
class ShadowTarget:
    """One deployment's shadow as the gateway sees it (kept by the controller)."""

    rid: str
    release_version: str
    sample: float
    timeout: float
    pool: Pool
    threads: int = 1
    stats: ShadowStats = field(default_factory=ShadowStats)
    inflight: int = 0


@dataclass(frozen=True)
class Pair:
    """A live query and the shadow's answer to the same body."""

    time: float
    deployment_rid: str
    request_id: str
    api: str
    request: bytes
    a_release: str  # the live side: what the caller got
    a_node: str
    a_status: int
    a_latency_ms: float
    a_response: bytes
    b_release: str  # the other side: the shadow (or a replay's release)
    b_node: str
    b_status: int
    b_latency_ms: float
    b_response: bytes
    b_error: str
    source: str = "shadow"


class Mirror:
    """Schedules shadow copies of live queries; ``targets`` are set by the controller."""

    def __init__(self, gateway: Gateway, sink: Callable[[Pair], None],
                 sampled: Callable[[str, float], bool], query_id: Callable[[Any], str],
                 release_of: Callable[[str, str], str]) -> None:
        """``sink`` keeps each pair; ``sampled(request id, fraction)`` picks the queries;
        ``query_id(handler)`` is a query's request id; ``release_of(rid, node)`` the release
        a replica serves."""
        self.gateway = gateway
        self.sink = sink
        self.sampled = sampled
        self.query_id = query_id
        self.release_of = release_of
        self.targets: dict[str, ShadowTarget] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def offer(self, handler: Any, rid: str, body: bytes, status: int, data: bytes, node: str,
              started: float, v2: bool) -> None:
        """One live query that was answered (any status); never raises, never waits."""
        target = self.targets.get(rid)
        if target is None:
            return
        try:
            self._offer(target, handler, body, status, data, node, started, v2)
        except Exception:  # noqa: BLE001 - the mirror never fails a query
            log.exception("mirroring a query of %s failed", rid)

    def _offer(self, target: ShadowTarget, handler: Any, body: bytes, status: int, data: bytes,
               node: str, started: float, v2: bool) -> None:
        latency_ms = (time.perf_counter() - started) * 1000.0
        request_id = self.query_id(handler)
        if not self.sampled(request_id, target.sample):
            return
        live_release = self.release_of(target.rid, node)
        stats = target.stats
        capacity = PER_THREAD * target.threads * max(1, len(target.pool.members))
        if not target.pool.members or target.inflight >= capacity:
            stats.skipped += 1
            return
        target.inflight += 1
        stats.mirrored += 1
        task = asyncio.get_running_loop().create_task(self._send(
            target, body, v2, status, data, node, live_release, latency_ms, request_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, target: ShadowTarget, body: bytes, v2: bool, status: int,
                    data: bytes, node: str, live_release: str, latency_ms: float,
                    request_id: str) -> None:
        stats = target.stats
        try:
            answer = await side_call(self.gateway, target.pool, body, v2, target.timeout)
        finally:
            target.inflight -= 1
        if answer.error or answer.status >= 400:
            stats.errors += 1
        else:
            stats.answered += 1
        stats.latencies.append(answer.ms)
        stats.live_latencies.append(latency_ms)
        try:
            self.sink(Pair(time.time(), target.rid, request_id, "v2" if v2 else "v1", body,
                           live_release, node, status, latency_ms, data,
                           target.release_version, answer.node, answer.status, answer.ms,
                           answer.data, answer.error))
        except Exception:  # noqa: BLE001 - the comparison store must not break the mirror
            log.exception("could not keep a shadow answer of %s", target.rid)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


__all__ = ["Mirror", "Pair", "ShadowStats", "ShadowTarget", "SideAnswer", "percentile",
           "side_call"]
