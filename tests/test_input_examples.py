"""Input examples and declared schemas: inference, per-query checks, dtype-faithful frames, and
submitting with an example from the CLI, the client and the notebook, through a real server and
real replicas."""
from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from decimal import Decimal

import numpy as np
import pandas as pd
import pytest
import requests
from conftest import reference_module
from model_fixtures import DtypeEcho, PlainPricer, save

from liveml_ext.client import LiveMLClientError
from liveml_runtime.adapter import ModelAdapter, ModelRunner, wrap
from liveml_runtime.api import Column, ModelApi, Tabular, check_rows, type_name
from liveml_runtime.errors import InvalidArgument, LiveMLError
from liveml_runtime.frames import to_frame
from liveml_runtime.schema import InputExample, infer_columns, read_input_example

HOUSES = [{"house-location": "Austin", "bedrooms": 3, "bathrooms": 1.5},
          {"house-location": "Boston", "bedrooms": 2, "bathrooms": 1.0}]
#: one column of every type; "n" (integer) and "t" (datetime) are nullable
TYPED = [
    {"i": 1, "n": 7, "x": 1.5, "b": True, "s": "a", "t": "2024-01-31T12:00:00Z",
     "d": "2024-01-31", "m": "12.50", "a": [1, 2]},
    {"i": 2, "n": None, "x": 2.0, "b": False, "s": "b", "t": None,
     "d": "2024-02-01", "m": "0.25", "a": []},
]


def cols(columns: list[Column]) -> list[tuple]:
    return [(c.name, c.spec, c.required) for c in columns]


# --- inference ---------------------------------------------------------------------------------
def test_schema_inferred_from_a_frame_follows_its_dtypes():
    frame = pd.DataFrame({
        "i": [1, 2, 3],
        "n": pd.array([1, None, 3], dtype="Int64"),
        "x": [1.0, np.nan, 2.5],
        "b": [True, False, True],
        "nb": pd.array([True, None, False], dtype="boolean"),
        "s": ["a", "b", None],
        "t": pd.to_datetime(["2024-01-01T00:00:00+02:00"] * 3, utc=True),
        "naive": pd.to_datetime(["2024-01-01", None, "2024-01-03"]),
        "d": [dt.date(2024, 1, 1), dt.date(2024, 1, 2), None],
        "m": [Decimal("1.5"), Decimal("10.25"), Decimal("-3")],
        "a": [[1, 2], [], [3]],
        "sa": [["x"], None, ["y", "z"]],
        "cat": pd.Categorical(["u", "v", "u"]),
        "mixed": [1, "one", None],
        "iso": ["2024-01-01"] * 3,  # a frame's strings stay strings
    })
    assert cols(infer_columns(frame)) == [
        ("i", "integer", True), ("n", "integer", False), ("x", "double", False),
        ("b", "boolean", True), ("nb", "boolean", False), ("s", "string", False),
        ("t", "datetime", True), ("naive", "datetime", False), ("d", "date", False),
        ("m", "decimal(38,2)", True), ("a", "array<integer>", True),
        ("sa", "array<string>", False), ("cat", "string", True), ("mixed", "any", False),
        ("iso", "string", True)]


def test_schema_inferred_from_json_rows_reads_iso_strings_as_dates_and_timestamps():
    rows = [
        {"i": 1, "x": 1, "s": "a", "d": "2024-01-31", "t": "2024-01-31T12:00:00Z",
         "a": [1.5, 2], "nested": [[1]], "b": True, "m": 1},
        {"i": 2, "x": 2.5, "s": "2024-01-31", "d": "2024-02-01", "t": "2024-02-01 08:30",
         "a": [], "nested": [], "b": None},
    ]
    assert cols(infer_columns(rows)) == [
        ("i", "integer", True), ("x", "double", True), ("s", "string", True),
        ("d", "date", True), ("t", "datetime", True), ("a", "array<double>", True),
        ("nested", "array<any>", True), ("b", "boolean", False),
        ("m", "integer", False)]  # absent from a row: nullable
    assert cols(infer_columns({"requestData": rows[:1]}))[0] == ("i", "integer", True)
    with pytest.raises(InvalidArgument, match="non-empty list of objects"):
        infer_columns([])


