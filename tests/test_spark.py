"""Spark models with a real JVM: saved pyspark.ml pipelines and a Spark ModelAdapter, served by
real replicas that each run one local SparkSession.

One Spark session serves this test process (training and the in-process ``transform`` the
answers are compared with); the models are trained once per module.
"""
from __future__ import annotations

import datetime as dt
import decimal
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator

import pandas as pd
import pytest
import requests
from conftest import Loops, reference_module, run_notebook, start_server, wait_for
from spark_fixtures import (
    FEATURES,
    SparkScaler,
    house_frame,
    save_adapter,
    train_classifier,
    train_regression,
)

import liveml_ext.notebook as lm
from liveml_runtime import spark as local_spark
from liveml_runtime.adapter import ModelRunner, encode, load_model, prepare
from liveml_runtime.schema import infer_columns
from liveml_runtime.server import dumps
from liveml_runtime.spark_frames import to_pandas, to_spark
from liveml_runtime.spark_model import pack, pack_model

ROWS = [{"house-location": "New York", "bedrooms": 3, "bathrooms": 1.5},
        {"house-location": "Austin", "bedrooms": 1, "bathrooms": 1.0},
        {"house-location": "Chicago", "bedrooms": 5, "bathrooms": 3.0},
        {"house-location": "Boston", "bedrooms": 2, "bathrooms": 2.0}]  # unseen: handled


@pytest.fixture(scope="module")
def spark():
    return local_spark.session(1)


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return house_frame(reference_module())


@pytest.fixture(scope="module")
def models(spark, frame, tmp_path_factory) -> dict:
    """Trained once: two regressions (two releases) and a classifier; the first one saved."""
    out = {"reg1": train_regression(spark, frame), "reg2": train_regression(spark, frame, 0.5),
           "clf": train_classifier(spark, frame)}
    root = tmp_path_factory.mktemp("spark-models")
    for name in ("reg1", "reg2"):
        out[name].write().overwrite().save(str(root / name))
        out[f"{name}_dir"] = root / name
    example = root / "example.csv"
    frame[FEATURES].head(3).to_csv(example, index=False)
    out["example"] = example
    return out


@pytest.fixture(autouse=True)
def _delete_afterwards(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "server" in request.fixturenames:
        c = request.getfixturevalue("server").client
        for doc in c.deployments():
            c.delete(doc["rid"])


def in_process(spark, model, rows: list[dict]) -> pd.DataFrame:
    """The same rows through the model in this process: what a replica must answer."""
    frame = pd.DataFrame(rows)
    data = to_spark(spark, frame, infer_columns(frame[FEATURES]))
    return to_pandas(model.transform(data))


def cli(server, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "liveml_ext.cli", *args],
                          env=env or server.env(), capture_output=True, text=True, timeout=300)


def post(server, rid: str, body: dict, v2: bool = False) -> requests.Response:
    return requests.post(server.infer_url(rid, v2), json=body, headers=server.headers(), timeout=60)


def release_and_deploy(server, objective: str, submission: str, version: str, replicas: int = 1,
                       **runtime) -> str:
    c = server.client
    c.release(objective, submission, version, tag="production")
    doc = c.deploy(objective, name=objective, replicas=replicas, runtime=runtime or None)
    return c.wait(doc["rid"], timeout=240)["rid"]


