"""The control plane hosted by a real Jupyter server, under its base URL, with both kinds of token."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import requests
from conftest import ROW, free_port, pids_alive, replica_pids, wait_for

from liveml_ext.client import Client

JUPYTER_TOKEN = "jupyter-secret-token"


@pytest.fixture(scope="module")
def jupyter(tmp_path_factory):
    home = tmp_path_factory.mktemp("jhome")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVEML_")}
    env["LIVEML_HOME"] = str(home)
    env["JUPYTER_RUNTIME_DIR"] = str(home / "jupyter-runtime")
    log = open(home / "jupyter.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyter", "server", "--no-browser", f"--port={port}",
         "--ServerApp.ip=127.0.0.1", "--allow-root", f"--IdentityProvider.token={JUPYTER_TOKEN}",
         "--ServerApp.base_url=/jl/", f"--ServerApp.root_dir={home}"],
        stdout=log, stderr=subprocess.STDOUT, env=env)
    conn = home / "connection.json"
    wait_for(lambda: conn.exists() or proc.poll() is not None, timeout=60, what="jupyter server")
    assert proc.poll() is None, (home / "jupyter.log").read_text()
    doc = json.loads(conn.read_text())
    yield {"home": home, "url": doc["url"], "token": doc["token"], "proc": proc, "port": port}
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_extension_serves_under_the_base_url_with_either_token(jupyter):
    base = f"http://127.0.0.1:{jupyter['port']}/jl/"
    assert jupyter["url"] == base
    whoami = base + "liveml/api/whoami"
    assert requests.get(whoami, headers={"Authorization": f"token {JUPYTER_TOKEN}"}).status_code == 200
    assert requests.get(whoami, headers={"Authorization": f"Bearer {JUPYTER_TOKEN}"}).status_code == 200
    assert requests.get(whoami, headers={"Authorization": f"Bearer {jupyter['token']}"}).json()[
        "scope"] == "admin"
    for headers in ({}, {"Authorization": "Bearer lml_wrong"}, {"Authorization": "token wrong"}):
        resp = requests.get(whoami, headers=headers)
        assert resp.status_code == 401, resp.text
        assert resp.json()["errorName"] == "Unauthorized"
    resp = requests.post(base + "liveml/api/objectives", json={"name": "x"})
    assert resp.status_code == 401 and resp.json()["errorName"] == "Unauthorized"


def test_deploy_and_query_inside_jupyter(jupyter, house_model):
    c = Client(jupyter["url"], JUPYTER_TOKEN)  # Jupyter's own token manages liveml too
    c.create_objective("jl-houses")
    c.submit("jl-houses", house_model, name="v1")
    c.release("jl-houses", "v1", "1.0", tag="production")
    rid = c.wait(c.deploy("jl-houses", name="In Jupyter", replicas=1)["rid"], timeout=120)["rid"]
    url = f"{jupyter['url']}foundry-ml-live/api/inference/transform/{rid}"
    body = {"requestData": [ROW], "requestParams": {}}
    for token in (jupyter["token"], JUPYTER_TOKEN):
        resp = requests.post(url, json=body, headers={"Authorization": f"Bearer {token}"})
        assert resp.status_code == 200, resp.text
        assert resp.json()["responseData"][0]["prediction"] > 0
    resp = requests.post(url, json=body)
    assert resp.status_code == 401 and resp.json()["errorName"] == "Unauthorized"
    # a script's query with a liveml token takes the fast path (no RequestHandler, so none of
    # Jupyter's headers); one from a browser, or with Jupyter's token, Jupyter's handler
    lml = {"Authorization": f"Bearer {jupyter['token']}"}
    fast = requests.post(url, json=body, headers=lml)
    assert fast.status_code == 200 and "Content-Security-Policy" not in fast.headers
    for headers in ({"Authorization": f"Bearer {JUPYTER_TOKEN}"},
                    {**lml, "Origin": f"http://127.0.0.1:{jupyter['port']}"}):
        handled = requests.post(url, json=body, headers=headers)
        assert handled.status_code == 200, handled.text
        assert "Content-Security-Policy" in handled.headers
    foreign = requests.post(url, json=body, headers={**lml, "Origin": "https://evil.example"})
    assert foreign.status_code == 200  # a token needs no origin check (no cookie rides along)
    denied = requests.post(url, json=body, headers={"Authorization": "Bearer lml_wrong"})
    assert denied.status_code == 401 and denied.json()["errorName"] == "Unauthorized"


def test_stopping_jupyter_stops_the_replicas(jupyter):
    pids = replica_pids(jupyter["home"])
    assert pids, "the previous test left a running deployment"
    jupyter["proc"].send_signal(signal.SIGTERM)
    jupyter["proc"].wait(60)
    time.sleep(0.1)
    wait_for(lambda: not pids_alive(pids), what="replicas to stop with Jupyter")