def test_type_vocabulary_and_aliases():
    assert [type_name(a) for a in ("int", "long", "float", "number", "bool", "str", "timestamp")] \
        == ["integer", "integer", "double", "double", "boolean", "string", "datetime"]
    assert [type_name(t) for t in (int, float, bool, str, dt.datetime, dt.date, Decimal, list)] \
        == ["integer", "double", "boolean", "string", "datetime", "date", "decimal", "array"]
    assert Column("m", "decimal").spec == "decimal(38,18)"
    assert Column("a", "array").spec == "array<any>"
    assert Column("a", "array", items="long").spec == "array<integer>"
    assert Column("x", "double", precision=3).precision is None  # details only where they apply
    with pytest.raises(ValueError, match="scale"):
        Column("m", "decimal", precision=4, scale=6)
    with pytest.raises(ValueError, match="unknown type"):
        Column("x", "money")


# --- checks and frames (in process) ------------------------------------------------------------
TYPED_COLUMNS = [Column("i", "integer"), Column("n", "integer", required=False),
                 Column("x", "double"), Column("b", "boolean"), Column("s", "string"),
                 Column("t", "datetime", required=False), Column("d", "date"),
                 Column("m", "decimal", precision=10, scale=2),
                 Column("a", "array", items="integer")]


def test_json_rows_infer_all_but_decimals_which_json_cannot_tell_from_strings():
    inferred = cols(infer_columns(TYPED))
    assert inferred == [("m", "string", True) if name == "m" else (name, spec, required)
                        for name, spec, required in cols(TYPED_COLUMNS)]
    assert cols(InputExample.of(pd.DataFrame(TYPED).astype({"m": object}).assign(
        m=[Decimal("12.50"), Decimal("0.25")])).columns)[7] == ("m", "decimal(38,2)", True)


@pytest.mark.parametrize("column, value, expected, actual", [
    ("i", "1", "integer", "string"),
    ("i", 1.5, "integer", "double"),
    ("i", 2 ** 64, "integer", "integer"),
    ("x", "1.5", "double", "string"),
    ("b", 1, "boolean", "integer"),
    ("s", 3, "string", "integer"),
    ("t", "31/01/2024", "datetime", "string"),
    ("d", "2024-01-31T00:00:00", "date", "string"),
    ("m", "12.345", "decimal", "string"),  # 3 digits after the point: decimal(10,2) has 2
    ("m", 123456789.5, "decimal", "double"),  # 9 before it: decimal(10,2) has 8
    ("m", "abc", "decimal", "string"),
    ("a", [1, "two"], "array", "array"),
    ("a", 1, "array", "integer"),
])
def test_a_value_that_does_not_fit_its_column_names_column_row_and_types(column, value,
                                                                          expected, actual):
    rows = [dict(TYPED[0]), {**TYPED[0], column: value}]
    with pytest.raises(LiveMLError) as err:
        check_rows(Tabular("input_df", TYPED_COLUMNS), rows)
    assert err.value.name == "InferenceInvalidInput"
    assert err.value.parameters["errorType"] == {
        "type": "typeMismatch", "input": "input_df", "column": column, "row": 1,
        "expected": expected, "actual": actual}
    assert f"row 1: column {column!r}" in err.value.message


def test_required_values_are_required_and_nullable_ones_accept_null():
    table = Tabular("input_df", TYPED_COLUMNS)
    row = {k: v for k, v in TYPED[0].items() if k != "n"}
    check_rows(table, [row, {**row, "t": None}])  # nullable: null or no key
    with pytest.raises(LiveMLError) as err:
        check_rows(table, [row, {**row, "i": None}])
    assert err.value.parameters["errorType"] == {
        "type": "requiredValueMissing", "input": "input_df", "column": "i", "row": 1}


