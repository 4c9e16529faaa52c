"""The standalone server's root (``GET /``): where everything is, for a person with a token."""
from __future__ import annotations

from pathlib import Path

from .. import __version__
from ..core.errors import Unauthorized
from ..core.names import inference_path
from ..core.registry import Principal
from .base import ManagementHandler

REPO = Path(__file__).resolve().parent.parent.parent
DOCS = ("README.md", "docs/architecture.md", "docs/developers.md",
        "docs/operators-kubernetes.md")


class IndexHandler(ManagementHandler):
    """``GET /``: a JSON index (the management API, the OpenAPI document, the inference path,
    the docs, the notebook panel). Like every endpoint it needs a Bearer token; without one it
    answers the 401 envelope, saying how to get one."""

    def authenticate(self) -> Principal:
        try:
            return super().authenticate()
        except Unauthorized as exc:
            raise Unauthorized(
                f"{exc.message}. Every liveml endpoint needs `Authorization: Bearer <token>`; "
                "`liveml token show` prints the admin token of this control plane (run it "
                "where the server runs, or with LIVEML_HOME set to its home), e.g. "
                "curl -H \"Authorization: Bearer $(liveml token show)\" " + self._root()) from exc

    def _root(self) -> str:
        req = self.request
        return f"{req.protocol}://{req.host}{req.path.rstrip('/')}/"

    def get(self) -> None:
        root = self._root()
        docs = {name: str(REPO / name) if (REPO / name).exists() else name for name in DOCS}
        self.reply({
            "service": "liveml",
            "version": __version__,
            "role": self.cp.role,  # leader, or standby for the controller lease (PostgreSQL)
            "managementApi": f"{root}liveml/api/",
            "openapi": f"{root}liveml/api/openapi.json",
            "whoami": f"{root}liveml/api/whoami",
            "inference": root + inference_path("{rid}"),
            "inferenceV2": root + inference_path("{rid}", v2=True),
            "docs": docs,
            "labPanel": "in Jupyter: `jupyter lab` hosts a control plane too; in a notebook run "
                        "`%load_ext liveml_ext` then `%liveml panel` (deployments, create form, "
                        "query, logs and metrics as widgets)",
            "cli": "liveml --help (liveml ls, liveml status DEPLOYMENT, liveml token show)",
        })
