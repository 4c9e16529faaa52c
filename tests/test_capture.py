"""Inference history (issue 16, capture): real control plane, real replicas, real Parquet files.

Capture is off by default; on, failed queries are always captured (with the envelope the caller
got) and successful ones by sample, decided from the request id's hash (so the ids sent here
give a known sample); bodies past captureMaxBytes are flagged, not kept; the history reads back
through REST (JSON, Parquet), the CLI and the notebook (a typed DataFrame); old days are swept
and a restart keeps what was captured.
"""
from __future__ import annotations

import datetime as dt
import io
import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import cloudpickle
import pandas as pd
import pyarrow.parquet as pq
import pytest
import requests
from conftest import ROW, Server, deploy_reference, start_server, wait_for

from liveml_ext import Column, ModelAdapter, ModelApi, Tabular
from liveml_ext.capture import HistoryStore, sampled
from liveml_ext.notebook import Deployment
from liveml_runtime.frames import to_frame

BAD = {"house-location": "Boston", "bedrooms": "three", "bathrooms": 1.0}  # a 400


def post(server: Server, rid: str, rows: list, request_id: str | None = None,
         token: str | None = None) -> requests.Response:
    headers = {"Authorization": f"Bearer {token or server.token}"}
    if request_id:
        headers["X-Request-Id"] = request_id
    return requests.post(server.infer_url(rid), json={"requestData": rows, "requestParams": {}},
                         headers=headers, timeout=30)


def history(server: Server, rid: str, **params: object) -> dict:
    resp = requests.get(f"{server.url}liveml/api/deployments/{rid}/history",
                        params={"since": "1h", "limit": 10000, **params},
                        headers=server.headers(), timeout=30)
    assert resp.status_code == 200, resp.text
    return resp.json()


def ids(doc: dict) -> set[str]:
    return {r["requestId"] for r in doc["data"]}


def capture(server: Server, rid: str, **config: object) -> None:
    server.client.update(rid, runtimeConfiguration=config)


@pytest.fixture(scope="module")
def deployed(server: Server, house_model: Path) -> str:
    doc = deploy_reference(server, house_model, "capture", "capture", replicas=1)
    return doc["rid"]


def test_capture_is_off_by_default(server: Server, deployed: str) -> None:
    config = server.client.deployment(deployed)["runtimeConfiguration"]
    assert (config["capture"], config["captureSample"], config["captureMaxBytes"]) == \
        ("off", 1.0, 65536)
    assert post(server, deployed, [ROW], "off-1").status_code == 200
    assert post(server, deployed, [BAD], "off-2").status_code == 400
    assert history(server, deployed)["data"] == []


def test_sample_zero_captures_only_failed_queries_with_their_envelope(
        server: Server, deployed: str) -> None:
    capture(server, deployed, capture="both", captureSample=0.0)
    for i in range(5):
        resp = post(server, deployed, [ROW], f"zero-ok-{i}")
        assert resp.status_code == 200 and resp.headers["X-Request-Id"] == f"zero-ok-{i}"
    envelopes = {}
    for i in range(3):
        resp = post(server, deployed, [BAD], f"zero-bad-{i}")
        assert resp.status_code == 400
        envelopes[f"zero-bad-{i}"] = resp.json()
    got = [r for r in history(server, deployed)["data"] if r["requestId"].startswith("zero-")]
    assert {r["requestId"] for r in got} == set(envelopes)
    for r in got:
        assert r["status"] == 400 and r["response"] == envelopes[r["requestId"]]
        assert r["request"] == {"requestData": [BAD], "requestParams": {}}
        assert r["release"] == "1.0" and r["nodeId"] != "gateway" and r["latencyMs"] > 0
        assert r["deploymentRid"] == deployed and r["api"] == "v1"


def test_sample_one_captures_all_and_a_fraction_stays_in_its_binomial_bound(
        server: Server, deployed: str) -> None:
    capture(server, deployed, capture="both", captureSample=1.0)
    for i in range(10):
        assert post(server, deployed, [ROW], f"all-{i}").status_code == 200
    assert {f"all-{i}" for i in range(10)} <= ids(history(server, deployed))
    n, p = 300, 0.3
    capture(server, deployed, captureSample=p)
    sent = [f"frac-{i}" for i in range(n)]
    for rid in sent:
        assert post(server, deployed, [ROW], rid).status_code == 200
    got = {i for i in ids(history(server, deployed)) if i.startswith("frac-")}
    assert got == {i for i in sent if sampled(i, p)}  # the hash decides: a known sample
    assert abs(len(got) - n * p) <= 4 * math.sqrt(n * p * (1 - p)), len(got)