def test_frames_are_dtype_faithful():
    frame = to_frame(TYPED_COLUMNS, [*TYPED, {**TYPED[0], "extra": "kept"}])
    assert {c: str(t) for c, t in frame.dtypes.items() if c != "extra"} == {
        "i": "int64", "n": "Int64", "x": "float64", "b": "bool", "s": str(pd.Series(["a"]).dtype),
        "t": "datetime64[ns, UTC]", "d": "object", "m": "object", "a": "object"}
    assert frame["n"].isna().tolist() == [False, True, False]
    assert frame["t"][0] == pd.Timestamp("2024-01-31T12:00:00", tz="UTC") and frame["t"].isna()[1]
    assert frame["d"].tolist()[:2] == [dt.date(2024, 1, 31), dt.date(2024, 2, 1)]
    assert frame["m"].tolist()[:2] == [Decimal("12.50"), Decimal("0.25")]
    assert frame["a"].tolist()[:2] == [[1, 2], []]
    assert list(frame.columns)[-1] == "extra"
    offset = to_frame([Column("t", "datetime")], [{"t": "2024-01-31T14:00:00+02:00"}, {"t": 0}])
    assert offset["t"].tolist() == [pd.Timestamp("2024-01-31T12:00:00", tz="UTC"),
                                    pd.Timestamp(0, tz="UTC")]


def test_a_plain_class_needs_an_example_and_is_told_how_to_give_one():
    runner = ModelRunner(wrap(PlainPricer()))
    with pytest.raises(InvalidArgument) as err:
        runner.self_test()
    message = err.value.message
    assert "KeyError: 'bedrooms'" in message
    assert "--input-example FILE" in message and "input_example=" in message
    assert "ModelAdapter" in message and "api()" in message
    runner = ModelRunner(wrap(PlainPricer()), InputExample.of(HOUSES))
    assert cols(runner.api.inputs[0].columns) == [
        ("house-location", "string", True), ("bedrooms", "integer", True),
        ("bathrooms", "double", True)]
    assert runner.self_test()["output_df"]["prediction"].tolist() == [337_500.0, 225_000.0]


def test_a_model_that_declares_its_inputs_keeps_them_and_gets_types_from_the_example():
    pipeline = reference_module().train()
    runner = ModelRunner(wrap(pipeline), InputExample.of(pd.DataFrame(HOUSES)))
    assert cols(runner.api.inputs[0].columns) == [  # its features, typed by the example
        ("house-location", "string", True), ("bedrooms", "integer", True),
        ("bathrooms", "double", True)]
    assert len(runner.self_test()["output_df"]) == 2
    with pytest.raises(InvalidArgument, match="no column 'bathrooms'"):
        ModelRunner(wrap(pipeline), InputExample.of([{"house-location": "A", "bedrooms": 1}]))

    class Untyped(ModelAdapter):
        def api(self) -> ModelApi:
            return ModelApi([Tabular("input_df", [Column("x"), Column("y", "double")])],
                            [Tabular("output_df")])

        def predict(self, input_df: pd.DataFrame) -> pd.DataFrame:
            return input_df

    runner = ModelRunner(Untyped(), InputExample.of([{"x": 1, "y": 2, "z": "extra"}]))
    assert cols(runner.api.inputs[0].columns) == [("x", "integer", True), ("y", "double", True)]
    assert runner.self_test()["output_df"].dtypes.astype(str).tolist()[:2] == ["int64", "float64"]


def test_input_example_files_json_and_csv(tmp_path):
    (tmp_path / "rows.json").write_text(json.dumps(HOUSES))
    (tmp_path / "body.json").write_text(json.dumps({"requestData": HOUSES}))
    (tmp_path / "rows.csv").write_text("bedrooms,bathrooms,city,sold\n3,1.5,Austin,2024-01-31\n"
                                       ",1.0,Boston,2024-02-01\n")
    for name in ("rows.json", "body.json"):
        assert read_input_example(tmp_path / name).rows == HOUSES
    csv = read_input_example(tmp_path / "rows.csv")
    assert cols(csv.columns) == [("bedrooms", "integer", False), ("bathrooms", "double", True),
                                 ("city", "string", True), ("sold", "date", True)]
    assert csv.rows[1] == {"bedrooms": None, "bathrooms": 1.0, "city": "Boston",
                           "sold": "2024-02-01"}
    (tmp_path / "bad.json").write_text("bedrooms,bathrooms\n1,2\n")
    with pytest.raises(InvalidArgument, match="neither CSV"):
        read_input_example(tmp_path / "bad.json")


# --- through a real server and real replicas ---------------------------------------------------
def liveml(server, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "liveml_ext.cli", *args], capture_output=True,
                          text=True, env=server.env(), timeout=180)


