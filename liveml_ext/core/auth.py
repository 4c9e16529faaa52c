"""Bearer tokens: stored as SHA-256 digests, scoped to a namespace and to query or manage."""
from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from typing import Any

from sqlalchemy import select

from ..store.db import Token
from . import models as m
from .errors import Unauthorized
from .registry import Principal

PREFIX = "lml_"


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Tokens:
    """Issues and checks tokens; verified tokens are cached, so queries do not hit the store."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self._cache: dict[str, Principal] = {}

    def create(self, req: m.CreateToken, who: Principal, token: str | None = None) -> dict[str, Any]:
        if req.namespace is not None:
            who.require(req.namespace, "manage")
        elif who.scope != "admin":
            who.require("*", "admin")
        token = token or PREFIX + secrets.token_urlsafe(32)
        scope = "admin" if req.namespace is None and req.scope == "manage" else req.scope
        row = Token(id=str(uuid.uuid4()), token_hash=digest(token), namespace=req.namespace,
                    scope=scope, description=req.description)
        with self.store.session() as s:
            s.add(row)
        return m.DescribeToken(id=row.id, namespace=row.namespace, scope=row.scope,
                               description=row.description, created_at=row.created_at,
                               token=token).dump()

    def verify(self, token: str | None) -> Principal:
        if not token:
            raise Unauthorized("an Authorization: Bearer <token> header is required; "
                               "`liveml token create` makes one")
        principal = self._cache.get(token)
        if principal is None:
            key = digest(token)
            with self.store.session() as s:
                row = s.scalar(select(Token).where(Token.token_hash == key))
            if row is None or not hmac.compare_digest(row.token_hash, key):
                raise Unauthorized("the token is not valid; check LIVEML_TOKEN or create one "
                                   "with `liveml token create`")
            principal = Principal(name=f"token:{row.id[:8]}", scope=row.scope,
                                  namespace=row.namespace)
            self._cache[token] = principal
        return principal

    def ensure_admin(self, token: str) -> None:
        """Register the admin token of the connection file (idempotent)."""
        with self.store.session() as s:
            if s.scalar(select(Token).where(Token.token_hash == digest(token))):
                return
        self.create(m.CreateToken(scope="manage", description="admin (connection file)"),
                    Principal("liveml", "admin"), token=token)
