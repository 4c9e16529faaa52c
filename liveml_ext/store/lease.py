"""One controller per database: a lease row that the leader renews and a standby takes over.

On SQLite in the home the home lock (``store/lock.py``) already makes this process the only
one, so it leads at once. On a shared database (PostgreSQL) a second control plane on another
home starts as a *standby*: it serves the REST API but does not reconcile (starts no replica)
until the leader's lease lapses (``ttl`` seconds without a renewal), then takes over.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import secrets
import socket
from collections.abc import Awaitable, Callable

from sqlalchemy import insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from .db import Lease, Store, now

log = logging.getLogger("liveml")
NAME = "controller"


class Leadership:
    """``role`` is ``leader`` or ``standby``; ``start(lead)`` awaits ``lead()`` once leading."""

    def __init__(self, store: Store, home: str, ttl: float = 10.0) -> None:
        self.store, self.home, self.ttl = store, str(home), ttl
        self.host = socket.gethostname()
        self.holder = f"{self.host}:{os.getpid()}:{secrets.token_hex(4)}"
        self.shared = not store.url.startswith("sqlite")
        self.role = "standby" if self.shared else "leader"
        self.url = ""
        self._task: asyncio.Task | None = None
        self._renewed = 0.0

    def take(self) -> bool:
        """Take or renew the lease: ours, lapsed, or left by a crashed control plane on this
        home (we hold the home lock, so its holder is gone). Whether we hold it now."""
        t = now()
        values = {"holder": self.holder, "host": self.host, "home": self.home, "url": self.url,
                  "expires_at": t + dt.timedelta(seconds=self.ttl), "renewed_at": t}
        with self.store.engine.begin() as conn:
            got = conn.execute(update(Lease).where(Lease.name == NAME, or_(
                Lease.holder == self.holder, Lease.expires_at < t,
                (Lease.host == self.host) & (Lease.home == self.home))).values(**values)).rowcount
            if got:
                return True
        try:
            with self.store.engine.begin() as conn:
                conn.execute(insert(Lease).values(name=NAME, **values))
            return True
        except IntegrityError:
            return False

    def leader(self) -> dict[str, str]:
        """The lease's holder, host, home and URL (``{}`` when nobody holds one)."""
        with self.store.engine.connect() as conn:
            row = conn.execute(select(Lease).where(Lease.name == NAME)).mappings().first()
        return {k: str(row[k]) for k in ("holder", "host", "home", "url")} if row else {}

    async def start(self, lead: Callable[[], Awaitable[None]],
                    lose: Callable[[], Awaitable[None]]) -> None:
        """Lead now when possible; otherwise keep trying in the background. ``lose`` is awaited
        if a leader ever fails to renew its lease within the TTL (another may lead then)."""
        if not self.shared:
            await lead()
            return
        loop = asyncio.get_running_loop()
        if await loop.run_in_executor(None, self.take):
            await self._lead(lead)
        else:
            other = await loop.run_in_executor(None, self.leader)
            log.warning("liveml: standby: the controller runs in the control plane %s (home %s "
                        "on %s); this one serves the API and takes over if that one stops "
                        "renewing its lease for %.0f s", other.get("url") or other.get("holder"),
                        other.get("home"), other.get("host"), self.ttl)
        self._task = loop.create_task(self._loop(lead, lose))

    async def _lead(self, lead: Callable[[], Awaitable[None]]) -> None:
        self.role, self._renewed = "leader", asyncio.get_running_loop().time()
        log.warning("liveml: leader: this control plane holds the controller lease "
                    "(%s, TTL %.0f s)", self.holder, self.ttl)
        await lead()

    async def _loop(self, lead: Callable[[], Awaitable[None]],
                    lose: Callable[[], Awaitable[None]]) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.ttl / 3)
            failed = False
            try:
                ok = await loop.run_in_executor(None, self.take)
            except Exception:  # noqa: BLE001 - a database hiccup: try again, within the TTL
                log.exception("liveml: could not renew the controller lease")
                ok, failed = False, True
            if ok and self.role == "standby":
                await self._lead(lead)
            elif ok:
                self._renewed = loop.time()
            elif self.role == "leader" and (not failed or
                                            loop.time() - self._renewed > self.ttl * 2 / 3):
                log.error("liveml: lost the controller lease (not renewed in time): this control "
                          "plane stopped its replicas and no longer reconciles; restart it")
                self.role = "lost"
                await lose()
                return

    async def stop(self) -> None:
        """Stop renewing and hand the lease back (a standby takes over at once)."""
        if self._task:
            self._task.cancel()
            self._task = None
        if self.shared and self.role == "leader":
            try:
                with self.store.engine.begin() as conn:
                    conn.execute(update(Lease).where(Lease.name == NAME,
                                                     Lease.holder == self.holder)
                                 .values(expires_at=now() - dt.timedelta(seconds=1)))
            except Exception:  # noqa: BLE001 - it lapses by itself
                log.exception("liveml: could not hand back the controller lease")
        self.role = "standby"