def test_modes_and_truncation_past_max_bytes(server: Server, deployed: str) -> None:
    capture(server, deployed, capture="response", captureSample=1.0, captureMaxBytes=65536)
    assert post(server, deployed, [ROW], "mode-response").status_code == 200
    capture(server, deployed, capture="request", captureMaxBytes=120)
    rows = [ROW] * 5  # a body over 120 bytes
    big = post(server, deployed, rows, "trunc-big")
    assert big.status_code == 200
    assert post(server, deployed, [ROW], "trunc-small").status_code == 200
    by_id = {r["requestId"]: r for r in history(server, deployed)["data"]}
    r = by_id["mode-response"]
    assert r["request"] is None and not r["requestTruncated"]
    assert r["response"]["responseData"][0]["prediction"] > 0
    r = by_id["trunc-big"]
    body = json.dumps({"requestData": rows, "requestParams": {}}).encode()
    assert r["request"] is None and r["requestTruncated"] and r["requestBytes"] == len(body)
    assert r["response"] is None and not r["responseTruncated"]  # mode request: not wanted
    r = by_id["trunc-small"]
    assert r["request"] == {"requestData": [ROW], "requestParams": {}}
    assert not r["requestTruncated"]


def test_token_id_is_kept_never_the_token_and_the_route_needs_read_rights(
        server: Server, deployed: str) -> None:
    c = server.client
    capture(server, deployed, capture="both", captureSample=1.0, captureMaxBytes=65536)
    query = c.create_token(namespace="default", scope="query")
    assert post(server, deployed, [ROW], "by-token", token=query["token"]).status_code == 200
    record = next(r for r in history(server, deployed)["data"] if r["requestId"] == "by-token")
    assert record["tokenId"] == query["id"]
    for path in (server.home / "history").rglob("*.parquet"):
        assert query["token"].encode() not in path.read_bytes()
    url = f"{server.url}liveml/api/deployments/{deployed}/history"
    other = c.create_token(namespace="elsewhere", scope="read")
    reader = c.create_token(namespace="default", scope="read")
    for token, status in ((query["token"], 403), (other["token"], 404),
                          (reader["token"], 200), ("lm_not-a-token", 401)):
        resp = requests.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=30)
        assert resp.status_code == status, (status, resp.text)
        if status != 200:
            assert set(resp.json()) == {"errorCode", "errorName", "errorInstanceId", "parameters"}
    resp = requests.get(f"{url}/download", timeout=30,
                        headers={"Authorization": f"Bearer {other['token']}"})
    assert resp.status_code == 404
    resp = requests.get(url, params={"status": "6xx"}, headers=server.headers(), timeout=30)
    assert resp.status_code == 400 and resp.json()["errorName"] == "InvalidArgument"


def test_history_filters_and_dataframe_with_declared_dtypes(server: Server,
                                                            deployed: str) -> None:
    doc = Deployment(deployed, server.client).capture("both", sample=1.0)  # the notebook API
    assert (doc["runtimeConfiguration"]["capture"], doc["runtimeConfiguration"]["captureSample"]) \
        == ("both", 1.0)
    rows = [{"house-location": "Chicago", "bedrooms": 2, "bathrooms": 1.0},
            {"house-location": "Seattle", "bedrooms": 4, "bathrooms": 2.5}]
    assert post(server, deployed, rows, "frame-two").status_code == 200
    assert post(server, deployed, [BAD], "frame-bad").status_code == 400
    errors = history(server, deployed, status="4xx")["data"]
    assert errors and all(400 <= r["status"] < 500 for r in errors)
    assert history(server, deployed, release="nope")["data"] == []
    assert history(server, deployed, status="5xx")["data"] == []
    dep = Deployment(deployed, server.client)
    frame = dep.history(since="1h", status="2xx")
    two = frame[frame["request_id"] == "frame-two"]
    assert list(two["house-location"]) == ["Chicago", "Seattle"]
    assert two["bedrooms"].tolist() == [2, 4] and two["bathrooms"].tolist() == [1.0, 2.5]
    # the declared types (the reference pipeline declares bedrooms a double), as the model
    # gets them: to_frame of the declared columns
    api = server.client.submissions("capture")[0]["api"]
    declared = to_frame(ModelApi.coerce(api).tabular_inputs[0].columns, [ROW])
    assert [c["type"] for c in api["inputs"][0]["columns"]] == ["string", "double", "double"]
    for name, dtype in declared.dtypes.items():
        assert frame[name].dtype == dtype, name
    assert pd.api.types.is_string_dtype(frame["house-location"])
    assert frame["bathrooms"].dtype == "float64"
    assert frame["output.prediction"].dtype == "float64" and (two["output.prediction"] > 0).all()
    assert isinstance(frame["time"].dtype, pd.DatetimeTZDtype)
    assert (frame["status"] == 200).all()
    everything = dep.history(since="1h")
    bad = everything[everything["request_id"] == "frame-bad"]
    assert len(bad) == 1 and bad["error"].iloc[0] == "InferenceInvalidInput"
    assert bad["bedrooms"].isna().all()  # the rows did not check: the inputs are missing
    assert len(everything) > len(frame)


