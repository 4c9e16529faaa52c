"""Thin tornado handlers over the control plane, mounted by the server and the extension."""
from __future__ import annotations

from typing import Any

import tornado.web

from ..controlplane import ControlPlane
from ..core.names import INFERENCE_PATH
from . import management as mg
from .base import FallbackHandler
from .inference import InferenceFront, InferenceHandler

API = r"liveml/api"
ROUTES: list[tuple[str, type]] = [
    # the query path first: tornado tries the rules in order
    (rf"{INFERENCE_PATH}([^/]+)(/v2)?", InferenceHandler),
    (rf"{API}/namespaces", mg.NamespacesHandler),
    (rf"{API}/objectives", mg.ObjectivesHandler),
    (rf"{API}/objectives/([^/]+)", mg.ObjectiveHandler),
    (rf"{API}/objectives/([^/]+)/submissions", mg.SubmissionsHandler),
    (rf"{API}/objectives/([^/]+)/releases", mg.ReleasesHandler),
    (rf"{API}/objectives/([^/]+)/releases/([^/]+)/tag", mg.ReleaseTagHandler),
    (rf"{API}/objectives/([^/]+)/releases/([^/]+)/promote", mg.PromoteHandler),
    (rf"{API}/objectives/([^/]+)/tag-history", mg.TagHistoryHandler),
    (rf"{API}/artifacts", mg.ArtifactsHandler),
    (rf"{API}/artifacts/([^/]+)", mg.ArtifactHandler),
    (rf"{API}/deployments", mg.DeploymentsHandler),
    (rf"{API}/deployments/([^/]+)", mg.DeploymentHandler),
    (rf"{API}/deployments/([^/]+)/(disable|enable)", mg.DeploymentActionHandler),
    (rf"{API}/deployments/([^/]+)/api-name", mg.ApiNameHandler),
    (rf"{API}/deployments/([^/]+)/runtime-configuration", mg.RuntimeConfigurationHandler),
    (rf"{API}/deployments/([^/]+)/events", mg.EventsHandler),
    (rf"{API}/deployments/([^/]+)/logs", mg.LogsHandler),
    (rf"{API}/deployments/([^/]+)/logs/download", mg.LogsDownloadHandler),
    (rf"{API}/deployments/([^/]+)/history", mg.HistoryHandler),
    (rf"{API}/deployments/([^/]+)/history/download", mg.HistoryDownloadHandler),
    (rf"{API}/deployments/([^/]+)/shadow", mg.ShadowHandler),
    (rf"{API}/deployments/([^/]+)/compare", mg.CompareHandler),
    (rf"{API}/deployments/([^/]+)/replay", mg.ReplayHandler),
    (rf"{API}/deployments/([^/]+)/metrics", mg.MetricsHandler),
    (rf"{API}/metrics", mg.PrometheusHandler),
    (rf"{API}/profiles", mg.ProfilesHandler),
    (rf"{API}/tokens", mg.TokensHandler),
    (rf"{API}/tokens/([^/]+)", mg.TokenHandler),
    (rf"{API}/openapi.json", mg.OpenApiHandler),
    (rf"{API}/whoami", mg.WhoAmIHandler),
    (rf"(?:{API}|foundry-ml-live)/.*", FallbackHandler),
]


def routes(cp: ControlPlane, base_url: str = "/",
           base: type = tornado.web.RequestHandler) -> list[tuple[str, Any, dict[str, Any]]]:
    """The URL specs for a tornado Application, each handler mixed with ``base``; with plain
    tornado (the standalone server) the inference route's target is ``InferenceFront``, which
    answers without a RequestHandler."""
    prefix = "/" + base_url.strip("/") + "/" if base_url.strip("/") else "/"
    specs: list[tuple[str, Any, dict[str, Any]]] = []
    for pattern, mixin in ROUTES:
        if mixin is InferenceHandler and base is tornado.web.RequestHandler:
            specs.append((prefix + pattern + "/?$", InferenceFront(cp), {}))
            continue
        cls = type(mixin.__name__, (mixin, base), {"__module__": mixin.__module__})
        specs.append((prefix + pattern + "/?$", cls, {"cp": cp}))
    return specs
