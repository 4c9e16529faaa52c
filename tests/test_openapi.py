"""The committed OpenAPI document: generated, complete against the routes, and valid OpenAPI 3.1.

The document is compared with ``tools/gen_openapi.py``'s output and with the URL specs that
``liveml_ext.handlers.routes`` gives tornado; one test (with a real server) checks that each
constraint the document states is the one the server enforces.
"""
from __future__ import annotations

import importlib.util
import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from openapi_spec_validator import validate

from liveml_ext.core import models as m
from liveml_ext.handlers import ROUTES, FallbackHandler, routes

REPO = Path(__file__).resolve().parent.parent
DOC_PATH = REPO / "liveml_ext" / "openapi.json"
METHODS = ("get", "post", "put", "patch", "delete")
ERROR_REF = "#/components/schemas/ErrorEnvelope"


@pytest.fixture(scope="module")
def gen() -> Iterator[Any]:
    """``tools/gen_openapi.py`` as a module (tools/ is not a package)."""
    spec = importlib.util.spec_from_file_location("gen_openapi", REPO / "tools" / "gen_openapi.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file runs
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    return json.loads(DOC_PATH.read_text(encoding="utf-8"))


def handler_methods(mixin: type) -> set[str]:
    """The HTTP methods a handler mixin implements (tornado answers 405 to the others)."""
    return {m for m in METHODS if callable(getattr(mixin, m, None))}


def served_routes() -> list[tuple[re.Pattern[str], str, type]]:
    """(compiled URL spec as tornado matches it, ROUTES pattern, mixin), in tornado's order."""
    specs = routes(None, "/")  # type: ignore[arg-type]  # the control plane is only passed along
    assert len(specs) == len(ROUTES)
    return [(re.compile(spec[0]), pattern, mixin) for spec, (pattern, mixin) in zip(specs, ROUTES)]


def expand(pattern: str) -> list[str]:
    """A route regex -> the concrete path shapes it serves, a path parameter written ``{}``.

    Understands one-segment captures ``([^/]+)``, literal alternatives ``(a|b)`` and optional
    literal groups ``(/v2)?``; anything else fails, so a new kind of route updates this test.
    """
    match = re.search(r"\((?!\?)([^()]*)\)(\?)?", pattern)
    if match is None:
        assert re.fullmatch(r"[A-Za-z0-9/._{}-]*", pattern), f"cannot expand route {pattern!r}"
        return ["/" + pattern]
    body, optional = match.groups()
    choices = ["{}"] if body == "[^/]+" else body.split("|")
    for choice in choices:
        assert re.fullmatch(r"\{\}|[A-Za-z0-9/._-]+", choice), f"cannot expand group in {pattern!r}"
    if optional:
        choices.append("")
    rest = (pattern[:match.start()], pattern[match.end():])
    return [shape for choice in choices for shape in expand(rest[0] + choice + rest[1])]


def shape(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "{}", path)


def test_committed_document_is_what_the_generator_makes(gen: Any) -> None:
    text = DOC_PATH.read_text(encoding="utf-8")
    assert text == gen.render(gen.build()), (
        "liveml_ext/openapi.json is out of date: run `python tools/gen_openapi.py`")
    assert gen.main(["--check"]) == 0


def test_every_route_and_method_is_documented_and_nothing_else(doc: dict[str, Any]) -> None:
    served = served_routes()
    fallback = [p for _, p, mixin in served if mixin is FallbackHandler]
    assert len(fallback) == 1
    # each documented path is served, by the first matching route (as tornado picks), not the
    # fallback, and documents exactly the methods that route's handler implements
    documented_shapes: dict[str, set[str]] = {}
    for path, ops in doc["paths"].items():
        concrete = re.sub(r"\{[^}]+\}", "some-value", path)
        hit = next(((p, mixin) for rx, p, mixin in served if rx.match(concrete)), None)
        assert hit is not None, f"{path} is not served by any route"
        pattern, mixin = hit
        assert mixin is not FallbackHandler, f"{path} only reaches the catch-all route"
        assert shape(path) in expand(pattern), f"{path} does not have the shape of route {pattern}"
        methods = {m for m in ops if m in METHODS}
        assert methods == handler_methods(mixin), (
            f"{path}: documented {sorted(methods)}, {mixin.__name__} implements "
            f"{sorted(handler_methods(mixin))}")
        documented_shapes[shape(path)] = methods
    # each served path shape (every alternative of every route but the fallback) is documented
    for _, pattern, mixin in served:
        if mixin is FallbackHandler:
            continue
        for route_shape in expand(pattern):
            assert route_shape in documented_shapes, f"{route_shape} ({mixin.__name__}) is undocumented"
    # and a path parameter name tells what it is, never a regex
    for path in doc["paths"]:
        assert re.fullmatch(r"(/[a-z0-9._-]+|/\{[a-z]+\})+", path), f"odd path {path!r}"


def test_the_document_is_valid_openapi_31(doc: dict[str, Any]) -> None:
    assert doc["openapi"].startswith("3.1")
    validate(doc)


def test_operations_have_bearer_auth_and_error_envelopes(doc: dict[str, Any]) -> None:
    scheme = doc["components"]["securitySchemes"]["bearerAuth"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    assert doc["security"] == [{"bearerAuth": []}]
    ids = []
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            ids.append(op["operationId"])
            assert op.get("security", doc["security"]) == doc["security"], (method, path)
            statuses = set(op["responses"])
            assert len([s for s in statuses if s.startswith("2")]) == 1, (method, path)
            assert "401" in statuses, (method, path)
            for status, response in op["responses"].items():
                if int(status) >= 400:
                    schema = response["content"]["application/json"]["schema"]
                    assert schema == {"$ref": ERROR_REF}, (method, path, status)
    assert len(ids) == len(set(ids)), "operationIds must be unique"
    envelope = doc["components"]["schemas"]["ErrorEnvelope"]
    assert envelope["required"] == ["errorCode", "errorName", "errorInstanceId", "parameters"]


def test_creates_answer_201(doc: dict[str, Any]) -> None:
    api = "/liveml/api"
    for path in ("namespaces", "objectives", "objectives/{objective}/submissions",
                 "objectives/{objective}/releases", "deployments", "tokens"):
        assert "201" in doc["paths"][f"{api}/{path}"]["post"]["responses"], path
    assert "201" in doc["paths"][f"{api}/artifacts"]["put"]["responses"]
    inference = doc["paths"]["/foundry-ml-live/api/inference/transform/{rid}"]["post"]["responses"]
    assert {"200", "400", "401", "403", "404", "413", "415", "422", "502", "503", "504"} <= \
        set(inference)


def schema_of(doc: dict[str, Any], model: str, *path: str) -> dict[str, Any]:
    """A property's schema in the document (its non-null alternative when it is optional)."""
    node = doc["components"]["schemas"][model]
    for key in path:
        node = node["properties"][key]
        node = next((alt for alt in node.get("anyOf", []) if alt.get("type") != "null"), node)
        node = doc["components"]["schemas"][node["$ref"].rsplit("/", 1)[1]] \
            if "$ref" in node else node
    return node


RID = "ri.foundry-ml-live.main.live-deployment.00000000-0000-0000-0000-000000000000"
DEPLOY = {"objective": "constrained", "name": "Constrained"}
#: (documented: model, property path, keyword, value), (request: method, path, body), field named
CONSTRAINTS = [
    (("RuntimeOverrides", ("env",), "propertyNames", {"pattern": m.ENV_KEY.pattern,
                                                      "maxLength": 256}),
     ("post", "deployments", {**DEPLOY, "runtimeConfiguration": {"env": {"1-BAD": "x"}}}),
     "runtimeConfiguration.env.1-BAD.[key]"),
    (("RuntimeConfiguration", ("env",), "propertyNames", {"pattern": m.ENV_KEY.pattern,
                                                          "maxLength": 256}),
     ("put", f"deployments/{RID}/runtime-configuration", {"env": {"a b": "x"}}), "env.a b.[key]"),
    (("CreateLiveDeployment", ("replicaProfile",), "pattern", m.PROFILE.pattern),
     ("post", "deployments", {**DEPLOY, "replicaProfile": "Not a profile!"}), "replicaProfile"),
    (("UpdateLiveDeployment", ("resourceProfile",), "pattern", m.PROFILE.pattern),
     ("patch", f"deployments/{RID}", {"resourceProfile": "../large"}), "resourceProfile"),
    (("DescribeResourceProfile", ("name",), "pattern", m.PROFILE.pattern), None, ""),
    (("CreateSubmission", ("artifactId",), "pattern", m.ARTIFACT_ID.pattern),
     ("post", "objectives/constrained/submissions", {"artifactId": "../../connection.json"}),
     "artifactId"),
    (("CreateObjective", ("name",), "pattern", m.NAME.pattern),
     ("post", "objectives", {"name": "-starts-with-a-dash"}), "name"),
    (("CreateObjective", ("namespace",), "pattern", m.API_NAME.pattern),
     ("post", "objectives", {"name": "ok", "namespace": "Team A"}), "namespace"),
    (("CreateLiveDeployment", ("apiName",), "pattern", m.API_NAME.pattern),
     ("post", "deployments", {**DEPLOY, "apiName": "UPPER"}), "apiName"),
    (("UpdateLiveDeployment", (), "minProperties", 1), ("patch", f"deployments/{RID}", {}), ""),
    (("CreateRelease", ("version",), "minLength", 1),
     ("post", "objectives/constrained/releases", {"submission": "s", "version": ""}), "version"),
    (("RuntimeOverrides", ("minReplicas",), "minimum", 0),
     ("post", "deployments", {**DEPLOY, "runtimeConfiguration": {"minReplicas": -1}}),
     "runtimeConfiguration.minReplicas"),
    (("RuntimeOverrides", ("queueSize",), "maximum", 100_000),
     ("post", "deployments", {**DEPLOY, "runtimeConfiguration": {"queueSize": 100_001}}),
     "runtimeConfiguration.queueSize"),
]


def test_the_document_states_the_constraints_the_server_enforces(doc, server):
    """Each constraint is in the document, and a request breaking it is a 400 naming the field."""
    server.client.create_objective("constrained")
    for (model, path, keyword, value), call, field in CONSTRAINTS:
        assert schema_of(doc, model, *path).get(keyword) == value, (model, path, keyword)
        if call is None:
            continue
        method, url, body = call
        resp = requests.request(method, f"{server.url}liveml/api/{url}", json=body,
                                headers=server.headers(), timeout=30)
        assert resp.status_code == 400, (call, resp.text)
        answer = resp.json()
        assert answer["errorName"] == "InvalidArgument", (call, resp.text)
        assert answer["parameters"]["field"] == field, (call, resp.text)
        assert answer["parameters"]["message"].startswith(f"{field}: " if field else ""), resp.text