def test_conversions_follow_the_declared_columns_and_round_trip(spark):
    example = pd.DataFrame({
        "n": pd.array([1, None, 2**53 + 1], dtype="Int64"),
        "x": [1.5, None, -0.25],
        "s": ["a", None, "c"],
        "b": pd.array([True, None, False], dtype="boolean"),
        "t": pd.to_datetime(["2024-03-01T12:34:56.123456Z", None, "1999-12-31T23:59:59Z"],
                            format="ISO8601"),
        "d": [dt.date(2024, 2, 29), None, dt.date(1970, 1, 1)],
        "m": [decimal.Decimal("12345.678901"), None, decimal.Decimal("-0.5")],
        "a": [[1.0, 2.5], None, []],
    })
    columns = infer_columns(example)
    kinds = {c.name: (c.type, c.required) for c in columns}
    assert kinds == {"n": ("integer", False), "x": ("double", False), "s": ("string", False),
                     "b": ("boolean", False), "t": ("datetime", False), "d": ("date", False),
                     "m": ("decimal", False), "a": ("array", False)}
    data = to_spark(spark, example, columns)
    assert [(f.name, f.dataType.simpleString(), f.nullable) for f in data.schema.fields] == [
        ("n", "bigint", True), ("x", "double", True), ("s", "string", True),
        ("b", "boolean", True), ("t", "timestamp", True), ("d", "date", True),
        ("m", "decimal(38,6)", True), ("a", "array<double>", True)]
    back = to_pandas(data)
    assert str(back["n"].dtype) == "Int64" and back["n"].tolist()[0::2] == [1, 2**53 + 1]
    assert back["n"].isna().tolist() == [False, True, False]
    assert str(back["t"].dtype).endswith("UTC]") and back["t"][0] == example["t"][0]
    assert back["d"].tolist()[0::2] == [dt.date(2024, 2, 29), dt.date(1970, 1, 1)]
    assert back["m"][0] == decimal.Decimal("12345.678901") and back["m"][2] == -0.5
    assert list(back["a"][0]) == [1.0, 2.5] and back["a"][1] is None and list(back["a"][2]) == []
    assert back["s"].tolist()[0::2] == ["a", "c"] and back["b"].tolist()[0::2] == [True, False]


def test_saved_pipeline_two_replicas_v1_v2_match_in_process_transform(server, spark, models):
    c = server.client
    c.create_objective("spark-houses")
    out = cli(server, "submit", "spark-houses", str(models["reg1_dir"]), "--name", "reg1",
              "--input-example", str(models["example"]))
    assert out.returncode == 0, out.stderr
    sub = next(s for s in c.submissions("spark-houses") if s["name"] == "reg1")
    columns = {col["name"]: col["type"] for col in sub["api"]["inputs"][0]["columns"]}
    assert columns == {"house-location": "string", "bedrooms": "integer", "bathrooms": "double"}
    assert "pyspark" in sub["requirements"]
    rid = release_and_deploy(server, "spark-houses", "reg1", "1.0", replicas=2)
    assert c.deployment(rid)["status"]["readyReplicas"] == 2
    expected = in_process(spark, models["reg1"], ROWS)["prediction"].tolist()
    resp = post(server, rid, {"requestData": ROWS, "requestParams": {}})
    assert resp.status_code == 200, resp.text
    answer = resp.json()["responseData"]
    # the input rows plus the prediction; the pipeline's intermediate columns are left out
    assert [list(r) for r in answer] == [[*FEATURES, "prediction"]] * len(ROWS)
    assert [{k: r[k] for k in FEATURES} for r in answer] == ROWS
    assert [r["prediction"] for r in answer] == pytest.approx(expected, abs=1e-9, rel=0)
    v2 = post(server, rid, {"input_df": ROWS}, v2=True)
    assert v2.status_code == 200, v2.text
    assert [r["prediction"] for r in v2.json()["output_df"]] == pytest.approx(expected, abs=1e-9,
                                                                              rel=0)
    # a value that does not fit its declared type: a 400 naming the column, never a Java trace
    bad = post(server, rid, {"requestData": [{**ROWS[0], "bedrooms": 2**63}]})
    assert bad.status_code == 400, bad.text
    err = bad.json()
    assert err["errorName"] == "InferenceInvalidInput"
    assert err["parameters"]["errorType"]["column"] == "bedrooms"
    assert "java" not in bad.text.lower()

    # a rolling upgrade to another Spark release under a query loop: no failed query
    out = cli(server, "submit", "spark-houses", str(models["reg2_dir"]), "--name", "reg2",
              "--input-example", str(models["example"]))
    assert out.returncode == 0, out.stderr
    want = in_process(spark, models["reg2"], ROWS[:1])["prediction"][0]
    with Loops(server, rid, rows=ROWS[:1]) as loops:
        wait_for(lambda: len(loops.results) >= 4, timeout=60, what="queries before the upgrade")
        c.release("spark-houses", "reg2", "2.0", tag="production")
        wait_for(lambda: (c.deployment(rid).get("release") or {}).get("version") == "2.0" and
                 c.deployment(rid)["status"]["rollout"]["state"] == "COMPLETE", timeout=300,
                 interval=0.5, what="the rollout to 2.0")
        after = loops.since(loops.mark())
    assert loops.failures() == [], loops.failures()[:5]
    assert after and all(abs(v - want) < 1e-9 for v in after), (after[:3], want)


