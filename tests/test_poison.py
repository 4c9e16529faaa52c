"""A poison query (issue 13, point 2): it must cost at most one replica, never the deployment.

12,000 rows each with a key of its own once made the rows -> frame conversion quadratic, the
replica passed its memory limit, and the gateway resent the query to the next replica when the
connection broke, until every replica was dead. Now such a query is a clean 400 (columns per
request are bounded), and the gateway resends a query only when no replica received it.
"""
from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import cloudpickle
import orjson
import pandas as pd
import pytest
import requests
from conftest import ROW, free_port, pids_alive, query, runtime_pids, terminate, wait_for

from liveml_ext import Column, ModelAdapter, ModelApi, Tabular
from liveml_ext.core.errors import ReplicaFailed
from liveml_ext.gateway.pool import Gateway, Pool

POISON = [{**ROW, f"key-{i}": i} for i in range(12_000)]  # ~0.9 MB, 12,003 distinct keys


class Bomb(ModelAdapter):
    """Doubles x; a row with x < 0 makes the replica die while it handles the request."""

    def api(self) -> ModelApi:
        return ModelApi(inputs=[Tabular("input_df", [Column("x", float)])],
                        outputs=[Tabular("output_df")])

    def predict(self, input_df: pd.DataFrame) -> pd.DataFrame:
        if (input_df["x"] < 0).any():
            self.die()
        return input_df.assign(y=input_df["x"] * 2, pid=os.getpid())

    def die(self) -> None:
        """Go past the memory limit (1 GiB, every page written) and wait to be killed."""
        held = [b"\1" * (64 << 20) for _ in range(16)]
        time.sleep(120)
        del held


class Suicide(Bomb):
    def die(self) -> None:
        os.kill(os.getpid(), signal.SIGKILL)


def save(model: ModelAdapter, path: Path) -> Path:
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    path.write_bytes(cloudpickle.dumps(model))
    return path


def post(server, rid: str, rows: list) -> requests.Response:
    return requests.post(server.infer_url(rid), data=orjson.dumps({"requestData": rows}),
                         headers={**server.headers(), "Content-Type": "application/json"},
                         timeout=120)


@pytest.fixture(scope="module")
def houses(server, house_model) -> str:
    """Two replicas of the house model under a small memory limit."""
    c = server.client
    c.create_objective("poison")
    c.submit("poison", house_model, name="v1")
    c.release("poison", "v1", "1.0", tag="production")
    doc = c.deploy("poison", name="Poisoned", replicas=2, runtime={"memory": "384MiB"})
    return c.wait(doc["rid"], timeout=120)["rid"]


def test_the_poison_query_is_a_clean_400_and_costs_no_replica(server, houses):
    before = runtime_pids(houses)
    assert len(before) == 2
    resp = post(server, houses, POISON)
    assert resp.status_code == 400, resp.text
    doc = resp.json()
    assert doc["errorName"] == "InferenceInvalidInput"
    error = doc["parameters"]["errorType"]
    assert error == {"type": "tooManyColumns", "input": "input_df", "columns": 12_003,
                     "maxColumns": 1000}
    assert "12003" in doc["parameters"]["message"] and "1000" in doc["parameters"]["message"]
    # within the limit, keys that most rows lack would still make the frame 1000x the body
    resp = post(server, houses, [{**ROW, f"key-{i % 997}": i} for i in range(12_000)])
    assert resp.status_code == 400, resp.text
    assert resp.json()["parameters"]["errorType"] == {
        "type": "sparseRows", "input": "input_df", "rows": 12_000, "undeclaredColumns": 997,
        "values": 48_000}
    # as many columns as the limit, in every row, still serve (the frame is linear in the body)
    rows = [{**ROW, **{f"key-{k}": i for k in range(997)}} for i in range(100)]
    resp = post(server, houses, rows)
    assert resp.status_code == 200, resp.text
    assert len(resp.json()["responseData"]) == 100
    assert sorted(runtime_pids(houses)) == sorted(before)
    status = server.client.deployment(houses)["status"]
    assert status["state"] == "ACTIVE" and status["readyReplicas"] == 2
    assert query(server, houses).status_code == 200


def test_the_column_limit_is_a_setting_of_the_deployment(server, houses):
    """``LIVEML_MAX_COLUMNS`` in the deployment's env sets it (never under twice the declared
    columns: the house model declares 3, so 5 means 6)."""
    c = server.client
    c.update(houses, runtimeConfiguration={"env": {"LIVEML_MAX_COLUMNS": "5"}})
    c.wait(houses, timeout=120)
    extra = {"a": 1, "b": 2, "c": 3}
    assert post(server, houses, [{**ROW, **extra}]).status_code == 200
    resp = post(server, houses, [{**ROW, **extra}, {**ROW, "d": 4}])
    assert resp.status_code == 400, resp.text
    assert resp.json()["parameters"]["errorType"] == {
        "type": "tooManyColumns", "input": "input_df", "columns": 7, "maxColumns": 6}


