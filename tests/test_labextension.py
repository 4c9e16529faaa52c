"""The JupyterLab extension (labextension/): the wheel ships it prebuilt, the venv's Lab finds it
enabled, and its TypeScript types follow liveml_ext/openapi.json.

The wheel is built once for the module without build isolation (hatchling and
hatch-jupyter-builder come with the ``test`` extra); its npm build is skipped while
labextension/dist is newer than labextension/src, so the module takes a few seconds.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from conftest import REPO

NAME = "liveml-labextension"
SHARE = f"share/jupyter/labextensions/{NAME}"
BIN = Path(sys.executable).parent
API_TS = REPO / "labextension" / "src" / "api.ts"
OPENAPI = json.loads((REPO / "liveml_ext" / "openapi.json").read_text())
ANSI = re.compile(r"\x1b\[[0-9;]*m")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    """The wheel ``pip wheel`` builds from the working tree (the extension prebuilt inside)."""
    out = tmp_path_factory.mktemp("wheel")
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}  # the venv's `jupyter`
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    str(REPO), "-w", str(out)], check=True, timeout=600, env=env)
    (path,) = out.glob("liveml-*.whl")
    with zipfile.ZipFile(path) as archive:
        yield archive


def shipped(archive: zipfile.ZipFile) -> dict[str, str]:
    """The wheel's files under share/jupyter/labextensions/<name>/, by their path below it."""
    found = {}
    for entry in archive.namelist():
        _, sep, rest = entry.partition(f".data/data/{SHARE}/")
        if sep:
            found[rest] = entry
    return found


def test_the_wheel_ships_the_built_extension_with_its_install_json(wheel: zipfile.ZipFile):
    files = shipped(wheel)
    assert {"package.json", "install.json", "static/style.js"} <= files.keys(), sorted(files)
    package = json.loads(wheel.read(files["package.json"]))
    assert package["name"] == NAME
    load = package["jupyterlab"]["_build"]["load"]  # written by `jupyter labextension build`
    assert load.removeprefix("static/") in {Path(f).name for f in files if f.startswith("static/")}
    install = json.loads(wheel.read(files["install.json"]))
    assert install == {**install, "packageManager": "python", "packageName": "liveml"}
    assert not any("node_modules" in f for f in wheel.namelist())


def test_jupyter_labextension_list_shows_it_enabled_and_ok():
    listing = subprocess.run([str(BIN / "jupyter"), "labextension", "list"], capture_output=True,
                             text=True, timeout=120, check=True)
    text = ANSI.sub("", listing.stdout + listing.stderr)
    line = next((ln for ln in text.splitlines() if NAME in ln), None)
    assert line is not None, text
    assert re.search(rf"{NAME} v\S+ enabled\s+OK\b", line), line  # linked by `develop`: no "(python, liveml)"
    assert str(Path(sys.prefix) / "share" / "jupyter" / "labextensions") in text


# --- the TypeScript types against the OpenAPI document -------------------------------------------

DECLARATION = re.compile(
    r"/\*\* openapi: (?P<ref>[^*]+?) \*/\nexport (?:interface (?P<iface>\w+) \{\n(?P<body>.*?)\n\}"
    r"|type (?P<alias>\w+) =\s*(?P<union>[^;]+);)", re.S)
FIELD = re.compile(r"^  (?P<name>\w+)(?P<optional>\?)?: (?P<type>.+);$")


def declarations() -> tuple[dict[str, tuple[str, dict]], dict[str, tuple[str, set[str]]]]:
    """api.ts: interfaces (openapi ref, fields) and string-literal unions (openapi ref, values)."""
    interfaces, unions = {}, {}
    for m in DECLARATION.finditer(API_TS.read_text()):
        if m["iface"]:
            fields = {}
            for line in m["body"].splitlines():
                f = FIELD.match(line)
                assert f, f"{m['iface']}: cannot read {line!r}"
                fields[f["name"]] = (f["type"], not f["optional"])
            interfaces[m["iface"]] = (m["ref"], fields)
        else:
            unions[m["alias"]] = (m["ref"], set(re.findall(r"'([^']*)'", m["union"])))
    return interfaces, unions