def test_classifier_from_memory_answers_probability_arrays(server, spark, models, frame):
    lm.connect(server.url, server.token)
    lm.submit("spark-clf", models["clf"], name="clf", input_example=frame[FEATURES].head(5))
    rid = release_and_deploy(server, "spark-clf", "clf", "1.0")
    expected = in_process(spark, models["clf"], ROWS)
    resp = post(server, rid, {"requestData": ROWS})
    assert resp.status_code == 200, resp.text
    answer = resp.json()["responseData"]
    assert list(answer[0]) == [*FEATURES, "prediction", "probability"]
    for row, want_p, want_prob in zip(answer, expected["prediction"], expected["probability"]):
        assert row["prediction"] == want_p
        assert isinstance(row["probability"], list) and len(row["probability"]) == 2
        assert row["probability"] == pytest.approx(list(want_prob), abs=1e-9, rel=0)


def test_typed_round_trips_and_bad_values(server, spark, tmp_path):
    from pyspark.ml import PipelineModel
    from pyspark.ml.feature import SQLTransformer

    model = PipelineModel(stages=[SQLTransformer(statement="SELECT *, n + 1 AS n1 FROM __THIS__")])
    example = pd.DataFrame({
        "n": pd.array([1, None], dtype="Int64"),
        "t": pd.to_datetime(["2024-03-01T12:34:56.123456Z", None]),
        "d": [dt.date(2024, 2, 29), None],
        "m": [decimal.Decimal("1.234567"), None],  # decimal(38,6): the example's scale
        "a": [[1.0, 2.5], None],
        "ok": [True, False],
    })
    model.write().overwrite().save(str(tmp_path / "typed"))
    server.client.create_objective("spark-types")
    server.client.submit("spark-types", pack(tmp_path / "typed", example), name="typed")
    rid = release_and_deploy(server, "spark-types", "typed", "1.0")
    rows = [{"n": 9007199254740993, "t": "2024-03-01T12:34:56.123456Z", "d": "2024-02-29",
             "m": "12345.678901", "a": [1.5, None, -2.0], "ok": True},
            {"n": None, "t": None, "d": None, "m": None, "a": None, "ok": False},
            {"n": -7, "t": "1969-07-20T20:17:40+02:00", "d": "1970-01-01", "m": 0.5, "a": [],
             "ok": True}]
    resp = post(server, rid, {"requestData": rows})
    assert resp.status_code == 200, resp.text
    answer = resp.json()["responseData"]
    assert [r["n"] for r in answer] == [9007199254740993, None, -7]
    assert [r["n1"] for r in answer] == [9007199254740994, None, -6]
    assert [r["t"] and pd.Timestamp(r["t"]) for r in answer] == [
        pd.Timestamp("2024-03-01T12:34:56.123456Z"), None, pd.Timestamp("1969-07-20T18:17:40Z")]
    assert [r["d"] for r in answer] == ["2024-02-29", None, "1970-01-01"]
    assert [r["m"] and decimal.Decimal(r["m"]) for r in answer] == [
        decimal.Decimal("12345.678901"), None, decimal.Decimal("0.5")]
    assert [r["a"] for r in answer] == [[1.5, None, -2.0], None, []]
    assert [r["ok"] for r in answer] == [True, False, True]
    # values that do not fit: a 400 naming the column, from the codecs or the conversion
    for column, value in [("n", "seven"), ("d", "2024-13-01"), ("m", "1e40"), ("a", ["x"]),
                          ("t", "yesterday"), ("ok", None)]:
        resp = post(server, rid, {"requestData": [{**rows[0], column: value}]})
        assert resp.status_code == 400, (column, resp.text)
        doc = resp.json()
        assert doc["errorName"] == "InferenceInvalidInput", (column, doc)
        assert doc["parameters"]["errorType"]["column"] == column, (column, doc)
        assert "java" not in resp.text.lower(), (column, resp.text)


