"""The spine end to end: registry, deploy, query, API name, disable/enable, delete — real processes."""
from __future__ import annotations

import json
import subprocess
import sys

import joblib
import pytest
import requests
from conftest import ROW, deploy_reference, pids_alive, query, replica_pids, start_server, wait_for
from pg import server_args

from liveml_ext.client import LiveMLClientError

RID_PREFIX = "ri.foundry-ml-live.main.live-deployment."


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def server(request, tmp_path_factory):
    """This module's control plane, once on SQLite in its home and once on a real PostgreSQL:
    every test here runs against both stores."""
    s = start_server(tmp_path_factory.mktemp("home"), args=server_args(request, request.param))
    yield s
    s.stop()


def test_registry_submissions_releases_and_tags(server, house_model):
    c = server.client
    obj = c.create_objective("registry", description="tags")
    assert obj["rid"].startswith("ri.models.main.objective.")
    with pytest.raises(LiveMLClientError) as err:
        c.create_objective("registry")
    assert err.value.status == 409 and err.value.name == "ObjectiveAlreadyExists"

    sub = c.submit("registry", house_model, name="ridge")
    columns = sub["api"]["inputs"][0]["columns"]
    assert [(col["name"], col["type"]) for col in columns] == [
        ("house-location", "string"), ("bedrooms", "double"), ("bathrooms", "double")]
    assert sub["api"]["inputs"][0]["name"] == "input_df"
    assert sub["api"]["outputs"][0]["name"] == "output_df"
    assert set(sub["requirements"]) >= {"scikit-learn", "numpy"}

    c.release("registry", "ridge", "1.0", note="first", tag="staging")
    rel = c.release("registry", "ridge", "1.1", tag="staging")
    assert c.release("registry", "ridge", "1.1") == rel  # a retry (409s: test_a_second_release_...)
    tags = {r["version"]: r["tag"] for r in c.releases("registry")}
    assert tags == {"1.0": None, "1.1": "STAGING"}  # one release holds a tag at a time

    c.promote("registry", "1.0")
    c.promote("registry", "1.1")
    tags = {r["version"]: r["tag"] for r in c.releases("registry")}
    assert tags == {"1.0": None, "1.1": "PRODUCTION"}
    history = c.api("GET", "objectives/registry/tag-history")["data"]
    assert [(h["version"], h["tag"]) for h in history] == [
        ("1.0", "STAGING"), ("1.1", "STAGING"), ("1.0", "PRODUCTION"), ("1.1", "PRODUCTION")]
    with pytest.raises(LiveMLClientError) as err:
        c.promote("registry", "9.9")
    assert err.value.status == 404 and err.value.name == "ReleaseNotFound"


def test_submit_rejects_a_file_that_is_not_a_model(server, tmp_path):
    c = server.client
    c.create_objective("junk")
    bad = tmp_path / "junk.joblib"
    bad.write_bytes(b"not a pickle at all")
    with pytest.raises(LiveMLClientError) as err:
        c.submit("junk", bad)
    assert err.value.status == 400 and err.value.name == "InvalidModelArtifact"
    assert "could not be loaded" in str(err.value)
    assert c.submissions("junk") == []


def test_deploy_needs_a_release_with_the_tag(server, house_model):
    c = server.client
    c.create_objective("untagged")
    c.submit("untagged", house_model, name="v1")
    c.release("untagged", "v1", "1.0")  # no tag
    with pytest.raises(LiveMLClientError) as err:
        c.deploy("untagged", name="nope", environment="staging")
    assert err.value.status == 400 and err.value.name == "NoReleaseWithTag"
    assert "liveml release" in str(err.value)
    assert c.deployments() == [] or all(d["name"] != "nope" for d in c.deployments())