def infer(server, rid: str, rows: list) -> requests.Response:
    return requests.post(server.infer_url(rid), json={"requestData": rows, "requestParams": {}},
                         headers=server.headers(), timeout=60)


@pytest.fixture(scope="module")
def echo(server, tmp_path_factory) -> str:
    """DtypeEcho deployed with the TYPED example (1 replica)."""
    c = server.client
    path = save(DtypeEcho(), tmp_path_factory.mktemp("echo") / "echo.pkl")
    c.create_objective("dtypes")
    sub = c.submit("dtypes", path, name="echo", input_example=InputExample.of(TYPED, TYPED_COLUMNS))
    assert sub["api"]["inputExample"]["rows"] == TYPED
    c.release("dtypes", "echo", "1.0", tag="production")
    return c.wait(c.deploy("dtypes", name="Dtype echo", replicas=1)["rid"], timeout=180)["rid"]


def test_plain_class_refused_without_an_example_and_served_with_one(server, tmp_path):
    model = save(PlainPricer(), tmp_path / "plain.pkl")
    assert liveml(server, "objective", "create", "plain").returncode == 0
    refused = liveml(server, "submit", "plain", str(model), "--name", "p")
    assert refused.returncode == 1
    assert "InvalidModelArtifact" in refused.stderr and "KeyError: 'bedrooms'" in refused.stderr
    assert "--input-example FILE" in refused.stderr and "subclass liveml_runtime.ModelAdapter" \
        in refused.stderr

    (tmp_path / "houses.json").write_text(json.dumps(HOUSES))
    done = liveml(server, "submit", "plain", str(model), "--name", "p",
                  "--input-example", str(tmp_path / "houses.json"))
    assert done.returncode == 0, done.stderr
    assert "bedrooms:integer" in done.stdout and "passed on the 2 rows" in done.stdout
    (tmp_path / "houses.csv").write_text("house-location,bedrooms,bathrooms\nAustin,3,1.5\n"
                                         "Boston,,1.0\n")
    csv = json.loads(liveml(server, "submit", "plain", str(model), "--name", "p-csv",
                            "--input-example", str(tmp_path / "houses.csv"), "--json").stdout)
    assert [(c["name"], c["type"], c["required"]) for c in csv["api"]["inputs"][0]["columns"]] \
        == [("house-location", "string", True), ("bedrooms", "integer", False),
            ("bathrooms", "double", True)]

    c = server.client
    c.release("plain", "p", "1.0", tag="production")
    rid = c.wait(c.deploy("plain", name="Plain pricer", replicas=1)["rid"], timeout=180)["rid"]
    resp = infer(server, rid, [{"house-location": "Austin", "bedrooms": 4, "bathrooms": 2.0}])
    assert resp.status_code == 200, resp.text
    assert resp.json()["responseData"][0]["prediction"] == 450_000.0
    bad = infer(server, rid, [{"house-location": "Austin", "bedrooms": "four", "bathrooms": 2}])
    assert bad.status_code == 400 and bad.json()["parameters"]["errorType"]["column"] == "bedrooms"


def test_the_example_must_fit_the_model_and_its_schema(server, tmp_path):
    c = server.client
    c.create_objective("examples-bad")
    path = save(PlainPricer(), tmp_path / "plain.pkl")
    with pytest.raises(LiveMLClientError) as err:  # the model fails on the example's rows
        c.submit("examples-bad", path, input_example=[{"rooms": 1}])
    assert err.value.name == "InvalidModelArtifact" and "KeyError" in str(err.value)
    artifact = c.upload(path.read_bytes())
    url = "objectives/examples-bad/submissions"
    for body, field in [
        ({"inputExample": HOUSES, "inputSchema": [{"name": "bedrooms", "type": "money"}]},
         "inputSchema"),
        ({"inputSchema": [{"name": "bedrooms", "type": "integer"}]}, "inputSchema"),
        ({"inputExample": [{**HOUSES[0], "bedrooms": "x"}],
          "inputSchema": [{"name": "bedrooms", "type": "integer"}]}, "inputExample"),
    ]:
        with pytest.raises(LiveMLClientError) as err:
            c.api("POST", url, json={"artifactId": artifact, **body})
        assert err.value.status == 400 and err.value.parameters["field"] == field, err.value


