"""Issue 13, management side: authentication before the body, body caps, scopes, tokens, and the
answers to odd requests (duplicate keys, wrong media type, unsupported methods, ambiguous names).

One real control plane (``liveml server`` with a 1 MiB artifact limit) and one real deployment.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from urllib.parse import urlparse

import pytest
import requests
from conftest import ROW, query, start_server, wait_for

ENV = {"SECRET_KEY": "hunter2"}
ARTIFACT_LIMIT = 1 << 20


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    s = start_server(tmp_path_factory.mktemp("hard"),
                     args=("--max-artifact-bytes", str(ARTIFACT_LIMIT)))
    yield s
    s.stop()


@pytest.fixture(scope="module")
def houses(srv, house_model):
    """A deployment in namespace default, with an env value, and one query through it."""
    c = srv.client
    c.create_objective("hard-houses")
    c.submit("hard-houses", house_model, name="v1")
    c.release("hard-houses", "v1", "1.0", tag="production")
    doc = c.api("POST", "deployments", json={
        "objective": "hard-houses", "name": "Hard houses",
        "runtimeConfiguration": {"minReplicas": 1, "maxReplicas": 1, "env": ENV}})
    rid = c.wait(doc["rid"], timeout=120)["rid"]
    assert query(srv, rid).status_code == 200
    return rid


def api(srv, method: str, path: str, token: str | None = None, **kw) -> requests.Response:
    headers = {"Authorization": f"Bearer {token or srv.token}", **kw.pop("headers", {})}
    return requests.request(method, f"{srv.url}liveml/api/{path}", headers=headers, timeout=60,
                            **kw)


def envelope(resp: requests.Response, status: int, name: str) -> dict:
    assert resp.status_code == status, resp.text
    doc = resp.json()
    assert set(doc) == {"errorCode", "errorName", "errorInstanceId", "parameters"}, doc
    assert doc["errorName"] == name, doc
    assert doc["errorInstanceId"]
    return doc["parameters"]


def token(srv, scope: str, namespace: str | None = "default", **extra) -> dict:
    resp = api(srv, "POST", "tokens", json={"scope": scope, "namespace": namespace, **extra})
    assert resp.status_code == 201, resp.text
    return resp.json()


# --- point 7: authenticate before the body; caps ---------------------------------------------
def _answer_while_sending(srv, method: str, path: str, headers: str = "") -> tuple[bytes, int]:
    """Announce a 100 MB body, send 64 KiB of it, and read the answer: (answer, bytes sent).
    The server answers without waiting for the rest (it never reads 100 MB)."""
    url = urlparse(srv.url)
    announced = 100 * 1024 * 1024
    with socket.create_connection((url.hostname, url.port), timeout=30) as sock:
        sock.sendall(f"{method} /liveml/api/{path} HTTP/1.1\r\nHost: {url.netloc}\r\n"
                     f"Content-Type: application/octet-stream\r\n{headers}"
                     f"Content-Length: {announced}\r\n\r\n".encode())
        sock.sendall(b"\0" * 65536)
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
    return answer, 65536


@pytest.mark.parametrize("method,path", [("PUT", "artifacts"), ("POST", "objectives"),
                                         ("POST", "tokens")])
def test_unauthenticated_100mb_body_gets_401_before_it_is_read(srv, method, path):
    answer, sent = _answer_while_sending(srv, method, path)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 401"), answer[:300]
    assert json.loads(body)["errorName"] == "Unauthorized"
    assert sent < 100 * 1024 * 1024  # answered while the client was still sending


def test_a_refused_small_body_gets_its_answer_not_a_reset_connection(srv):
    """Refused from the headers, a small body is still read first, so the answer arrives."""
    for _ in range(20):
        resp = requests.post(f"{srv.url}liveml/api/objectives", json={"name": "x" * 500},
                             headers={"Authorization": "Bearer lml_wrong"}, timeout=30)
        envelope(resp, 401, "Unauthorized")
    q = token(srv, "query")["token"]
    for _ in range(20):
        envelope(api(srv, "POST", "objectives", q, json={"name": "y"}), 403, "PermissionDenied")


def test_authenticated_json_body_over_the_cap_is_413(srv):
    big = b'{"name": "x", "description": "' + b"d" * (5 << 20) + b'"}'
    params = envelope(api(srv, "POST", "objectives", data=big,
                          headers={"Content-Type": "application/json"}),
                      413, "RequestEntityTooLarge")
    assert params["maxBytes"] == 4 * 1024 * 1024
    # chunked (no Content-Length): counted as it streams, the same answer
    chunks = (big[i:i + 65536] for i in range(0, len(big), 65536))
    envelope(api(srv, "POST", "objectives", data=chunks,
                 headers={"Content-Type": "application/json"}), 413, "RequestEntityTooLarge")
    assert api(srv, "GET", "objectives").status_code == 200  # still serving


def test_artifact_upload_streams_with_its_own_limit_and_leaves_nothing(srv):
    uploads = srv.home / "uploads"
    ok = api(srv, "PUT", "artifacts", data=b"m" * (ARTIFACT_LIMIT // 2))
    assert ok.status_code == 201, ok.text
    assert ok.json()["bytes"] == ARTIFACT_LIMIT // 2
    over = b"o" * (ARTIFACT_LIMIT + 10)
    envelope(api(srv, "PUT", "artifacts", data=over), 413, "RequestEntityTooLarge")
    chunks = (over[i:i + 65536] for i in range(0, len(over), 65536))
    params = envelope(api(srv, "PUT", "artifacts", data=chunks), 413, "RequestEntityTooLarge")
    assert params["maxBytes"] == ARTIFACT_LIMIT
    assert list(uploads.iterdir()) == []  # no half-written upload left behind
    stored = [p.name for p in (srv.home / "artifacts").rglob("*") if p.is_file()]
    assert all(not name.endswith(".tmp") for name in stored)
    assert len([n for n in stored if len(n) == 64]) == 1  # only the one that fit


# --- point 10: odd requests ------------------------------------------------------------------
def test_duplicate_keys_are_refused_naming_the_key(srv):
    params = envelope(api(srv, "POST", "objectives", data='{"name": "a", "name": "b"}',
                          headers={"Content-Type": "application/json"}),
                      400, "DuplicateJsonKey")
    assert params["key"] == "name"


def test_a_non_json_content_type_is_415(srv):
    params = envelope(api(srv, "POST", "objectives", data='{"name": "plain"}',
                          headers={"Content-Type": "text/plain"}), 415, "UnsupportedMediaType")
    assert params["contentType"] == "text/plain"


@pytest.mark.parametrize("path,allow", [("objectives", "GET, POST"),
                                        ("deployments/x", "GET, PATCH, DELETE"),
                                        ("tokens/x", "DELETE"), ("nowhere", None)])
def test_trace_is_405_with_an_allow_header(srv, path, allow):
    resp = api(srv, "TRACE", path)
    envelope(resp, 405, "MethodNotAllowed")
    if allow:
        assert resp.headers["Allow"] == allow
    assert resp.headers.get("Allow")


def test_an_ambiguous_objective_name_is_409_as_for_deployments(srv):
    for ns in ("amb-a", "amb-b"):
        assert api(srv, "POST", "objectives", json={"name": "twin", "namespace": ns}).ok
    params = envelope(api(srv, "GET", "objectives/twin"), 409, "AmbiguousName")
    assert params["namespaces"] == ["amb-a", "amb-b"]
    assert api(srv, "GET", "objectives/amb-a%2Ftwin").status_code == 200


# --- point 9: scopes -------------------------------------------------------------------------
def test_query_scope_is_inference_only(srv, houses):
    q = token(srv, "query")["token"]
    assert query_with(srv, houses, q).status_code == 200
    assert api(srv, "GET", "whoami", q).status_code == 200
    assert api(srv, "GET", "profiles", q).status_code == 200
    for path in ("deployments", f"deployments/{houses}", f"deployments/{houses}/logs",
                 f"deployments/{houses}/events", f"deployments/{houses}/metrics",
                 f"deployments/{houses}/runtime-configuration", "objectives", "metrics"):
        envelope(api(srv, "GET", path, q), 403, "PermissionDenied")


def test_read_scope_reads_with_env_values_masked(srv, houses):
    r = token(srv, "read")["token"]
    for path in (f"deployments/{houses}/logs", f"deployments/{houses}/events",
                 f"deployments/{houses}/metrics", "objectives", "metrics"):
        assert api(srv, "GET", path, r).status_code == 200, path
    doc = api(srv, "GET", f"deployments/{houses}", r).json()
    assert doc["runtimeConfiguration"]["env"] == {"SECRET_KEY": "********"}
    config = api(srv, "GET", f"deployments/{houses}/runtime-configuration", r).json()
    assert config["env"] == {"SECRET_KEY": "********"}
    listed = api(srv, "GET", "deployments", r).json()["data"]
    assert "hunter2" not in json.dumps(listed)
    envelope(api(srv, "POST", f"deployments/{houses}/disable", r), 403, "PermissionDenied")
    m = token(srv, "manage")["token"]
    assert api(srv, "GET", f"deployments/{houses}", m).json()["runtimeConfiguration"][
        "env"] == ENV


def test_prometheus_metrics_show_only_the_callers_namespaces(srv, houses):
    assert houses in api(srv, "GET", "metrics").text
    assert houses in api(srv, "GET", "metrics", token(srv, "read")["token"]).text
    other = api(srv, "GET", "metrics", token(srv, "read", "team-b")["token"])
    assert other.status_code == 200
    assert houses not in other.text


# --- point 11: tokens ------------------------------------------------------------------------
def query_with(srv, rid: str, tok: str) -> requests.Response:
    return requests.post(srv.infer_url(rid), json={"requestData": [ROW], "requestParams": {}},
                         headers={"Authorization": f"Bearer {tok}"}, timeout=30)


def test_a_revoked_token_gets_401_at_once_also_on_the_inference_path(srv, houses):
    doc = token(srv, "query", description="to revoke")
    assert query_with(srv, houses, doc["token"]).status_code == 200  # now cached
    listed = api(srv, "GET", "tokens").json()["data"]
    assert doc["id"] in [t["id"] for t in listed]
    assert all(t["token"] is None for t in listed)  # never the secrets
    revoked = api(srv, "DELETE", f"tokens/{doc['id']}")
    assert revoked.status_code == 200 and revoked.json()["revokedAt"]
    envelope(query_with(srv, houses, doc["token"]), 401, "Unauthorized")
    envelope(api(srv, "GET", "whoami", doc["token"]), 401, "Unauthorized")
    assert doc["id"] not in [t["id"] for t in api(srv, "GET", "tokens").json()["data"]]
    envelope(api(srv, "DELETE", f"tokens/{doc['id']}"), 404, "TokenNotFound")


def test_an_expired_token_gets_401(srv, houses):
    doc = token(srv, "query", expiresInSeconds=1)
    assert doc["expiresAt"]
    wait_for(lambda: query_with(srv, houses, doc["token"]).status_code == 401, timeout=10,
             what="the token to expire")
    params = envelope(api(srv, "GET", "whoami", doc["token"]), 401, "Unauthorized")
    assert "expired" in params["message"]


def test_who_may_list_and_revoke_tokens(srv):
    mine = token(srv, "manage", "tok-a")
    theirs = token(srv, "query", "tok-b")
    ours = token(srv, "query", "tok-a")
    listed = [t["id"] for t in api(srv, "GET", "tokens", mine["token"]).json()["data"]]
    assert ours["id"] in listed and mine["id"] in listed and theirs["id"] not in listed
    envelope(api(srv, "DELETE", f"tokens/{theirs['id']}", mine["token"]), 404, "TokenNotFound")
    envelope(api(srv, "GET", "tokens", ours["token"]), 403, "PermissionDenied")
    assert api(srv, "DELETE", f"tokens/{ours['id']}", mine["token"]).status_code == 200
    admin_id = api(srv, "GET", "whoami").json()["tokenId"]
    envelope(api(srv, "DELETE", f"tokens/{admin_id}"), 409, "CannotRevokeAdminToken")


def test_cli_token_list_revoke_expiry_and_whoami(srv):
    env = {**srv.env(), "LIVEML_URL": srv.url, "LIVEML_TOKEN": srv.token}

    def cli(*args: str, token: str | None = None) -> dict | list:
        run_env = {**env, "LIVEML_TOKEN": token} if token else env
        out = subprocess.run([sys.executable, "-m", "liveml_ext.cli", *args, "--json"],
                             capture_output=True, text=True, env=run_env, timeout=60,
                             cwd=os.getcwd())
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)

    made = cli("token", "create", "--scope", "read", "--namespace", "default",
               "--expires-in", "30d")
    assert made["scope"] == "read" and made["expiresAt"]
    who = cli("whoami", token=made["token"])
    assert who["expiresAt"] == made["expiresAt"] and who["scope"] == "read"
    assert made["id"] in [t["id"] for t in cli("token", "list")]
    assert cli("token", "revoke", made["id"])["revokedAt"]
    assert made["id"] not in [t["id"] for t in cli("token", "list")]