def schema_of(ref: str) -> dict:
    """``Name`` (a component schema), ``Name.field`` or ``operationId`` (its 200 answer)."""
    schemas = OPENAPI["components"]["schemas"]
    name, _, prop = ref.partition(".")
    if name in schemas:
        return schemas[name]["properties"][prop] if prop else schemas[name]
    for item in OPENAPI["paths"].values():
        for op in item.values():
            if isinstance(op, dict) and op.get("operationId") == ref:
                return op["responses"]["200"]["content"]["application/json"]["schema"]
    raise AssertionError(f"api.ts names {ref!r}, which openapi.json does not have")


def ts_type(schema: dict, names: dict[str, str], unions: dict[str, set[str]]) -> str:
    """The TypeScript type api.ts must write for a JSON schema (``names``: schema -> interface)."""
    if "$ref" in schema:
        return names[schema["$ref"].rsplit("/", 1)[1]]
    if "anyOf" in schema:
        return " | ".join(ts_type(s, names, unions) for s in schema["anyOf"])
    kind = schema.get("type")
    if "enum" in schema:
        (alias,) = [a for a, values in unions.items() if values == set(schema["enum"])] or [None]
        assert alias, f"no type in api.ts has the values {schema['enum']}"
        return alias
    if kind == "array":
        return ts_type(schema["items"], names, unions) + "[]"
    if kind == "object" and isinstance(schema.get("additionalProperties"), dict):
        return f"Record<string, {ts_type(schema['additionalProperties'], names, unions)}>"
    if kind == "object" and "properties" not in schema:  # free-form: a row, a model's api()
        return "Record<string, unknown>"
    return {"string": "string", "integer": "number", "number": "number", "boolean": "boolean",
            "null": "null"}[kind]


def test_api_ts_follows_the_openapi_schemas():
    interfaces, unions = declarations()
    assert {"LiveDeployment", "DeploymentStatus", "ReleaseRef", "ErrorEnvelope", "Release",
            "Submission", "Objective", "Profiles", "LogPage", "MetricSample", "CreateLiveDeployment",
            "UpdateLiveDeployment", "RuntimeOverrides", "TransformResponse"} <= interfaces.keys()
    names = {ref: iface for iface, (ref, _) in interfaces.items()}
    values = {alias: vals for alias, (_, vals) in unions.items()}
    for alias, (ref, vals) in unions.items():
        assert vals == set(schema_of(ref)["enum"]), alias
    for iface, (ref, fields) in interfaces.items():
        schema = schema_of(ref)
        props, required = schema["properties"], set(schema.get("required", []))
        assert fields.keys() == props.keys(), f"{iface} vs {ref}"
        for name, (written, is_required) in fields.items():
            assert is_required == (name in required), f"{iface}.{name}: required is {name in required}"
            if ref == "ErrorEnvelope" and name == "parameters":
                assert "message: string" in written  # the one field the client reads
                continue
            want = ts_type(props[name], names, values)
            assert written == want, f"{iface}.{name}: api.ts says {written}, openapi.json {want}"


# --- the service classes against a real control plane (Node's test runner) --------------------

LABEXT = REPO / "labextension"


def test_the_service_classes_work_against_a_real_control_plane(server, house_model):
    """labextension/test/services.test.mjs: the compiled service.ts and handler.ts, in Node, on
    `liveml server` (its own token, real replicas): every resource, and the error envelopes."""
    client = server.client
    client.create_objective("node-houses")
    client.submit("node-houses", house_model, name="v1")
    client.release("node-houses", "v1", "1.0", tag="staging")
    client.promote("node-houses", "1.0")
    tsc = LABEXT / "node_modules" / ".bin" / "tsc"
    subprocess.run([str(tsc), "-p", str(LABEXT)], check=True, timeout=300)  # lib/ from src/
    env = {**os.environ, "LIVEML_URL": server.url, "LIVEML_TOKEN": server.token,
           "LIVEML_OBJECTIVE": "node-houses"}
    run = subprocess.run(["node", "--disable-warning=MODULE_TYPELESS_PACKAGE_JSON",
                          "--import", "./test/resolve.mjs", "--test", "--test-reporter=spec",
                          "test/services.test.mjs"], cwd=LABEXT, env=env,
                         capture_output=True, text=True, timeout=600)
    report = ANSI.sub("", run.stdout + run.stderr)
    assert run.returncode == 0, report
    assert re.search(r"\bpass 6\b", report) and re.search(r"\bfail 0\b", report), report