def test_spark_model_adapter_logs_and_the_jvm_lives_in_the_replica(server, tmp_path):
    c = server.client
    c.create_objective("spark-adapter")
    c.submit("spark-adapter", save_adapter(SparkScaler(), tmp_path / "scaler.pkl"), name="m")
    rid = release_and_deploy(server, "spark-adapter", "m", "1.0")
    resp = post(server, rid, {"requestData": [{"x": 1.5}, {"x": -2.0}]})
    assert resp.status_code == 200, resp.text
    answer = resp.json()["responseData"]
    assert [r["y"] for r in answer] == [3.0, -4.0]
    assert {(r["master"], r["timezone"]) for r in answer} == {("local[1]", "UTC")}  # the replica's
    node = c.deployment(rid)["status"]["replicas"][0]["nodeId"]
    # the startup story, the model's own logging line, and the JVM's own warning
    cols = ["level", "logger", "message", "node_id", "fields.seconds", "fields.java",
            "fields.source", "deployment_rid"]
    page = wait_for(lambda: (p := c.logs(rid, '"Starting local Spark"', since="1h",
                                         columns=cols))["data"] and p,
                    timeout=60, what="the Spark startup step")
    record = page["data"][0]
    assert record["message"].startswith("Starting local Spark: Spark 4.3.0 on Java 17"), record
    assert record["fields.seconds"] > 0 and str(record["fields.java"]).startswith("17"), record
    wait_for(lambda: c.logs(rid, '"spark scaler scaling 2 rows"', since="1h")["data"],
             timeout=60, what="the model's own log line")
    jvm = wait_for(lambda: c.logs(rid, '"the JVM of the spark scaler says hello"', since="1h",
                                  columns=cols)["data"], timeout=60, what="the JVM's warning")
    assert jvm[0]["level"] == "WARNING" and jvm[0]["logger"] == "liveml.test.jvm", jvm[0]
    assert jvm[0]["fields.source"] == "spark" and jvm[0]["node_id"] == node, jvm[0]

    # the JVM is the replica's child: killing the replica takes it along
    replica_pid, java = wait_for(lambda: jvm_of(node), what="the replica's JVM")
    os.kill(replica_pid, signal.SIGKILL)
    wait_for(lambda: not pid_alive(java), timeout=30, what="the JVM to exit with its replica")


def jvm_of(node: str) -> tuple[int, int] | None:
    """(replica PID, its JVM's PID) for a replica node."""
    import psutil

    for proc in psutil.process_iter(["cmdline"]):
        cmd = proc.info["cmdline"] or []
        if "liveml_runtime" in cmd and "serve" in cmd and node in cmd:
            javas = [p.pid for p in proc.children(recursive=True) if "java" in p.name()]
            return (proc.pid, javas[0]) if javas else None
    return None


def pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_spark_replica_over_its_memory_limit_is_stopped(server, tmp_path):
    c = server.client
    c.create_objective("spark-oom")
    c.submit("spark-oom", save_adapter(SparkScaler(), tmp_path / "scaler.pkl"), name="m")
    c.release("spark-oom", "m", "1.0", tag="production")
    # enough for the Python side of the replica, not with its JVM
    doc = c.deploy("spark-oom", name="spark-oom", replicas=1, runtime={"memory": "300MiB"})
    doc = wait_for(lambda: (d := c.deployment(doc["rid"]))["status"]["state"] == "FAILED" and d,
                   timeout=240, interval=0.5, what="the deployment to fail")
    assert "out of memory" in doc["status"]["reason"], doc["status"]


