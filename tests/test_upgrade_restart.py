"""Auto-upgrade with zero failed queries under a steady loop, and recovery after a restart."""
from __future__ import annotations

import time

import joblib
import requests
from conftest import (
    ROW,
    QueryLoop,
    deploy_reference,
    pids_alive,
    replica_pids,
    start_server,
    wait_for,
)
from model_fixtures import Offset, save


def test_auto_upgrade_drops_no_query(server, house_model, tmp_path):
    c = server.client
    rid = deploy_reference(server, house_model, "upgrade", "Upgrade")["rid"]
    old_pids = replica_pids(server.home)
    loops = [QueryLoop(server, rid) for _ in range(2)]
    for loop in loops:
        loop.start()
    time.sleep(1.0)

    shifted = save(Offset(joblib.load(house_model), 1_000_000.0), tmp_path / "shifted.pkl")
    c.submit("upgrade", shifted, name="v2")
    c.release("upgrade", "v2", "2.0", tag="production")  # the tag moves: the deployment follows

    def upgraded() -> bool:
        doc = c.deployment(rid)
        reps = doc["status"]["replicas"]
        return (doc["release"]["version"] == "2.0" and doc["status"]["state"] == "ACTIVE"
                and len(reps) == 2 and all(r["releaseVersion"] == "2.0" for r in reps))

    wait_for(upgraded, timeout=120, what="the upgrade to release 2.0")
    wait_for(lambda: not pids_alive(old_pids), timeout=60, what="old replicas to stop")
    time.sleep(1.0)
    for loop in loops:
        loop.stop.set()
        loop.join(30)

    results = [r for loop in loops for r in loop.results]
    failures = [r for loop in loops for r in loop.failures()]
    assert len(results) > 50, "the query loop hardly ran"
    assert failures == [], f"{len(failures)} of {len(results)} queries failed: {failures[:5]}"
    first, last = results[0][1], results[-1][1]
    assert last - first == 1_000_000.0, "the new release did not take the traffic"
    doc = c.deployment(rid)
    assert doc["targetRelease"]["version"] == "2.0" and doc["rid"] == rid


def test_state_survives_a_control_plane_restart(tmp_path, house_model):
    home = tmp_path / "home"
    server = start_server(home)
    try:
        doc = deploy_reference(server, house_model, "restart", "Restart me")
        rid, api_name = doc["rid"], doc["apiName"]
        pids = replica_pids(home)
        assert len(pids) == 2
    finally:
        server.stop()
    # the replicas go with their control plane
    wait_for(lambda: not pids_alive(pids), what="replicas to stop with the control plane")

    server = start_server(home)
    try:
        doc = server.client.wait(rid, timeout=120)
        assert doc["rid"] == rid and doc["apiName"] == api_name
        assert doc["status"]["state"] == "ACTIVE" and doc["status"]["readyReplicas"] == 2
        resp = requests.post(server.infer_url(rid), json={"requestData": [ROW], "requestParams": {}},
                             headers=server.headers(), timeout=30)
        assert resp.status_code == 200
        assert server.client.releases("restart")[0]["tag"] == "PRODUCTION"
    finally:
        server.stop()
    wait_for(lambda: not replica_pids(home), what="replicas to stop")


def test_control_plane_killed_hard_takes_its_replicas(tmp_path, house_model):
    home = tmp_path / "home"
    server = start_server(home)
    try:
        deploy_reference(server, house_model, "kill", "Kill me", replicas=1)
        pids = replica_pids(home)
        assert pids
    finally:
        server.proc.kill()
        server.proc.wait()
    wait_for(lambda: not pids_alive(pids), what="orphaned replicas to exit")
