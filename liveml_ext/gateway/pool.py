"""The inference gateway: per-deployment pools of ready replicas, least-loaded routing, retries.

The request body is forwarded as bytes (the replica checks and decodes it). A query is sent to
another replica only when the first never received it (connection refused, or a 503 while it
loads or drains), so a rolling change drops nothing; a replica that breaks the connection while
handling a query gets a 502 ``ReplicaFailed`` instead (as Envoy's default retry policy), so a
query that kills replicas kills at most one.

Batching: a replica takes at most ``depth`` calls at a time from the gateway (its
``threadCount``). A query that
finds every replica at that depth waits in its pool, and when a call ends the queries waiting
then go to the least loaded replica together, as one batch call (``liveml_runtime.wire``),
which the replica answers query by query, running the model once for all of them. One query
at a time never waits; under load, one call carries many queries, so neither the gateway nor
the replica pays the HTTP exchange per query.
"""
from __future__ import annotations

import asyncio
import functools
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from liveml_runtime.wire import BATCH_PATH, pack_queries, unpack_answers

from ..core.errors import (
    LiveDeploymentNotFound,
    LiveMLError,
    ReplicaFailed,
    ServiceUnavailable,
    TooManyRequests,
    error_class,
)
from ..credentials import ReplicaCredentials
from .transport import ReplicaClient, ReplicaUnreachable

InferenceTimeout = error_class("InferenceTimeout", 504, "TIMEOUT")
#: Bodies above this size always go alone (one call each), never in a batch call.
BATCHED_BODY_MAX = 64 * 1024


@dataclass
class Member:
    node_id: str
    url: str
    inflight: int = 0  # queries in flight (a batch call counts each of its queries)
    served: int = 0
    token: str = ""  # what this replica checks (liveml_ext.credentials)
    calls: int = 0  # calls in flight (a batch call is one)
    depth: int = 1  # calls it takes at a time (its threadCount); more queries wait
    batches: bool = True  # False once it answered the batch call 404 (an older runtime)


@dataclass(eq=False)
class Waiting:
    """A query waiting for a replica to have room (``Gateway.forward``)."""

    v2: bool
    body: bytes
    future: asyncio.Future[Outcome]


@dataclass(frozen=True)
class Resend:
    """The query never reached ``node_id``: the gateway tries another replica (``""``: it
    tries again, e.g. after the pool lost its last member, so the caller hears why)."""

    node_id: str


#: What a call gives each of its queries: its answer and who gave it, or "send it elsewhere".
Outcome = tuple[int, bytes, Member] | Resend


@dataclass
class Pool:
    rid: str
    namespace: str
    members: list[Member] = field(default_factory=list)
    unavailable_reason: str = "the deployment has no ready replica yet"
    waiting: deque[Waiting] = field(default_factory=deque)
    wake: Callable[[], None] | None = None  # the gateway's: members changed, send what waits

    def add(self, node_id: str, url: str, token: str = "", depth: int = 1) -> None:
        for m in self.members:
            if m.node_id == node_id:
                m.depth = max(1, depth)  # e.g. a Service with more pods behind it now
                break
        else:
            self.members.append(Member(node_id, url, token=token, depth=max(1, depth)))
        self._changed()

    def remove(self, node_id: str) -> Member | None:
        for m in self.members:
            if m.node_id == node_id:
                self.members = [x for x in self.members if x is not m]
                self._changed()
                return m
        return None

    @property
    def queries(self) -> int:
        """Queries in flight to the members or waiting for one (the autoscaler's load)."""
        return sum(m.inflight for m in self.members) + len(self.waiting)

    def _changed(self) -> None:
        if self.waiting and self.wake is not None:
            self.wake()