def test_deploy_query_rename_disable_enable_delete(server, house_model):
    c = server.client
    doc = deploy_reference(server, house_model, "houses", "House prices")
    rid = doc["rid"]
    assert rid.startswith(RID_PREFIX)
    assert doc["apiName"] == "house-prices"
    status = doc["status"]
    assert status["state"] == "ACTIVE" and status["isReady"] is True
    assert status["readyReplicas"] == 2 and len({r["nodeId"] for r in status["replicas"]}) == 2
    assert all(r["health"] == "HEALTHY" and r["releaseVersion"] == "1.0" for r in status["replicas"])
    assert doc["release"]["version"] == "1.0"
    config = doc["runtimeConfiguration"]
    assert {k: config[k] for k in ("minReplicas", "maxReplicas", "cpu", "memory", "gpu",
                                   "threadCount")} == {"minReplicas": 2, "maxReplicas": 2,
                                                       "cpu": 1.0, "memory": "1GiB", "gpu": 0,
                                                       "threadCount": 1}
    assert len(replica_pids(server.home)) == 2

    # v1 and v2 queries, exactly the platform's shapes
    resp = query(server, rid)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert set(body) == {"modelUuid", "responseData"}
    assert body["responseData"][0]["house-location"] == "New York"
    assert 500_000 < body["responseData"][0]["prediction"] < 2_000_000
    resp = requests.post(server.infer_url(rid, v2=True), json={"input_df": [ROW, ROW]},
                         headers=server.headers(), timeout=30)
    assert resp.status_code == 200
    assert len(resp.json()["output_df"]) == 2
    assert resp.json()["output_df"][0]["prediction"] == body["responseData"][0]["prediction"]

    # API name: unique in the namespace (409), changeable, usable as a reference
    c.create_objective("other")
    c.submit("other", house_model, name="v1")
    c.release("other", "v1", "1.0", tag="production")
    with pytest.raises(LiveMLClientError) as err:
        c.deploy("other", name="Clash", api_name="house-prices", replicas=1)
    assert err.value.status == 409 and err.value.name == "ApiNameAlreadyExists"
    renamed = c.set_api_name(rid, "houses-v1")
    assert renamed["apiName"] == "houses-v1" and renamed["rid"] == rid
    assert c.deployment("houses-v1")["rid"] == rid
    assert c.deployment("House prices")["rid"] == rid

    # disable: RID kept, replicas stopped, queries get 503 in the envelope
    pids = replica_pids(server.home)
    disabled = c.disable("houses-v1")
    assert disabled["rid"] == rid and disabled["status"]["state"] == "DISABLED"
    assert not disabled["status"]["isReady"]
    resp = query(server, rid)
    assert resp.status_code == 503
    assert resp.json()["errorName"] == "ServiceUnavailable"
    assert "disabled" in resp.json()["parameters"]["message"]
    wait_for(lambda: not pids_alive(pids), what="replicas to stop")

    # enable: the latest release for the tag serves again under the same RID
    c.enable(rid)
    doc = c.wait(rid, timeout=60)
    assert doc["rid"] == rid and doc["status"]["state"] == "ACTIVE"
    assert query(server, rid).status_code == 200

    # delete: 404 for good, replicas gone
    pids = replica_pids(server.home)
    c.delete(rid)
    for _ in range(2):
        resp = query(server, rid)
        assert resp.status_code == 404
        assert resp.json()["errorName"] == "LiveDeploymentNotFound"
    with pytest.raises(LiveMLClientError) as err:
        c.deployment(rid)
    assert err.value.status == 404 and err.value.name == "LiveDeploymentNotFound"
    wait_for(lambda: not pids_alive(pids), what="replicas to stop after delete")


