"""The inference gateway: per-deployment pools of ready replicas, least-loaded routing, retries.

The request body is forwarded as bytes (the replica checks and decodes it). A query is sent to
another replica only when the first never received it (connection refused, or a 503 while it
loads or drains), so a rolling change drops nothing; a replica that breaks the connection while
handling a query gets a 502 ``ReplicaFailed`` instead (as Envoy's default retry policy), so a
query that kills replicas kills at most one.
"""
from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field

from ..core.errors import (
    LiveDeploymentNotFound,
    LiveMLError,
    ReplicaFailed,
    ServiceUnavailable,
    error_class,
)
from ..credentials import ReplicaCredentials
from .transport import ReplicaClient, ReplicaUnreachable

InferenceTimeout = error_class("InferenceTimeout", 504, "TIMEOUT")


@dataclass
class Member:
    node_id: str
    url: str
    inflight: int = 0
    served: int = 0
    token: str = ""  # what this replica checks (liveml_ext.credentials)


@dataclass
class Pool:
    rid: str
    namespace: str
    members: list[Member] = field(default_factory=list)
    unavailable_reason: str = "the deployment has no ready replica yet"

    def add(self, node_id: str, url: str, token: str = "") -> None:
        if not any(m.node_id == node_id for m in self.members):
            self.members.append(Member(node_id, url, token=token))

    def remove(self, node_id: str) -> Member | None:
        for m in self.members:
            if m.node_id == node_id:
                self.members = [x for x in self.members if x is not m]
                return m
        return None


class Gateway:
    """Routes inference requests to ready replicas. Pools are kept by the controller."""

    def __init__(self, timeout: float = 60.0,
                 credentials: ReplicaCredentials | None = None) -> None:
        """``credentials`` issue and check each replica's own token (sent with every request
        to that replica: ``Member.token``)."""
        self.pools: dict[str, Pool] = {}
        self.credentials = credentials or ReplicaCredentials()
        self.timeout = timeout
        self.headers = {"Content-Type": "application/json"}
        self.client = ReplicaClient()
        self._rr = itertools.count()

    def pool(self, rid: str) -> Pool:
        pool = self.pools.get(rid)
        if pool is None:
            raise self.not_found(rid)
        return pool

    @staticmethod
    def not_found(rid: str) -> LiveMLError:
        """The one answer for an unknown RID and for one the caller may not query."""
        return LiveDeploymentNotFound(f"no live deployment {rid!r}", deploymentRid=rid)

    def _pick(self, pool: Pool, tried: set[str]) -> Member | None:
        """The least loaded member not tried yet; ties go round-robin (one pass, no lists)."""
        members = pool.members
        n = len(members)
        if not n:
            return None
        start = next(self._rr) % n
        best: Member | None = None
        for i in range(start, start + n):
            m = members[i % n]
            if (best is None or m.inflight < best.inflight) and m.node_id not in tried:
                best = m
        return best

    def least_loaded(self, pool: Pool) -> Member | None:
        """The member of ``pool`` with the fewest requests in flight (None when empty)."""
        return self._pick(pool, set())

    async def forward(self, pool: Pool, body: bytes, v2: bool) -> tuple[int, bytes, str]:
        """Send one request to a ready replica of ``pool``; retry where it is safe.

        Returns (status, body, node id of the replica that answered).
        """
        path = "/v2/transform" if v2 else "/v1/transform"
        tried: set[str] = set()
        while True:
            member = self._pick(pool, tried)
            if member is None:
                raise ServiceUnavailable(
                    pool.unavailable_reason if not tried else
                    "no replica could take the request; the deployment may be restarting",
                    deploymentRid=pool.rid)
            tried.add(member.node_id)
            member.inflight += 1
            try:
                status, data = await self.client.post(member.url, path, body, self.timeout,
                                                      token=member.token)
            except ReplicaUnreachable:
                continue  # the request never reached it: another replica takes it
            except TimeoutError as exc:  # before OSError, of which it is a subclass
                raise InferenceTimeout(
                    f"the model did not answer within {self.timeout:g}s; send fewer rows per "
                    "query, or raise the control plane's inference timeout "
                    "(`liveml server --inference-timeout`)",
                    deploymentRid=pool.rid) from exc
            except OSError as exc:  # it may have died of this very request: never resend it
                raise ReplicaFailed(
                    f"replica {member.node_id} failed while handling the request (it may have "
                    "run out of memory or crashed); the request was not sent to another "
                    "replica, as it may be what made this one fail. See `liveml events` and "
                    "`liveml logs` of the deployment; send it again if it was not the cause",
                    deploymentRid=pool.rid, nodeId=member.node_id) from exc
            finally:
                member.inflight -= 1
            if status == 503 or (status == 429 and self._pick(pool, tried) is not None):
                continue  # loading, draining or full: another replica may take it
            member.served += 1
            return status, data, member.node_id

    async def drain(self, member: Member, timeout: float = 30.0) -> None:
        """Wait until a member removed from its pool has no request in flight."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while member.inflight and loop.time() < deadline:
            await asyncio.sleep(0.02)

    async def close(self) -> None:
        self.client.close()


__all__ = ["Gateway", "InferenceTimeout", "LiveMLError", "Member", "Pool"]