class Gateway:
    """Routes inference requests to ready replicas. Pools are kept by the controller."""

    def __init__(self, timeout: float = 60.0,
                 credentials: ReplicaCredentials | None = None, max_batch: int = 16,
                 max_waiting: int = 4096) -> None:
        """``credentials`` issue and check each replica's own token (sent with every request
        to that replica: ``Member.token``). A replica takes ``Member.depth`` calls at a time;
        a batch call carries up to ``max_batch`` queries (1: no batch calls). Not all that
        waits: one call taking every waiting query gathers all clients into one cohort, whose
        replica then alternates with calls of a single query. Past ``max_waiting`` queries
        waiting in one pool, a query gets a 429."""
        self.pools: dict[str, Pool] = {}
        self.credentials = credentials or ReplicaCredentials()
        self.timeout = timeout
        self.max_batch = max(1, max_batch)
        self.max_waiting = max_waiting
        self.headers = {"Content-Type": "application/json"}
        self.client = ReplicaClient()

    def pool(self, rid: str) -> Pool:
        pool = self.pools.get(rid)
        if pool is None:
            raise self.not_found(rid)
        return pool

    @staticmethod
    def not_found(rid: str) -> LiveMLError:
        """The one answer for an unknown RID and for one the caller may not query."""
        return LiveDeploymentNotFound(f"no live deployment {rid!r}", deploymentRid=rid)

    @staticmethod
    def _pick(pool: Pool, tried: set[str], free: bool = False) -> Member | None:
        """The least loaded member not tried yet (with room for a call, when ``free``).

        Ties go to the first: one query at a time keeps going to the same replica, whose
        caches are warm (alternating between two costs a fast model about a third more)."""
        best: Member | None = None
        for m in pool.members:
            if (best is None or m.inflight < best.inflight) and m.node_id not in tried and \
                    (not free or m.calls < m.depth):
                best = m
        return best

    def least_loaded(self, pool: Pool) -> Member | None:
        """The member of ``pool`` with the fewest requests in flight (None when empty)."""
        return self._pick(pool, set())

    async def forward(self, pool: Pool, body: bytes, v2: bool) -> tuple[int, bytes, str]:
        """Send one request to a ready replica of ``pool``; retry where it is safe.

        Returns (status, body, node id of the replica that answered).
        """
        tried: set[str] = set()
        while True:
            member = self._pick(pool, tried)
            if member is None:
                raise ServiceUnavailable(
                    pool.unavailable_reason if not tried else
                    "no replica could take the request; the deployment may be restarting",
                    deploymentRid=pool.rid)
            free = member if member.calls < member.depth else self._pick(pool, tried, True)
            if free is None and self.max_batch > 1 and not tried and \
                    len(body) <= BATCHED_BODY_MAX:
                outcome = await self._wait(pool, v2, body)  # every replica is busy
            else:
                outcome = await self._alone(pool, free or member, v2, body)
            if isinstance(outcome, Resend):
                if outcome.node_id:  # "": the pool changed under it (no member left, ...)
                    tried.add(outcome.node_id)
                continue
            status, data, member = outcome
            if status == 503 or (status == 429 and
                                 self._pick(pool, tried | {member.node_id}) is not None):
                tried.add(member.node_id)  # loading, draining or full: another may take it
                continue
            member.served += 1
            return status, data, member.node_id

    async def _alone(self, pool: Pool, member: Member, v2: bool, body: bytes) -> Outcome:
        """One query in a call of its own."""
        member.calls += 1
        member.inflight += 1
        return (await self._call(pool, member, [(v2, body)]))[0]

    async def _call(self, pool: Pool, member: Member,
                    queries: list[tuple[bool, bytes]]) -> list[Outcome]:
        """One call to ``member`` (counted in it by the caller) for ``queries``: one alone,
        more as a batch call; each query's outcome. Raises ``InferenceTimeout``, or
        ``ReplicaFailed`` when the replica may have received them (never resent)."""
        n = len(queries)
        try:
            if n == 1:
                v2, body = queries[0]
                path = "/v2/transform" if v2 else "/v1/transform"
            else:
                path, body = BATCH_PATH, pack_queries(queries)
            status, data = await self.client.post(member.url, path, body, self.timeout,
                                                  token=member.token)
        except ReplicaUnreachable:
            return [Resend(member.node_id)] * n  # the request never reached it
        except TimeoutError as exc:  # before OSError, of which it is a subclass
            raise self._timed_out(pool) from exc
        except OSError as exc:  # it may have died of these very queries: never resend them
            raise self._failed(pool, member) from exc
        finally:
            member.calls -= 1
            member.inflight -= n
            if pool.waiting:
                self._flush(pool)
        if n > 1 and status == 404:  # an older runtime: one query per call from now on
            member.batches = False
            return [Resend("")] * n
        if n == 1 or status != 200:  # the one answer, or a whole call refused (a 503 ...)
            return [(status, data, member)] * n
        try:
            return [(s, d, member) for s, d in unpack_answers(data, n)]
        except ValueError as exc:  # a garbled answer
            raise self._failed(pool, member) from exc

    async def _wait(self, pool: Pool, v2: bool, body: bytes) -> Outcome:
        """Wait in the pool for the next batch call."""
        if len(pool.waiting) >= self.max_waiting:
            raise TooManyRequests(
                f"{len(pool.waiting)} queries are waiting for a replica of this deployment; "
                "retry shortly, or raise maxReplicas", deploymentRid=pool.rid)
        waiting = Waiting(v2, body, asyncio.get_running_loop().create_future())
        pool.waiting.append(waiting)
        if pool.wake is None:
            pool.wake = functools.partial(self._flush, pool)
        return await waiting.future

    def _flush(self, pool: Pool) -> None:
        """Send what waits in ``pool`` to the members with room, in batch calls."""
        while pool.waiting:
            member = self._pick(pool, set(), True)
            if member is None:
                if not pool.members:  # nobody left: each query hears why from forward
                    while pool.waiting:
                        waiting = pool.waiting.popleft()
                        if not waiting.future.done():
                            waiting.future.set_result(Resend(""))
                return
            batch: list[Waiting] = []
            size = self.max_batch if member.batches else 1
            while pool.waiting and len(batch) < size:
                waiting = pool.waiting.popleft()
                if not waiting.future.done():  # its caller may have gone
                    batch.append(waiting)
            if batch:
                member.calls += 1
                member.inflight += len(batch)
                asyncio.get_running_loop().create_task(self._batch(pool, member, batch))

    async def _batch(self, pool: Pool, member: Member, batch: list[Waiting]) -> None:
        """One call for the queries of ``batch`` (``_flush`` counted it in ``member``)."""
        outcomes: list[Outcome] | None = None
        error: LiveMLError | None = None
        try:
            outcomes = await self._call(pool, member, [(w.v2, w.body) for w in batch])
        except LiveMLError as exc:
            error = exc
        finally:
            for i, waiting in enumerate(batch):
                if waiting.future.done():
                    continue
                if outcomes is not None:
                    waiting.future.set_result(outcomes[i])
                else:  # each caller gets an error of its own (its own errorInstanceId)
                    waiting.future.set_exception(
                        type(error)(error.message, **error.parameters) if error else
                        ServiceUnavailable("the gateway stopped before the replica answered",
                                           deploymentRid=pool.rid))

    def _timed_out(self, pool: Pool) -> LiveMLError:
        return InferenceTimeout(
            f"the model did not answer within {self.timeout:g}s; send fewer rows per "
            "query, or raise the control plane's inference timeout "
            "(`liveml server --inference-timeout`)", deploymentRid=pool.rid)

    @staticmethod
    def _failed(pool: Pool, member: Member) -> LiveMLError:
        return ReplicaFailed(
            f"replica {member.node_id} failed while handling the request (it may have "
            "run out of memory or crashed); the request was not sent to another "
            "replica, as it may be what made this one fail. See `liveml events` and "
            "`liveml logs` of the deployment; send it again if it was not the cause",
            deploymentRid=pool.rid, nodeId=member.node_id)

    async def drain(self, member: Member, timeout: float = 30.0) -> None:
        """Wait until a member removed from its pool has no request in flight."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while member.inflight and loop.time() < deadline:
            await asyncio.sleep(0.02)

    async def close(self) -> None:
        self.client.close()


__all__ = ["Gateway", "InferenceTimeout", "LiveMLError", "Member", "Pool"]
