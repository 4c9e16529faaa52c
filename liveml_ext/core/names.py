"""The names and RIDs of the REST resources, defined once (standard library only: the client,
the CLI and the widgets import it without the core's dependencies)."""
from __future__ import annotations

import re
import uuid

#: an API name (and a namespace, a profile name): a DNS-style label
API_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
#: an objective's or deployment's display name
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,127}$")
#: an uploaded artifact's id: the SHA-256 of its bytes, in lowercase hex
ARTIFACT_ID = re.compile(r"^[0-9a-f]{64}$")


def rid_prefix(kind: str) -> str:
    """``ri.<service>.main.<kind>.``; live deployments use the platform's service name."""
    service = "foundry-ml-live" if kind == "live-deployment" else "models"
    return f"ri.{service}.main.{kind}."


def new_rid(kind: str) -> str:
    """A new RID of ``kind``: its ``rid_prefix`` and a UUID."""
    return f"{rid_prefix(kind)}{uuid.uuid4()}"


#: a live deployment's RID starts with this
RID_PREFIX = rid_prefix("live-deployment")
#: the inference endpoint, relative to the server's base URL; a deployment's RID follows
INFERENCE_PATH = "foundry-ml-live/api/inference/transform/"


def inference_path(rid: str, v2: bool = False) -> str:
    """A deployment's inference endpoint (v1 or v2), relative to the server's base URL."""
    return f"{INFERENCE_PATH}{rid}" + ("/v2" if v2 else "")