def test_a_replica_dying_of_a_query_costs_that_replica_only(server, tmp_path):
    """Over its memory limit mid-request, a replica is killed; the query is not resent."""
    c = server.client
    c.create_objective("bomb")
    c.submit("bomb", save(Bomb(), tmp_path / "bomb.pkl"), name="b")
    c.release("bomb", "b", "1", tag="production")
    doc = c.deploy("bomb", name="Bomb", replicas=2, runtime={"memory": "384MiB"})
    rid = c.wait(doc["rid"], timeout=120)["rid"]
    before = runtime_pids(rid)
    assert len(before) == 2
    for _ in range(4):  # every replica answers, so the gateway holds pooled connections
        assert post(server, rid, [{"x": 1.0}]).status_code == 200

    resp = post(server, rid, [{"x": -1.0}])
    assert resp.status_code == 502, resp.text
    doc = resp.json()
    assert doc["errorName"] == "ReplicaFailed" and doc["parameters"]["deploymentRid"] == rid
    assert "was not sent to another replica" in doc["parameters"]["message"]
    survivors = wait_for(lambda: (alive := pids_alive(before)) and len(alive) == 1 and alive,
                         timeout=30, what="the killed replica to be gone")
    # the other replica keeps answering, and the deployment gets its second replica back
    for _ in range(5):
        resp = post(server, rid, [{"x": 2.0}])
        assert resp.status_code == 200, resp.text
    doc = c.wait(rid, timeout=120)
    assert doc["status"]["state"] == "ACTIVE" and doc["status"]["readyReplicas"] == 2
    assert pids_alive(survivors) == survivors
    c.delete(rid)


# --- the gateway on its own, with replica processes it did not start --------------------------
def start_replica(artifact: Path, tmp: Path) -> tuple[subprocess.Popen, str]:
    port_file = tmp / f"{artifact.stem}-{len(list(tmp.iterdir()))}.port"
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVEML_")}
    proc = subprocess.Popen([sys.executable, "-m", "liveml_runtime", "serve", "--artifact",
                             str(artifact), "--port-file", str(port_file)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(port_file.exists, timeout=60, what="the replica's port")
    url = f"http://127.0.0.1:{port_file.read_text()}"

    def ready() -> bool:
        assert proc.poll() is None, "the replica exited"
        try:
            return requests.get(f"{url}/health/ready", timeout=5).status_code == 200
        except requests.ConnectionError:
            return False

    wait_for(ready, timeout=60, what="the replica to be ready")
    return proc, url


@pytest.fixture
def replicas(tmp_path) -> Iterator[list[tuple[subprocess.Popen, str]]]:
    artifact = save(Suicide(), tmp_path / "suicide.pkl")
    procs = [start_replica(artifact, tmp_path) for _ in range(2)]
    yield procs
    for proc, _ in procs:
        terminate(proc)


def test_the_gateway_resends_only_what_no_replica_received(replicas):
    (first, first_url), (second, second_url) = replicas
    body = orjson.dumps({"requestData": [{"x": 1.0}]})

    async def scenario() -> None:
        gateway = Gateway(timeout=60)
        # connection refused: nothing was received, so another replica takes the query
        refused = Pool("rid", "default")
        refused.add("gone", f"http://127.0.0.1:{free_port()}")
        refused.add("alive", first_url)
        for _ in range(2):  # round robin: one of the two tries the closed port first
            status, data, node = await gateway.forward(refused, body, v2=False)
            assert (status, node) == (200, "alive"), data
        assert [m.served for m in refused.members] == [0, 2]
        # a replica that dies while handling the query: a 502, never a second victim
        pool = Pool("rid", "default")
        pool.add("a", first_url)
        pool.add("b", second_url)
        for _ in range(2):
            assert (await gateway.forward(pool, body, v2=False))[0] == 200  # pooled, warm
        with pytest.raises(ReplicaFailed) as info:
            await gateway.forward(pool, orjson.dumps({"requestData": [{"x": -1.0}]}), v2=False)
        assert info.value.status == 502 and info.value.parameters["nodeId"] in ("a", "b")
        await gateway.close()

    asyncio.run(scenario())
    wait_for(lambda: first.poll() is not None or second.poll() is not None, timeout=30,
             what="the replica that took the query to die")
    assert [first.poll() is None, second.poll() is None].count(True) == 1  # the other lives


def test_a_batch_call_that_kills_its_replica_is_not_resent(replicas):
    """Under load the gateway sends waiting queries together (one batch call): when the batch
    carrying the poison row kills its replica, every query of that call gets the 502 naming
    it, none is sent to the other replica, and the other replica lives."""
    (first, first_url), (second, second_url) = replicas
    fine, poison = orjson.dumps({"requestData": [{"x": 1.0}]}), orjson.dumps(
        {"requestData": [{"x": -1.0}]})

    async def scenario() -> list:
        gateway = Gateway(timeout=60)
        pool = Pool("rid", "default")
        pool.add("a", first_url)
        pool.add("b", second_url)
        queries = [fine] * 40 + [poison]
        try:
            return await asyncio.gather(*(gateway.forward(pool, q, v2=False) for q in queries),
                                        return_exceptions=True)
        finally:
            await gateway.close()

    answers = asyncio.run(scenario())
    failed = [a for a in answers if isinstance(a, BaseException)]
    assert failed and all(isinstance(a, ReplicaFailed) for a in failed), failed
    assert len(failed) > 1  # the poison's batch companions: received, so not resent
    dead = {a.parameters["nodeId"] for a in failed}
    assert len(dead) == 1
    assert all(a[0] == 200 for a in answers if not isinstance(a, BaseException))
    wait_for(lambda: first.poll() is not None or second.poll() is not None, timeout=30,
             what="the replica that took the poison to die")
    assert [first.poll() is None, second.poll() is None].count(True) == 1  # the other lives