def test_in_process_adapter_batches_and_answers_the_output_columns_asked(spark, models, frame,
                                                                          tmp_path):
    path = tmp_path / "reg1.zip"
    path.write_bytes(pack_model(models["reg1"], frame[FEATURES].head(3)))
    adapter = load_model(str(path))
    prepare(adapter)
    runner = ModelRunner(adapter)
    assert runner.batchable  # concurrent requests run as one transform
    out = runner.infer(runner.to_frames({"input_df": ROWS}))["output_df"]
    assert out["prediction"].tolist() == pytest.approx(
        in_process(spark, models["reg1"], ROWS)["prediction"].tolist(), abs=1e-9, rel=0)
    # output_columns (a submission option, --output-columns): the raw prediction too, as numbers
    path.write_bytes(pack_model(models["clf"], frame[FEATURES].head(3),
                                ["prediction", "rawPrediction"]))
    adapter = load_model(str(path))
    prepare(adapter)
    runner = ModelRunner(adapter)
    raw = encode(runner.infer(runner.to_frames({"input_df": ROWS[:1]}))["output_df"])[0]
    assert list(raw) == [*FEATURES, "prediction", "rawPrediction"]
    want = in_process(spark, models["clf"], ROWS[:1])["rawPrediction"][0]
    assert json.loads(dumps(raw))["rawPrediction"] == pytest.approx(list(want), abs=1e-9, rel=0)


def test_missing_java_is_a_clear_error_at_submission(tmp_path, models, frame, monkeypatch):
    with monkeypatch.context() as env:
        env.setenv("PATH", str(tmp_path / "nowhere"))
        env.setenv("JAVA_HOME", str(tmp_path / "nowhere"))
        server = start_server(tmp_path / "home")
    try:
        c = server.client
        c.create_objective("no-java")
        data = pack(models["reg1_dir"], frame[FEATURES].head(3))
        from liveml_ext.client import LiveMLClientError

        with pytest.raises(LiveMLClientError) as err:
            c.submit("no-java", data, name="m")
        assert err.value.name == "InvalidModelArtifact"
        message = err.value.parameters["message"]
        assert "JavaNotFound" in message and "JDK 17" in message, message
        assert "JAVA_HOME" in message
    finally:
        server.stop()


def test_cli_refuses_a_spark_model_without_an_input_example(server, models):
    out = cli(server, "submit", "spark-houses", str(models["reg1_dir"]))
    assert out.returncode != 0 and "--input-example" in out.stderr, out.stderr


def test_spark_notebook_runs(server, monkeypatch):
    _, outputs = run_notebook(server, monkeypatch, "spark_model")
    text = json.dumps([o.get("data", {}) for o in outputs] + [o.get("text", "") for o in outputs])
    for needle in ("Starting local Spark", "largest difference from the in-process transform",
                   "image/png"):
        assert needle in text, needle


def test_a_jvm_failure_is_the_model_failing_without_a_java_stack_trace(spark, tmp_path):
    from pyspark.ml.feature import StringIndexer

    from liveml_runtime.errors import InferenceFailure

    example = pd.DataFrame({"city": ["Austin", "Chicago"]})
    strict = StringIndexer(inputCol="city", outputCol="city_index", handleInvalid="error") \
        .fit(to_spark(spark, example, infer_columns(example)))
    path = tmp_path / "strict.zip"
    path.write_bytes(pack_model(strict, example))
    adapter = load_model(str(path))
    prepare(adapter)
    runner = ModelRunner(adapter)
    assert runner.infer(runner.to_frames({"input_df": [{"city": "Austin"}]}))["output_df"][
        "city_index"].tolist() == [0.0]
    with pytest.raises(InferenceFailure) as err:
        runner.infer(runner.to_frames({"input_df": [{"city": "Boston"}]}))
    assert "Boston" in err.value.message, err.value.message
    assert "\tat " not in err.value.message and "JVM stacktrace" not in err.value.message
    assert len(err.value.message) < 1000
