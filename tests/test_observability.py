"""Service logs and metrics with real replicas: search, node filter, model logs, plots, Prometheus."""
from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import time

import pytest
import requests
from conftest import Loops, start_server, wait_for
from model_fixtures import Picky, save

from liveml_ext.client import LiveMLClientError

X = [{"x": 1.0}]
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def observed(tmp_path_factory):
    """A control plane sampling metrics every second, with a 2-replica model that logs."""
    home = tmp_path_factory.mktemp("obs")
    server = start_server(home / "home", args=("--metrics-interval", "1"))
    c = server.client
    c.create_objective("obs")
    c.submit("obs", save(Picky(), home / "picky.pkl"), name="p")
    c.release("obs", "p", "1.0", tag="production")
    rid = c.wait(c.deploy("obs", name="Observed")["rid"], timeout=120)["rid"]
    with Loops(server, rid, count=1, rows=X, field="y"):
        time.sleep(3.0)
    requests.post(server.infer_url(rid), json={"requestData": [{"x": -1}], "requestParams": {}},
                  headers=server.headers(), timeout=30)  # one InferenceFailure (400)
    time.sleep(1.5)
    yield server, rid
    server.stop()


def test_startup_story_and_model_logs_per_replica(observed):
    server, rid = observed
    c = server.client
    nodes = [r["nodeId"] for r in c.deployment(rid)["status"]["replicas"]]
    assert len(nodes) == 2
    for node in nodes:
        page = wait_for(lambda n=node: (p := c.logs(rid, f"tags.node_id:{n}", since="1h",
                                                     limit=10_000))["data"] and p,
                        what="replica logs")
        assert {r["node_id"] for r in page["data"]} == {node}
        messages = [r["message"] for r in page["data"]]
        for step in ("Replica listening", "Environment checked", "Loading model artifact",
                     "Model loaded", "Self-test prediction passed", "Replica ready"):
            assert any(m.startswith(step) for m in messages), (step, messages)
    # the model's own logging.getLogger("model-logger").info(...), found by free text
    page = c.logs(rid, '"predicting 1 rows"', since="1h", columns=["node_id", "logger", "message"])
    assert page["data"] and all(r["logger"] == "model-logger" for r in page["data"])
    assert set(page["data"][0]) == {"node_id", "logger", "message"}
    assert {r["node_id"] for r in page["data"]} <= set(nodes)


def test_control_plane_events_are_log_records(observed):
    server, rid = observed
    page = server.client.logs(rid, "tags.node_id:control-plane", since="1h", limit=200)
    messages = [r["message"] for r in page["data"]]
    assert any("is ready" in m for m in messages) and any("ACTIVE" in m for m in messages)


def test_query_language_paging_and_errors(observed):
    server, rid = observed
    c = server.client
    # one fixed window for both reads: a record shipped in between must not tell them apart
    now = dt.datetime.now(dt.UTC)
    window = {"start": (now - dt.timedelta(hours=1)).isoformat(), "end": now.isoformat()}
    everything = c.logs(rid, limit=10_000, **window)["data"]
    seen, token = [], None
    while True:
        page = c.logs(rid, limit=7, page_token=token, **window)
        seen += page["data"]
        token = page["nextPageToken"]
        if not token:
            break
    assert seen == everything and len(seen) > 7
    times = [r["time"] for r in seen]
    assert times == sorted(times, reverse=True)
    infos = c.logs(rid, "level:info AND NOT logger:model-logger", since="1h", limit=10_000)["data"]
    assert infos and all(r["level"] == "INFO" and r["logger"] != "model-logger" for r in infos)
    either = c.logs(rid, '(logger:model-logger OR "Replica ready")', since="1h",
                    limit=10_000)["data"]
    assert {r["logger"] for r in either} >= {"model-logger", "liveml.replica"}
    future = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).isoformat()
    assert c.logs(rid, start=future, end=future.replace("+00:00", "Z"))["data"] == []
    for bad in ("(level:INFO", 'message:"unclosed', "level:INFO AND", "AND OR"):
        with pytest.raises(LiveMLClientError) as err:
            c.logs(rid, bad, since="1h")
        assert err.value.status == 400 and err.value.name == "InvalidLogQuery"
        assert "position" in err.value.parameters
    with pytest.raises(LiveMLClientError) as err:
        c.logs(rid, since="soon")
    assert err.value.status == 400 and err.value.parameters["field"] == "since"
    for path in ("logs", "events"):  # a bad limit is the caller's error, never a 500
        for limit in ("many", "0", "-1", "10001", "2.5"):
            with pytest.raises(LiveMLClientError) as err:
                c.api("GET", f"deployments/{rid}/{path}", params={"limit": limit})
            assert (err.value.status, err.value.name) == (400, "InvalidArgument"), (path, limit)
            assert err.value.parameters["field"] == "limit"
    assert len(c.events(rid, limit=2)) == 2


