"""Every route of the server's tornado route table (its rules, not a hand-kept list), every method
its handler answers, called with no token, a bad token and another namespace's query token: 401,
403 or 404 in the envelope, never 2xx. Only ``whoami`` and ``profiles`` answer a query token."""
from __future__ import annotations

import itertools
import re

import pytest
import requests
import tornado.web
from conftest import deploy_reference, start_server

from liveml_ext.server import make_app

#: Open to any valid token, whatever its scope or namespace (issue 13 point 9).
OPEN_TO_ANY_TOKEN = {"/liveml/api/whoami", "/liveml/api/profiles"}
ENVELOPE = {"errorCode", "errorName", "errorInstanceId", "parameters"}
METHODS = ("get", "post", "put", "patch", "delete")


def alternatives(group: str) -> list[str]:
    """The texts a route's regex group stands for (``x`` for a path segment)."""
    if group.endswith(")?"):  # (/v2)?
        return ["", *alternatives(group[:-1])]
    inner = group[1:-1].removeprefix("?:")
    if inner == "[^/]+":
        return ["{}"]
    return inner.split("|")


def expand(pattern: str) -> list[str]:
    """Concrete paths for a route regex such as ``/liveml/api/deployments/([^/]+)/(a|b)/?$``;
    ``{}`` marks a path parameter."""
    pattern = pattern.removeprefix("^").removesuffix("$").removesuffix("/?")
    parts = re.split(r"(\((?:[^()]|\([^()]*\))*\)\??)", pattern)
    choices = [alternatives(p) if p.startswith("(") else [p.replace(".*", "nowhere")]
               for p in parts]
    return ["".join(combo) or "/" for combo in itertools.product(*choices)]


def routes() -> list[tuple[str, str]]:
    """(method, path) for each rule of the standalone server's application and each method its
    handler defines."""
    app = make_app(None)  # type: ignore[arg-type]  # the rules only; no control plane needed
    out = []
    for rule in app.wildcard_router.rules:
        target = rule.target
        if isinstance(target, type):  # a RequestHandler
            defined = [m.upper() for m in METHODS
                       if getattr(target, m) is not getattr(tornado.web.RequestHandler, m)]
        else:  # another routing target (the inference route's InferenceFront) names its own
            defined = target.allowed_methods()
        for path in expand(rule.matcher.regex.pattern):
            out.extend((method, path) for method in defined)
    return out


ROUTES = routes()


@pytest.fixture(scope="module")
def world(tmp_path_factory, house_model):
    """A server with a deployment, and values for each kind of path parameter."""
    srv = start_server(tmp_path_factory.mktemp("walk"))
    rid = deploy_reference(srv, house_model, "walk-houses", "Walk houses", replicas=1)["rid"]
    c = srv.client
    sha = c.submissions("walk-houses")[0]["artifactSha256"]
    other = c.create_token(namespace="intruders", scope="query")["token"]
    token_id = c.create_token(namespace="default", scope="query")["id"]
    values = {"objectives": "walk-houses", "releases": "1.0", "deployments": rid,
              "artifacts": sha, "tokens": token_id, "transform": rid}
    yield srv, values, other
    srv.stop()


def concrete(path: str, values: dict[str, str]) -> str:
    """Each ``{}`` replaced by a real value, chosen by the segment before it."""
    segments = path.split("/")
    return "/".join(values.get(segments[i - 1], "x") if seg == "{}" else seg
                    for i, seg in enumerate(segments))


def call(srv, method: str, path: str, token: str | None) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    kw = {}
    if method in ("POST", "PUT", "PATCH"):
        kw = {"data": b"{}", "headers": {**headers, "Content-Type": "application/json"}}
    return requests.request(method, srv.url.rstrip("/") + path, timeout=60,
                            **{"headers": headers, **kw})


def test_the_walk_covers_the_routes():
    methods = {m for m, _ in ROUTES}
    assert {"GET", "POST", "PUT", "PATCH", "DELETE"} <= methods
    paths = {p for _, p in ROUTES}
    assert "/liveml/api/deployments/{}/disable" in paths and "/liveml/api/tokens/{}" in paths
    assert "/foundry-ml-live/api/inference/transform/{}/v2" in paths and "/" in paths
    assert len(ROUTES) > 40


@pytest.mark.parametrize("who", ["none", "bad-liveml", "bad-other", "other-namespace-query"])
def test_every_route_refuses_who_may_not_call_it(world, who):
    srv, values, other = world
    token = {"none": None, "bad-liveml": "lml_not-a-real-token", "bad-other": "garbage",
             "other-namespace-query": other}[who]
    wrong = []
    for method, path in ROUTES:
        url_path = concrete(path, values)
        resp = call(srv, method, url_path, token)
        try:
            doc = resp.json()
        except ValueError:
            doc = None
        if who == "other-namespace-query" and path in OPEN_TO_ANY_TOKEN:
            ok = resp.status_code == 200
        else:
            expected = {401} if token != other else {403, 404}
            ok = resp.status_code in expected and isinstance(doc, dict) and set(doc) == ENVELOPE
        if not ok:
            wrong.append(f"{method} {url_path}: {resp.status_code} {resp.text[:200]}")
    assert not wrong, "\n".join(wrong)


def test_unsupported_methods_are_405_with_allow_on_every_route(world):
    """TRACE (and any method a route's handler does not define) is 405 with an ``Allow`` header
    naming the ones it does, in the envelope."""
    srv, values, _ = world
    defined: dict[str, set[str]] = {}
    for method, path in ROUTES:
        defined.setdefault(path, set()).add(method)
    wrong = []
    for path, methods in defined.items():
        url = srv.url.rstrip("/") + concrete(path, values)
        for method in ["TRACE", *sorted({"GET", "POST", "PUT", "PATCH", "DELETE"} - methods)]:
            resp = requests.request(method, url, headers=srv.headers(), timeout=60)
            allow = {m.strip() for m in resp.headers.get("Allow", "").split(",") if m.strip()}
            if resp.status_code != 405 or allow != methods or set(resp.json()) != ENVELOPE:
                wrong.append(f"{method} {path}: {resp.status_code} Allow={allow} {resp.text[:100]}")
    assert not wrong, "\n".join(wrong)