def test_cli_update_history_json_and_download(server: Server, deployed: str,
                                              tmp_path: Path) -> None:
    env = {**server.env(), "LIVEML_URL": server.url, "LIVEML_TOKEN": server.token}

    def cli(*args: str) -> subprocess.CompletedProcess:
        done = subprocess.run([sys.executable, "-m", "liveml_ext.cli", *args], env=env,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return done

    cli("update", deployed, "--capture", "both", "--capture-sample", "1",
        "--capture-max-bytes", "1KiB")
    config = server.client.deployment(deployed)["runtimeConfiguration"]
    assert (config["capture"], config["captureSample"], config["captureMaxBytes"]) == \
        ("both", 1.0, 1024)
    assert post(server, deployed, [ROW], "cli-ok").status_code == 200
    assert post(server, deployed, [BAD], "cli-bad").status_code == 400
    doc = json.loads(cli("history", deployed, "--since", "1h", "--status", "4xx",
                         "--json", "--limit", "10000").stdout)
    assert "cli-bad" in ids(doc) and "cli-ok" not in ids(doc)
    text = cli("history", deployed, "--since", "1h").stdout
    assert "REQUEST ID" in text and "cli-ok" in text
    target = tmp_path / "history.parquet"
    cli("history", deployed, "--since", "1h", "--release", "1.0", "--download", str(target))
    table = pq.read_table(target)
    everything = history(server, deployed, release="1.0")
    assert table.num_rows == len(everything["data"])
    assert "cli-ok" in table.column("request_id").to_pylist()
    bad = subprocess.run(
        [sys.executable, "-m", "liveml_ext.cli", "update", deployed, "--capture-max-bytes",
         "lots"], env=env, capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and "64KiB" in bad.stderr


def test_widgets_edit_the_capture_settings(server: Server, deployed: str) -> None:
    from liveml_ext.widgets import DeploymentView

    capture(server, deployed, capture="off", captureSample=1.0, captureMaxBytes=65536)
    view = DeploymentView(deployed, server.client, background=False)
    assert (view.capture.value, view.capture_sample.value, view.capture_max_bytes.value) == \
        ("off", 1.0, 65536)
    view.capture.value, view.capture_sample.value = "request", 0.25
    view.capture_max_bytes.value = 2048
    view.save_config.click()
    config = server.client.deployment(deployed)["runtimeConfiguration"]
    assert (config["capture"], config["captureSample"], config["captureMaxBytes"]) == \
        ("request", 0.25, 2048)
    assert "saved" in view.message.value


def test_gateway_error_is_captured_with_the_envelope_the_caller_got(server: Server,
                                                                    deployed: str) -> None:
    capture(server, deployed, capture="both", captureSample=0.0)
    server.client.disable(deployed)
    resp = post(server, deployed, [ROW], "gateway-503")
    assert resp.status_code == 503
    record = next(r for r in history(server, deployed)["data"]
                  if r["requestId"] == "gateway-503")
    assert record["nodeId"] == "gateway" and record["status"] == 503
    assert record["response"] == resp.json()  # the same errorInstanceId too
    assert record["release"] == "1.0"


def test_retention_sweep_and_restart_keep_history(tmp_path: Path, house_model: Path) -> None:
    home = tmp_path / "home"
    server = start_server(home)
    try:
        rid = deploy_reference(server, house_model, "kept", "kept", replicas=1)["rid"]
        capture(server, rid, capture="both")
        for i in range(3):
            assert post(server, rid, [ROW], f"before-restart-{i}").status_code == 200
    finally:
        server.stop()  # SIGTERM: the control plane writes what is pending
    now = dt.datetime.now(dt.UTC)
    store = HistoryStore(home / "history")
    on_disk = store.read(rid, now - dt.timedelta(hours=1), now)
    assert {f"before-restart-{i}" for i in range(3)} <= \
        set(on_disk.column("request_id").to_pylist())
    old = {days: now - dt.timedelta(days=days) for days in (8, 6)}
    store.write([{**on_disk.slice(0, 1).to_pylist()[0], "time": at, "request_id": f"{d}-days"}
                 for d, at in old.items()])
    eight = store.partition(old[8].date(), rid)
    assert eight.is_dir()
    server = start_server(home)
    try:
        wait_for(lambda: not eight.parent.exists(), what="the sweep of the 8-day-old day")
        assert store.partition(old[6].date(), rid).is_dir()
        doc = history(server, rid, since="30d")
        assert {f"before-restart-{i}" for i in range(3)} | {"6-days"} <= ids(doc)
        assert "8-days" not in ids(doc)
        for path in (home / "history").rglob("*"):
            assert os.stat(path).st_mode & 0o077 == 0, path  # private, as the rest of the home
        server.client.delete(rid)
    finally:
        server.stop()


class Killer(ModelAdapter):
    """Doubles x; a row with x < 0 kills the replica while it handles the query."""

    def api(self) -> ModelApi:
        return ModelApi(inputs=[Tabular("input_df", [Column("x", float), Column("n", int)])],
                        outputs=[Tabular("output_df")])

    def predict(self, input_df: pd.DataFrame) -> pd.DataFrame:
        if (input_df["x"] < 0).any():
            os.kill(os.getpid(), signal.SIGKILL)
        return input_df.assign(y=input_df["x"] * 2)


def test_a_replica_that_dies_loses_no_record(server: Server, tmp_path: Path) -> None:
    c = server.client
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    path = tmp_path / "killer.pkl"
    path.write_bytes(cloudpickle.dumps(Killer()))
    c.create_objective("killer")
    c.submit("killer", path, name="k1")
    c.release("killer", "k1", "1.0", tag="production")
    rid = c.wait(c.deploy("killer", name="killer", replicas=1)["rid"], timeout=120)["rid"]
    capture(server, rid, capture="both", captureSample=1.0)
    node = c.deployment(rid)["status"]["replicas"][0]["nodeId"]
    for i in range(3):
        assert post(server, rid, [{"x": 1.5, "n": i}], f"live-{i}").status_code == 200
    resp = post(server, rid, [{"x": -1.0, "n": 7}], "kills")
    assert resp.status_code == 502 and resp.json()["errorName"] == "ReplicaFailed"
    by_id = {r["requestId"]: r for r in history(server, rid)["data"]}
    assert {"live-0", "live-1", "live-2", "kills"} <= set(by_id)
    record = by_id["kills"]
    assert record["status"] == 502 and record["response"] == resp.json()
    assert record["nodeId"] == node and record["release"] == "1.0"
    assert record["request"] == {"requestData": [{"x": -1.0, "n": 7}], "requestParams": {}}
    frame = Deployment(rid, c).history(status="2xx")
    assert frame["n"].dtype == "int64" and frame["x"].dtype == "float64"  # as declared
    assert sorted(frame["n"]) == [0, 1, 2] and (frame["output.y"] == 3.0).all()
    c.delete(rid)


def test_download_reads_back_as_the_schema(server: Server, deployed: str) -> None:
    buffer = io.BytesIO()
    server.client.download_history(deployed, buffer, since="1h")
    table = pq.read_table(io.BytesIO(buffer.getvalue()))
    assert table.schema.names[:6] == ["time", "deployment_rid", "release", "node_id",
                                      "request_id", "status"]
    times = table.column("time").to_pylist()
    assert times == sorted(times, reverse=True)  # newest first
    server.client.delete(deployed)


def test_sweep_merges_a_partitions_small_files_and_reads_see_each_record_once(
        tmp_path: Path) -> None:
    store = HistoryStore(tmp_path / "history")
    now = dt.datetime.combine(dt.date.today(), dt.time(12), dt.UTC)  # one day, whenever it runs
    record = {"time": now, "deployment_rid": "ri.x", "release": "1.0", "node_id": "n",
              "request_id": "", "status": 200, "latency_ms": 1.0, "api": "v1",
              "request": b'{"requestData": []}', "request_bytes": 19,
              "request_truncated": False, "response": None, "response_bytes": 0,
              "response_truncated": False, "token_id": None}
    for i in range(20):  # one flush each: 20 small files
        store.write([{**record, "request_id": f"r{i}", "time": now - dt.timedelta(seconds=i)}])
    folder = store.partition(now.date(), "ri.x")
    assert len(list(folder.glob("*.parquet"))) == 20
    store.sweep(now)
    assert len(list(folder.glob("*.parquet"))) == 1
    table = store.read("ri.x", now - dt.timedelta(minutes=1), now)
    assert table.column("request_id").to_pylist() == [f"r{i}" for i in range(20)]  # newest first
    assert table.column("request").to_pylist()[0] == '{"requestData": []}'
