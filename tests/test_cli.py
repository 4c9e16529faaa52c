"""The `liveml` command as a person reads it: text by default, JSON with --json; progress lines;
the server root; `token show`; and the pure text helpers (formatting, progress texts, log lines)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import requests
from conftest import REPO, start_server, wait_for

from liveml_ext import formatting as fmt
from liveml_ext.cli import _log_line, render
from liveml_ext.progress import final_line, progress_text


# --- pure helpers ------------------------------------------------------------------------------
def test_formatting_helpers():
    assert fmt.size(512) == "512 bytes"
    assert fmt.size(12_595) == "12.3 KiB"
    assert fmt.size(1.818e8) == "173.4 MiB"
    assert fmt.size(3 * 1024**3) == "3.0 GiB"
    assert fmt.size(None) == "-"
    assert fmt.number(1234567) == "1,234,567"
    assert fmt.number(12.345, 1) == "12.3"
    assert fmt.money(476111.9) == "476,111.90"
    assert fmt.money(1095037.084) == "1,095,037.08"
    assert fmt.short_time("2026-12-01T08:12:03.123456+00:00") == "2026-12-01 08:12:03"
    assert fmt.short_time("2026-12-01T08:12:03Z") == "2026-12-01 08:12:03"
    assert fmt.short_time(None) == "-"
    rid = "ri.models.main.submission.1b4e28ba-2fa1-11d2-883f-0016d3cca427"
    assert fmt.short_rid(rid) == "d3cca427"
    assert fmt.duration(0.0042) == "4.2 ms" and fmt.duration(12.5) == "12.5 s"
    assert fmt.percent(42.123) == "42.1 %"
    assert fmt.quantity(1.818e8, "bytes") == "173.4 MiB"
    assert fmt.quantity(3.3, "ms") == "3.3 ms"
    assert fmt.quantity(12000, "requests") == "12,000 requests"
    assert fmt.quantity(37.56, "%") == "37.6 %"


def _doc(state: str, replicas: list[tuple[str, str]], desired: int = 2, reason: str = "",
         served: str | None = None) -> dict:
    return {"rid": "ri.x", "targetRelease": {"version": "1.0"},
            "release": {"version": served} if served else None,
            "status": {"state": state, "reason": reason, "desiredReplicas": desired,
                       "replicas": [{"state": s, "releaseVersion": v} for s, v in replicas]}}


def test_progress_texts_count_target_replicas_and_end_with_the_state():
    starting = progress_text(_doc("STARTING", [("STARTING", "1.0"), ("READY", "0.9")]),
                             {"node_id": "n1", "message": "Loading model artifact"})
    assert starting.line == "starting: 0/2 replicas ready — node n1: Loading model artifact"
    half = progress_text(_doc("STARTING", [("READY", "1.0"), ("STARTING", "1.0")]))
    assert half.line == "starting: 1/2 replicas ready"
    done = _doc("ACTIVE", [("READY", "1.0"), ("READY", "1.0")], served="1.0")
    assert final_line(progress_text(done, final=True)) == "ACTIVE: 2/2 replicas ready, release 1.0"
    failed = _doc("FAILED", [], reason="the model raised at load")
    assert final_line(progress_text(failed, final=True)) == \
        "FAILED: 0/2 replicas ready, the model raised at load"


def test_log_lines_are_fixed_columns_without_microseconds():
    rows = [{"time": "2026-12-01T08:12:03.123456+00:00", "level": "INFO", "node_id": "a1",
             "logger": "liveml.replica", "message": "Loading model artifact"},
            {"time": "2026-12-01T08:12:04.5+00:00", "level": "WARNING", "node_id": "control-plane",
             "logger": "liveml.events", "message": "scaled"}]
    lines = [_log_line(r) for r in rows]
    assert lines[0] == "2026-12-01 08:12:03  INFO     a1              Loading model artifact"
    assert lines[0].index("Loading") == lines[1].index("scaled")  # the message column lines up
    assert "liveml.replica" not in lines[0]  # the default columns leave the logger out
    extra = _log_line({"time": "2026-12-01T08:12:03+00:00", "message": "m", "logger": "x.y"})
    assert extra == "2026-12-01 08:12:03  m  logger=x.y"  # asked-for columns follow
    page = {"data": list(reversed(rows)), "nextPageToken": None}  # the API: newest first
    assert render("logs", page).splitlines() == lines  # printed oldest first


# --- against a real control plane ----------------------------------------------------------------
@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = start_server(tmp_path_factory.mktemp("home"), args=("--metrics-interval", "0.5"))
    yield s
    s.stop()


def cli(server, *args: str, ok: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "liveml_ext.cli", *args],
                          env=env or server.env(), capture_output=True, text=True, timeout=180)
    assert (proc.returncode == 0) == ok, proc.stdout + proc.stderr
    return proc


def not_json(text: str) -> str:
    with pytest.raises(ValueError):
        json.loads(text)
    return text


@pytest.fixture(scope="module")
def deployed(server, house_model):
    """objective → submit → release → promote → deploy --wait, through the CLI; the outputs."""
    out = {"objective": cli(server, "objective", "create", "tx").stdout,
           "submit": cli(server, "submit", "tx", str(house_model), "--name", "ridge").stdout,
           "release": cli(server, "release", "tx", "ridge", "--version", "1.0",
                          "--tag", "staging").stdout,
           "promote": cli(server, "promote", "tx", "1.0").stdout}
    proc = cli(server, "deploy", "tx", "--name", "Text houses", "--replicas", "1", "--wait")
    out["deploy"], out["deploy_stderr"] = proc.stdout, proc.stderr
    yield out
    server.client.delete("text-houses")


def test_registry_commands_print_text_and_json_on_request(server, deployed, house_model):
    objective = not_json(deployed["objective"])
    rid = server.client.objective("tx")["rid"]
    assert objective.splitlines()[0] == "objective tx  (namespace default)" and rid in objective

    submit = not_json(deployed["submit"])
    sub = server.client.submissions("tx")[0]
    assert len(submit.splitlines()) <= 12
    assert f"submission ridge  ({sub['rid']})" in submit
    assert "inputs:     input_df (table: house-location:string, bedrooms:double, " \
           "bathrooms:double)" in submit
    assert "outputs:    output_df" in submit and "self-test:  passed" in submit
    assert "EstimatorAdapter" in submit or sub["adapter"] in submit

    release = not_json(deployed["release"])
    assert release.splitlines()[0].startswith("release 1.0  (ri.models.main.release.")
    assert "tag:         STAGING" in release and sub["rid"] in release
    assert deployed["promote"].strip() == "1.0 is now PRODUCTION (was STAGING)"

    # --json: the API's documents; a retried submit is the same submission
    again = json.loads(cli(server, "submit", "tx", str(house_model), "--name", "ridge",
                           "--json").stdout)
    assert again["rid"] == sub["rid"]
    assert json.loads(cli(server, "objective", "create", "tx2", "--json").stdout)["name"] == "tx2"
    assert json.loads(cli(server, "promote", "tx", "1.0", "--json").stdout)["tag"] == "PRODUCTION"
    assert cli(server, "promote", "tx", "1.0").stdout.strip() == \
        "1.0 is now PRODUCTION (it was already)"


def test_every_command_prints_text_by_default(server, deployed):
    # query answers JSON by nature: pretty
    answer = cli(server, "query", "text-houses", "--data", json.dumps([{
        "house-location": "Austin", "bedrooms": 2, "bathrooms": 1}])).stdout
    assert json.loads(answer)["responseData"][0]["prediction"] > 0
    assert answer.startswith("{\n  ")
    for args in (("ls",), ("status", "text-houses"), ("submissions", "tx"), ("releases", "tx"),
                 ("objective", "list"), ("events", "text-houses"), ("profiles",),
                 ("logs", "text-houses"), ("metrics", "text-houses"),
                 ("api-name", "text-houses", "text-houses"), ("disable", "text-houses"),
                 ("enable", "text-houses"), ("wait", "text-houses")):
        not_json(cli(server, *args).stdout)


def test_deploy_wait_into_a_pipe_prints_plain_lines_ending_with_the_state(deployed):
    err = deployed["deploy_stderr"]
    assert "\r" not in err and "replica/s" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines[-1] == "ACTIVE: 1/1 replicas ready, release 1.0", err
    steps = [line for line in lines if line.startswith("starting: ")]
    assert steps and all(" replicas ready" in line for line in steps), err
    assert all(a != b for a, b in zip(lines, lines[1:])), err  # one line per change
    assert "ACTIVE" in deployed["deploy"]  # the deployment's text on stdout


def test_enable_wait_shows_progress_until_the_deployment_serves(server, deployed):
    cli(server, "disable", "text-houses")
    proc = cli(server, "enable", "text-houses", "--wait")
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines and lines[-1] == "ACTIVE: 1/1 replicas ready, release 1.0", proc.stderr
    assert "ACTIVE" in proc.stdout
    doc = server.client.deployment("text-houses")
    assert doc["status"]["state"] == "ACTIVE" and doc["status"]["readyReplicas"] == 1


def test_logs_print_oldest_first_in_fixed_columns(server, deployed):
    c = server.client
    wait_for(lambda: len(c.logs("text-houses", "logger:liveml.replica")["data"]) >= 3,
             what="replica startup records")
    lines = cli(server, "logs", "text-houses", "--query", "logger:liveml.replica").stdout \
        .splitlines()
    times = [line[:19] for line in lines]
    assert all(len(t) == 19 and t[10] == " " for t in times), lines  # no microseconds
    assert times == sorted(times), lines  # oldest first, the newest at the bottom
    newest = c.logs("text-houses", "logger:liveml.replica", limit=1)["data"][0]
    assert lines[-1].endswith(newest["message"].rstrip()), (lines[-1], newest)
    help_text = cli(server, "logs", "--help").stdout
    assert "oldest" in help_text and "newest first" not in help_text


def test_metrics_show_human_units(server, deployed):
    c = server.client
    wait_for(lambda: any(r["name"] == "memory_bytes" for r in c.metrics("text-houses")),
             what="a memory sample")
    out = cli(server, "metrics", "text-houses").stdout
    memory = next(line for line in out.splitlines() if "memory_bytes" in line)
    assert "MiB" in memory and "e+" not in out, out


def test_token_show_prints_what_the_cli_uses(server):
    assert cli(server, "token", "show").stdout.strip() == server.token
    assert cli(server, "token", "show", "--url").stdout.split() == [server.url, server.token]
    assert json.loads(cli(server, "token", "show", "--json").stdout) == {
        "url": server.url, "token": server.token}
    env = {**server.env(), "LIVEML_URL": "http://example.invalid:1/", "LIVEML_TOKEN": "lml_x"}
    assert cli(server, "token", "show", env=env).stdout.strip() == "lml_x"
    lost = {**server.env(), "LIVEML_HOME": str(server.home / "nowhere")}
    assert "NotConnected" in cli(server, "token", "show", ok=False, env=lost).stderr


def test_the_server_root_answers_an_index_or_how_to_authenticate(server):
    resp = requests.get(server.url, headers=server.headers(), timeout=30)
    assert resp.status_code == 200, resp.text
    index = resp.json()
    assert index["managementApi"] == f"{server.url}liveml/api/"
    assert index["openapi"] == f"{server.url}liveml/api/openapi.json"
    assert index["inference"].endswith("foundry-ml-live/api/inference/transform/{rid}")
    assert "jupyter" in index["labPanel"].lower()
    assert requests.get(index["openapi"], headers=server.headers(), timeout=30).status_code == 200

    anonymous = requests.get(server.url, timeout=30)
    assert anonymous.status_code == 401
    env = anonymous.json()
    assert set(env) == {"errorCode", "errorName", "errorInstanceId", "parameters"}
    assert env["errorName"] == "Unauthorized"
    assert "liveml token show" in env["parameters"]["message"]
    bad = requests.get(server.url, headers={"Authorization": "Bearer lml_nope"}, timeout=30)
    assert bad.status_code == 401 and "liveml token show" in bad.json()["parameters"]["message"]


def test_house_model_script_says_what_it_wrote(tmp_path):
    out = tmp_path / "house.joblib"
    proc = subprocess.run([sys.executable, str(REPO / "notebooks" / "house_model.py"), str(out)],
                          capture_output=True, text=True, timeout=120, env={**os.environ})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"wrote {out}: house-price pipeline (one-hot location + ridge), " \
                          f"{fmt.size(out.stat().st_size)}\n"
