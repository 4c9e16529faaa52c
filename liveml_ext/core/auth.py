"""Bearer tokens: stored as SHA-256 digests, scoped to a namespace and to query, read or manage.

Verified tokens are cached (no store hit on the query path); the cache never outlives a
revocation (``revoke`` drops its entries) and an expiry is checked on every use.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
import uuid
from typing import Any

from sqlalchemy import select

from ..store.db import Token, now
from . import models as m
from .errors import CannotRevokeAdminToken, TokenNotFound, Unauthorized
from .registry import Principal

PREFIX = "lml_"
ADMIN_DESCRIPTION = "admin (connection file)"


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Tokens:
    """Issues, lists, revokes and checks tokens."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self._cache: dict[str, Principal] = {}
        self._admin_id = ""

    def create(self, req: m.CreateToken, who: Principal, token: str | None = None) -> dict[str, Any]:
        if req.namespace is not None:
            who.require(req.namespace, "manage")
        elif who.scope != "admin" or who.namespace is not None:
            who.require("*", "admin")
        token = token or PREFIX + secrets.token_urlsafe(32)
        scope = "admin" if req.namespace is None and req.scope == "manage" else req.scope
        expires = (now() + dt.timedelta(seconds=req.expires_in_seconds)
                   if req.expires_in_seconds else None)
        row = Token(id=str(uuid.uuid4()), token_hash=digest(token), namespace=req.namespace,
                    scope=scope, description=req.description, expires_at=expires)
        with self.store.session() as s:
            s.add(row)
        return {**self.describe(row), "token": token}

    @staticmethod
    def describe(row: Token) -> dict[str, Any]:
        return m.DescribeToken(id=row.id, namespace=row.namespace, scope=row.scope,
                               description=row.description, created_at=row.created_at,
                               expires_at=row.expires_at, revoked_at=row.revoked_at).dump()

    @staticmethod
    def _may_manage(who: Principal, row: Token) -> bool:
        """Admins manage every token; a manage token those of its own namespace."""
        if who.namespace is None and who.scope == "admin":
            return True
        return row.namespace is not None and who.can_see(row.namespace) and who.has("manage")

    def list(self, who: Principal) -> list[dict[str, Any]]:
        """Tokens that are neither revoked nor expired, that ``who`` may manage."""
        who.require_scope("manage")
        with self.store.session() as s:
            rows = s.scalars(select(Token).where(Token.revoked_at.is_(None))
                             .order_by(Token.created_at))
            return [self.describe(r) for r in rows
                    if self._may_manage(who, r) and not self._expired(r.expires_at)]

    def revoke(self, token_id: str, who: Principal) -> dict[str, Any]:
        """Revoke a token: it gets 401 at once (also on the inference path)."""
        who.require_scope("manage")
        with self.store.session() as s:
            row = s.get(Token, token_id)
            if row is None or row.revoked_at is not None or not self._may_manage(who, row):
                raise TokenNotFound(f"no token {token_id!r}; `liveml token list` shows them",
                                    tokenId=token_id)
            if row.id == self._admin_id:
                raise CannotRevokeAdminToken(
                    "this is the control plane's own admin token (its connection file); it "
                    "cannot be revoked while the server uses it", tokenId=token_id)
            row.revoked_at = now()
            doc = self.describe(row)
        for key in [k for k, p in self._cache.items() if p.token_id == token_id]:
            del self._cache[key]
        return doc

    @staticmethod
    def _expired(expires_at: dt.datetime | None) -> bool:
        return expires_at is not None and now() >= expires_at

    def verify(self, token: str | None) -> Principal:
        if not token:
            raise Unauthorized("an Authorization: Bearer <token> header is required; "
                               "`liveml token create` makes one")
        principal = self._cache.get(token)
        if principal is None:
            key = digest(token)
            with self.store.session() as s:
                row = s.scalar(select(Token).where(Token.token_hash == key))
            if row is None or not hmac.compare_digest(row.token_hash, key) \
                    or row.revoked_at is not None:
                raise Unauthorized("the token is not valid (unknown or revoked); check "
                                   "LIVEML_TOKEN or create one with `liveml token create`")
            principal = Principal(name=f"token:{row.id[:8]}", scope=row.scope,
                                  namespace=row.namespace, token_id=row.id,
                                  expires_at=row.expires_at)
            self._cache[token] = principal
        if self._expired(principal.expires_at):
            self._cache.pop(token, None)
            raise Unauthorized(f"the token expired at {principal.expires_at:%Y-%m-%d %H:%M:%S} "
                               "UTC; create a new one with `liveml token create`")
        return principal

    def ensure_admin(self, token: str) -> None:
        """Register the admin token of the connection file (idempotent)."""
        with self.store.session() as s:
            row = s.scalar(select(Token).where(Token.token_hash == digest(token)))
            if row is not None:
                self._admin_id = row.id
                return
        doc = self.create(m.CreateToken(scope="manage", description=ADMIN_DESCRIPTION),
                          Principal("liveml", "admin"), token=token)
        self._admin_id = doc["id"]