@pytest.mark.parametrize("column, value, expected, actual", [
    ("i", "1", "integer", "string"),
    ("x", True, "double", "boolean"),
    ("b", "yes", "boolean", "string"),
    ("t", "yesterday", "datetime", "string"),
    ("d", "31.01.2024", "date", "string"),
    ("m", "1.234", "decimal", "string"),
    ("a", ["x"], "array", "array"),
])
def test_every_query_is_checked_against_the_declared_types(server, echo, column, value,
                                                           expected, actual):
    resp = infer(server, echo, [TYPED[0], {**TYPED[1], column: value}])
    assert resp.status_code == 400, resp.text
    doc = resp.json()
    assert doc["errorName"] == "InferenceInvalidInput"
    assert doc["parameters"]["errorType"] == {
        "type": "typeMismatch", "input": "input_df", "column": column, "row": 1,
        "expected": expected, "actual": actual}
    assert f"column {column!r}" in doc["parameters"]["message"]


def test_a_required_value_missing_names_column_and_row(server, echo):
    resp = infer(server, echo, [TYPED[0], {**TYPED[1], "d": None}])
    assert resp.status_code == 400
    assert resp.json()["parameters"]["errorType"] == {
        "type": "requiredValueMissing", "input": "input_df", "column": "d", "row": 1}


def test_nullable_columns_reach_the_model_typed_and_come_back_as_json(server, echo):
    rows = [{**TYPED[0], "t": "2024-01-31T14:00:00+02:00"}, {**TYPED[1]}]
    del rows[1]["n"]  # a nullable column may be left out
    resp = infer(server, echo, rows)
    assert resp.status_code == 200, resp.text
    out = resp.json()["responseData"]
    seen = [dict(part.split("=", 1) for part in r["prediction"].split(";")) for r in out]
    assert seen[0]["n"] == "Int64:int64" and seen[1]["n"] == "Int64:NAType"
    assert seen[0]["t"] == "datetime64[ns, UTC]:Timestamp" and seen[1]["t"].endswith(":NaTType")
    assert seen[0]["i"] == "int64:int64" and seen[0]["x"] == "float64:float64"
    assert seen[0]["b"] == "bool:bool" and seen[0]["s"].endswith(":str")
    assert seen[0]["d"] == "object:date" and seen[0]["m"] == "object:Decimal"
    assert seen[0]["a"] == "object:list"
    # the echoed input rows come back as JSON of the same types
    assert out[0]["t"] == "2024-01-31T12:00:00+00:00" and out[1]["t"] is None
    assert out[1]["n"] is None and out[0]["n"] == 7
    assert out[0]["d"] == "2024-01-31" and out[0]["m"] == "12.50" and out[0]["a"] == [1, 2]


def test_notebook_submit_with_a_dataframe_example(server, monkeypatch):
    import liveml_ext.notebook as lm

    monkeypatch.setenv("LIVEML_URL", server.url)
    monkeypatch.setenv("LIVEML_TOKEN", server.token)
    lm._client = None
    try:
        frame = pd.DataFrame(HOUSES).astype({"bedrooms": "Int64"})
        frame.loc[1, "bedrooms"] = pd.NA
        sub = lm.submit("nb-examples", PlainPricer(), name="plain", input_example=frame)
        columns = sub["api"]["inputs"][0]["columns"]
        assert [(c["name"], c["type"], c["required"]) for c in columns] == [
            ("house-location", "string", True), ("bedrooms", "integer", False),
            ("bathrooms", "double", True)]
        assert sub["api"]["inputExample"]["rows"][1]["bedrooms"] is None
        lm.release("nb-examples", "plain", "1.0", tag="production")
        dep = lm.deploy("nb-examples", name="Notebook plain", replicas=1)
        answer = dep.transform(pd.DataFrame(HOUSES))
        assert answer["prediction"].tolist() == [337_500.0, 225_000.0]
        with pytest.raises(LiveMLClientError) as err:
            lm.submit("nb-examples", PlainPricer(), name="none")
        assert "input_example=" in str(err.value)
    finally:
        lm._client = None
