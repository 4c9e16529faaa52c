"""Per-replica credentials: what the gateway presents to one replica, and what that replica
presents to download its own release's artifact.

A credential is ``lmr1:<subject>:<artifact sha256>:<HMAC(key, subject, sha)>`` where the subject
is a replica's node id (local backend) or a deployment RID (Kubernetes, one per deployment's
pods). The control plane checks one with its key alone, no database lookup; it opens the one
artifact it names and nothing else.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets

from .core.names import ARTIFACT_ID

_VERSION = "lmr1"


class ReplicaCredentials:
    """Issues and checks replica credentials with one control-plane key."""

    def __init__(self, key: str | bytes | None = None) -> None:
        self.set_key(key or secrets.token_bytes(32))

    def set_key(self, key: str | bytes) -> None:
        """Use ``key`` (e.g. read from a Kubernetes Secret, so pods outlive a restart)."""
        self._key = key.encode() if isinstance(key, str) else key

    def _mac(self, subject: str, sha256: str) -> str:
        msg = f"{_VERSION}\0{subject}\0{sha256}".encode()
        return hmac.new(self._key, msg, hashlib.sha256).hexdigest()

    def issue(self, subject: str, sha256: str) -> str:
        """The credential of ``subject`` (a node id or deployment RID) for artifact ``sha256``."""
        return f"{_VERSION}:{subject}:{sha256}:{self._mac(subject, sha256)}"

    def hop(self, subject: str) -> str:
        """What the gateway presents to every pod of deployment ``subject`` (Kubernetes: a
        Service may route to pods of two releases); it opens no artifact."""
        mac = hmac.new(self._key, f"lmg1\0{subject}".encode(), hashlib.sha256).hexdigest()
        return f"lmg1:{subject}:{mac}"

    def artifact(self, credential: str) -> str | None:
        """The artifact sha256 a valid credential may read; None for anything else."""
        try:
            version, rest = credential.split(":", 1)
            subject, sha256, mac = rest.rsplit(":", 2)
        except ValueError:
            return None
        if version != _VERSION or not ARTIFACT_ID.fullmatch(sha256):
            return None
        return sha256 if hmac.compare_digest(mac, self._mac(subject, sha256)) else None