def test_cli_end_to_end(server, house_model):
    """The README's flow through the `liveml` command, finding the server by its connection file."""
    def cli(*args: str, ok: bool = True) -> subprocess.CompletedProcess:
        proc = subprocess.run([sys.executable, "-m", "liveml_ext.cli", *args], env=server.env(),
                              capture_output=True, text=True, timeout=180)
        assert (proc.returncode == 0) == ok, proc.stdout + proc.stderr
        return proc

    cli("objective", "create", "cli-houses")
    assert "cli-houses" in cli("objective", "list").stdout
    sub = json.loads(cli("submit", "cli-houses", str(house_model), "--name", "m1", "--json").stdout)
    assert sub["name"] == "m1"
    cli("release", "cli-houses", "m1", "--version", "1.0", "--tag", "staging")
    cli("promote", "cli-houses", "1.0")
    out = cli("deploy", "cli-houses", "--name", "CLI houses", "--replicas", "1", "--wait").stdout
    assert "ACTIVE" in out
    ls = json.loads(cli("ls", "--json").stdout)
    assert any(d["apiName"] == "cli-houses" for d in ls)
    res = json.loads(cli("query", "cli-houses", "--data", json.dumps([ROW]), "--json").stdout)
    assert res["responseData"][0]["prediction"] > 0
    res = json.loads(cli("query", "cli-houses", "--v2", "--data",
                         json.dumps({"input_df": [ROW]}), "--json").stdout)
    assert "output_df" in res
    bad = cli("query", "cli-houses", "--data", json.dumps([{"bedrooms": 1}]), ok=False)
    assert "InferenceInvalidInput" in bad.stderr and "requiredValueMissing" in bad.stderr
    status = cli("status", "cli-houses").stdout
    assert "ACTIVE" in status and "replica" in status
    token = json.loads(cli("token", "create", "--scope", "query", "--json").stdout)["token"]
    resp = requests.post(
        server.infer_url(next(d["rid"] for d in ls if d["apiName"] == "cli-houses")),
        json={"requestData": [ROW], "requestParams": {}},
        headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert resp.status_code == 200
    # a query token cannot manage
    denied = requests.post(f"{server.url}liveml/api/objectives", json={"name": "x"},
                           headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert denied.status_code == 403 and denied.json()["errorName"] == "PermissionDenied"
    cli("api-name", "cli-houses", "cli-houses-2")
    cli("disable", "cli-houses-2")
    cli("enable", "cli-houses-2")
    cli("delete", "cli-houses-2")
    gone = cli("status", "cli-houses-2", ok=False)
    assert "LiveDeploymentNotFound" in gone.stderr


def _post(server, path: str, body: dict) -> requests.Response:
    return requests.post(f"{server.url}liveml/api/{path}", json=body, headers=server.headers(),
                         timeout=120)


def _upload(server, data: bytes) -> str:
    resp = requests.put(f"{server.url}liveml/api/artifacts", data=data,
                        headers={**server.headers(), "Content-Type": "application/octet-stream"},
                        timeout=60)
    assert resp.status_code == 201, resp.text
    return resp.json()["artifactId"]


def test_a_second_submission_of_a_name_is_a_retry_or_a_conflict(server, house_model, tmp_path):
    server.client.create_objective("dup-subs")
    same = _upload(server, house_model.read_bytes())
    other_file = tmp_path / "other.joblib"  # the same model, other bytes: another artifact
    joblib.dump(joblib.load(house_model), other_file, compress=3)
    other = _upload(server, other_file.read_bytes())
    assert other != same

    first = _post(server, "objectives/dup-subs/submissions", {"artifactId": same, "name": "ridge"})
    assert first.status_code == 201, first.text
    retry = _post(server, "objectives/dup-subs/submissions", {"artifactId": same, "name": "ridge"})
    assert retry.status_code == 200, retry.text
    assert retry.json() == first.json()  # the same submission: RID, model uuid, time

    clash = _post(server, "objectives/dup-subs/submissions", {"artifactId": other, "name": "ridge"})
    assert clash.status_code == 409, clash.text
    env = clash.json()
    assert env["errorName"] == "SubmissionAlreadyExists" and env["errorCode"] == "CONFLICT"
    message = env["parameters"]["message"]
    assert first.json()["rid"] in message and "'ridge'" in message
    assert first.json()["createdAt"][:10] in message
    assert "'ridge-2'" in message and "release the existing one" in message
    assert env["parameters"]["submissionRid"] == first.json()["rid"]
    assert [s["name"] for s in server.client.submissions("dup-subs")] == ["ridge"]

    # no name: a made-up one, never one that is taken
    _post(server, "objectives/dup-subs/submissions", {"artifactId": other, "name": "submission-2"})
    unnamed = [_post(server, "objectives/dup-subs/submissions", {"artifactId": same})
               for _ in range(2)]
    assert [r.status_code for r in unnamed] == [201, 201]
    names = [s["name"] for s in server.client.submissions("dup-subs")]
    assert len(names) == len(set(names)) == 4, names
    assert {r.json()["name"] for r in unnamed} == set(names) - {"ridge", "submission-2"}


def test_a_second_release_of_a_version_is_a_retry_or_a_conflict(server, house_model, tmp_path):
    c = server.client
    c.create_objective("dup-rels")
    c.submit("dup-rels", house_model, name="ridge")
    other_file = tmp_path / "other.joblib"
    joblib.dump(joblib.load(house_model), other_file, compress=3)
    c.submit("dup-rels", other_file, name="lasso")

    first = _post(server, "objectives/dup-rels/releases",
                  {"submission": "ridge", "version": "1.0", "tag": "STAGING"})
    assert first.status_code == 201, first.text
    c.release("dup-rels", "ridge", "1.1", tag="staging")  # the tag moves on to 1.1

    # the same submission and version again: that release, and its tag did not move back
    retry = _post(server, "objectives/dup-rels/releases",
                  {"submission": "ridge", "version": "1.0", "tag": "STAGING"})
    assert retry.status_code == 200, retry.text
    assert retry.json()["rid"] == first.json()["rid"] and retry.json()["tag"] is None
    assert {r["version"]: r["tag"] for r in c.releases("dup-rels")} == {"1.0": None,
                                                                        "1.1": "STAGING"}
    history = c.api("GET", "objectives/dup-rels/tag-history")["data"]
    assert [(h["version"], h["tag"]) for h in history] == [("1.0", "STAGING"), ("1.1", "STAGING")]

    clash = _post(server, "objectives/dup-rels/releases", {"submission": "lasso", "version": "1.1"})
    assert clash.status_code == 409, clash.text
    env = clash.json()
    assert env["errorName"] == "ReleaseVersionAlreadyExists"
    message = env["parameters"]["message"]
    ridge = next(s for s in c.submissions("dup-rels") if s["name"] == "ridge")
    assert "'ridge'" in message and ridge["rid"] in message and "'1.2'" in message
    assert env["parameters"]["submission"] == "ridge"
    assert len(c.releases("dup-rels")) == 2


def test_a_home_with_duplicate_submission_names_starts_and_uses_the_newest(house_model, tmp_path):
    """A home from before names were unique may hold two `ridge`: it starts, `ridge` is the
    newest, and a retry with the newest's artifact is that one."""
    import sqlite3

    home = tmp_path / "home"
    server = start_server(home)
    try:
        c = server.client
        c.create_objective("old")
        old = c.submit("old", house_model, name="ridge")
    finally:
        server.stop()
    db = sqlite3.connect(home / "liveml.db")
    with db:
        columns = [r[1] for r in db.execute("PRAGMA table_info(submissions)")]
        row = dict(zip(columns, db.execute("SELECT * FROM submissions").fetchone()))
        newer_rid = old["rid"][:-12] + "0123456789ab"
        row.update(rid=newer_rid, artifact_sha256="f" * 64,
                   created_at="2999-01-01 00:00:00.000000")
        db.execute(f"INSERT INTO submissions ({','.join(columns)}) "
                   f"VALUES ({','.join('?' * len(columns))})", [row[k] for k in columns])
    db.close()

    server = start_server(home)
    try:
        c = server.client
        assert [s["rid"] for s in c.submissions("old")] == [old["rid"], newer_rid]
        assert c.release("old", "ridge", "1.0")["submissionRid"] == newer_rid
        retry = _post(server, "objectives/old/submissions",
                      {"artifactId": "f" * 64, "name": "ridge"})
        assert retry.status_code == 200 and retry.json()["rid"] == newer_rid, retry.text
        clash = _post(server, "objectives/old/submissions",
                      {"artifactId": old["artifactSha256"], "name": "ridge"})
        assert clash.status_code == 409 and newer_rid in clash.json()["parameters"]["message"]
        assert len(c.submissions("old")) == 2
    finally:
        server.stop()


def test_text_a_store_cannot_hold_is_a_400_naming_the_field(server, house_model):
    """PostgreSQL refuses a NUL character and a string longer than its column (a 500 once);
    both stores answer 400 InvalidArgument naming the field, and keep nothing."""
    c = server.client
    resp = _post(server, "objectives", {"name": "nul-text", "description": "a\u0000b"})
    assert resp.status_code == 400, resp.text
    env = resp.json()
    assert env["errorName"] == "InvalidArgument" and env["parameters"]["field"] == "description"
    assert "NUL" in env["parameters"]["message"]
    assert "nul-text" not in {o["name"] for o in c.api("GET", "objectives")["data"]}

    c.create_objective("long-text")
    with pytest.raises(LiveMLClientError) as err:
        c.submit("long-text", house_model, name="n" * 300)
    assert err.value.status == 400 and err.value.parameters["field"] == "name"
    assert "at most 128" in str(err.value)
    assert c.submissions("long-text") == []