def test_cli_logs_download_and_errors(observed, tmp_path):
    server, rid = observed

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "liveml_ext.cli", *args], env=server.env(),
                              capture_output=True, text=True, timeout=120)

    out = cli("logs", rid, "--query", "Self-test", "--since", "1h", "--columns",
              "node_id,message")
    assert out.returncode == 0 and out.stdout.count("Self-test prediction passed") == 2
    target = tmp_path / "logs.txt"
    now = dt.datetime.now(dt.UTC)
    start, end = (now - dt.timedelta(hours=1)).isoformat(), now.isoformat()
    out = cli("logs", rid, "--start", start, "--end", end, "--download", str(target))
    assert out.returncode == 0, out.stderr
    lines = target.read_text().splitlines()
    total = len(server.client.logs(rid, start=start, end=end, limit=10_000)["data"])
    assert len(lines) == total + 1  # a header, then every record
    bad = cli("logs", rid, "--query", "level:(")
    assert bad.returncode == 1 and "InvalidLogQuery" in bad.stderr and "position" in bad.stderr


def test_metrics_per_replica_with_plausible_values_and_plot(observed, tmp_path):
    server, rid = observed
    c = server.client
    nodes = {r["nodeId"] for r in c.deployment(rid)["status"]["replicas"]}

    def sampled() -> list[dict] | None:
        """The requests' metrics once the sampler has counted the fixture's 400 (it samples
        every second, later on a busy machine)."""
        reqs = c.metrics(rid, kind="requests", since="10m")
        return reqs if sum(r["value"] for r in reqs if r["name"] == "status_400"
                           and r["nodeId"] == "*") >= 1 else None

    reqs = wait_for(sampled, timeout=30, what="the 400 in the request metrics")
    container = c.metrics(rid, kind="container", since="10m")
    by_node = {}
    for row in container:
        by_node.setdefault(row["nodeId"], {}).setdefault(row["name"], []).append(row["value"])
    assert set(by_node) == nodes
    for values in by_node.values():
        # a sample may catch a replica just started; once serving it holds pandas and sklearn
        assert all(0 < v < 2 * 2**30 for v in values["memory_bytes"])
        assert values["memory_bytes"][-1] > 40 * 2**20
        assert all(0 <= v <= 4 for v in values["cpu_cores"])
    host = c.metrics(rid, kind="host", since="10m")
    assert {r["name"] for r in host} == {"cpu_percent", "memory_percent"}
    assert all(0 <= r["value"] <= 100 for r in host)
    total = sum(r["value"] for r in reqs if r["nodeId"] == "*" and r["name"] == "count")
    assert total > 10
    assert sum(r["value"] for r in reqs if r["name"] == "status_400" and r["nodeId"] == "*") == 1
    assert any(r["name"] == "p99_ms" and r["value"] > 0 for r in reqs)
    assert {r["nodeId"] for r in reqs} >= nodes | {"*"}
    one = next(iter(nodes))
    assert {r["nodeId"] for r in c.metrics(rid, kind="container", node=one, since="10m")} == {one}
    png = tmp_path / "container.png"
    out = subprocess.run([sys.executable, "-m", "liveml_ext.cli", "metrics", rid, "--kind",
                          "container", "--since", "10m", "--plot", str(png)], env=server.env(),
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert png.read_bytes()[:8] == PNG and png.stat().st_size > 5000
    with pytest.raises(LiveMLClientError) as err:
        c.metrics(rid, kind="disk")
    assert err.value.status == 400


def test_prometheus_endpoint(observed):
    server, rid = observed
    resp = requests.get(f"{server.url}liveml/api/metrics", headers=server.headers(), timeout=30)
    assert resp.status_code == 200 and resp.headers["Content-Type"].startswith("text/plain")
    assert f'liveml_inference_requests_total{{code="200",deployment="{rid}"' in resp.text
    assert "liveml_inference_latency_seconds_bucket" in resp.text
    assert requests.get(f"{server.url}liveml/api/metrics", timeout=30).status_code == 401


def test_logs_survive_a_restart_and_old_records_are_swept(tmp_path, house_model):
    home = tmp_path / "home"
    server = start_server(home)
    try:
        c = server.client
        c.create_objective("keep")
        c.submit("keep", house_model, name="m")
        c.release("keep", "m", "1", tag="production")
        rid = c.wait(c.deploy("keep", name="Keep", replicas=1)["rid"])["rid"]
        wait_for(lambda: c.logs(rid, '"Replica ready"', since="1h")["data"], what="logs")
    finally:
        server.stop()
    server = start_server(home)
    try:
        c = server.client
        ready = c.logs(rid, '"Replica ready"', since="1h")["data"]
        assert len(ready) >= 1  # the first run's records are still there
        # records older than the retention go at the sweep
        from liveml_ext.observability.logstore import LogStore

        old = (dt.datetime.now(dt.UTC) - dt.timedelta(days=8)).isoformat()
        store = LogStore(home / "logs.db")
        store.append([{"time": old, "level": "INFO", "logger": "x", "message": "ancient record",
                       "tags": {"node_id": "n", "deployment_rid": rid}}])
        assert c.logs(rid, '"ancient record"', since="9d")["data"]
        assert store.sweep() >= 1
        store.close()
        assert c.logs(rid, '"ancient record"', since="9d")["data"] == []
        assert c.logs(rid, '"Replica ready"', since="1h")["data"]
    finally:
        server.stop()
    assert json.loads((home / "connection.json").read_text())["url"]
