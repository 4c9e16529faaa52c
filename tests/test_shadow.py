"""Shadow traffic and comparison (issue 16): a real control plane, real replicas of two releases.

A shadow of the Staging release gets copies of the live queries on replicas of its own; the
caller's answers never change and never wait for it, even when the shadow fails on every call;
``compare`` reports the difference between the releases, here a known factor checked against a
hand computation; the shadow stops on ``--stop``, at the end of its duration, on disable, and
when its release becomes the served one (after a promotion from the report).
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import joblib
import pytest
import requests
from conftest import ROW, Loops, Server, deploy_reference, runtime_pids, start_server, wait_for
from model_fixtures import AlwaysFails, Scaled, save

from liveml_ext.notebook import Deployment

ROWS = [dict(ROW, bedrooms=b, bathrooms=1.0 + b / 2) for b in range(1, 6)]
FACTOR = 1.5


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    s = start_server(tmp_path_factory.mktemp("home"))
    yield s
    s.stop()


@pytest.fixture(scope="module")
def deployed(server: Server, house_model: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    """Production 1.0 (the pipeline) serves; Staging 2.0 predicts FACTOR times as much; 3.0
    fails on every query."""
    doc = deploy_reference(server, house_model, "shadowed", "shadowed", replicas=1)
    folder = tmp_path_factory.mktemp("releases")
    model = joblib.load(house_model)
    c = server.client
    c.submit("shadowed", save(Scaled(model, FACTOR), folder / "scaled.pkl"), name="scaled")
    c.release("shadowed", "scaled", "2.0", tag="staging")
    c.submit("shadowed", save(AlwaysFails(model, 0.0), folder / "fails.pkl"), name="fails")
    c.release("shadowed", "fails", "3.0")
    return doc["rid"]


def cli(server: Server, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"LIVEML_URL": server.url, "LIVEML_TOKEN": server.token, "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, "-m", "liveml_ext.cli", *args], capture_output=True,
                          text=True, env=env, timeout=120)


def query(server: Server, rid: str, rows: list) -> list[float]:
    resp = requests.post(server.infer_url(rid), json={"requestData": rows, "requestParams": {}},
                         headers=server.headers(), timeout=30)
    assert resp.status_code == 200, resp.text
    return [r["prediction"] for r in resp.json()["responseData"]]


def shadow(server: Server, rid: str) -> dict | None:
    resp = requests.get(f"{server.url}liveml/api/deployments/{rid}/shadow",
                        headers=server.headers(), timeout=30)
    if resp.status_code == 404:
        assert resp.json()["errorName"] == "ShadowNotFound"
        return None
    assert resp.status_code == 200, resp.text
    return resp.json()


def active(server: Server, rid: str) -> dict:
    return wait_for(lambda: (s := shadow(server, rid)) and s["state"] == "ACTIVE" and s,
                    timeout=120, what="the shadow to be ready")


def shadow_pids(server: Server, rid: str) -> list[int]:
    return [p for p in runtime_pids(rid)
            if any("-shadow-" in a for a in Path(f"/proc/{p}/cmdline").read_text().split("\0"))]


def test_bad_shadows_get_clear_errors(server: Server, deployed: str) -> None:
    c = server.client
    url = f"{server.url}liveml/api/deployments/{deployed}/shadow"
    cases = [({"release": "production"}, 409, "ShadowNotPossible"),  # the one it serves
             ({"release": "9.9"}, 404, "ReleaseNotFound"),
             ({"release": "staging", "sample": 1.5}, 400, "InvalidArgument"),
             ({"release": "staging", "duration": "soon"}, 400, "InvalidArgument"),
             ({"release": "staging", "memory": "lots"}, 400, "InvalidArgument")]
    for body, status, name in cases:
        resp = requests.post(url, json=body, headers=server.headers(), timeout=30)
        assert (resp.status_code, resp.json()["errorName"]) == (status, name), resp.text
        assert set(resp.json()) == {"errorCode", "errorName", "errorInstanceId", "parameters"}
    reader = c.create_token("default", scope="read", description="reader")["token"]
    resp = requests.post(url, json={"release": "staging"}, timeout=30,
                         headers={"Authorization": f"Bearer {reader}"})
    assert resp.status_code == 403 and resp.json()["errorName"] == "PermissionDenied"
    assert requests.post(url, json={"release": "staging"}, timeout=30).status_code == 401
    assert shadow(server, deployed) is None


def test_shadow_mirrors_live_queries_and_compare_gives_the_known_factor(
        server: Server, deployed: str) -> None:
    before = query(server, deployed, ROWS)  # release 1.0's answers, no shadow yet
    out = cli(server, "shadow", "shadowed", "--release", "staging", "--duration", "1h",
              "--thread-count", "2")
    assert out.returncode == 0, out.stderr
    assert "shadow of release 2.0 (serving 1.0)" in out.stdout
    assert "runs with: threadCount 2" in out.stdout
    doc = active(server, deployed)
    assert (doc["releaseVersion"], doc["sample"], doc["readyReplicas"]) == ("2.0", 1.0, 1)
    assert doc["overrides"] == {"threadCount": 2}
    [pid] = shadow_pids(server, deployed)  # its own replica, with its own thread count
    assert "--thread-count\x002\x00" in Path(f"/proc/{pid}/cmdline").read_text()
    [live_pid] = [p for p in runtime_pids(deployed) if p != pid]
    assert "--thread-count\x001\x00" in Path(f"/proc/{live_pid}/cmdline").read_text()
    status = server.client.deployment(deployed)["status"]
    assert status["shadow"]["releaseVersion"] == "2.0" and status["readyReplicas"] == 1
    shown = cli(server, "status", "shadowed")
    assert "shadow:       release 2.0 ACTIVE, 100% mirrored" in shown.stdout, shown.stdout
    for _ in range(8):  # the callers' answers are release 1.0's, unchanged
        assert query(server, deployed, ROWS) == before
    wait_for(lambda: shadow(server, deployed)["answered"] >= 8, timeout=60,
             what="the shadow to answer the mirrored queries")
    report = server.client.compare(deployed, since="1h")
    assert (report["a"]["version"], report["b"]["version"]) == ("1.0", "2.0")
    assert report["queries"] >= 8 and report["rows"] == report["queries"] * len(ROWS)
    assert report["b"]["errors"] == 0 and report["a"]["errors"] == 0
    [diff] = report["numeric"]
    assert diff["column"] == "prediction" and diff["count"] == report["rows"]
    # by hand: every row's shadow answer is FACTOR times the live one
    gaps = [abs(p * FACTOR - p) for p in before]
    assert diff["meanAbs"] == pytest.approx(sum(gaps) / len(gaps), rel=1e-9)
    assert diff["maxAbs"] == pytest.approx(max(gaps), rel=1e-9)
    assert diff["meanRel"] == pytest.approx(FACTOR - 1, rel=1e-9)
    assert diff["maxRel"] == pytest.approx(FACTOR - 1, rel=1e-9)
    top = report["topDifferences"][0]
    assert top["b.prediction"] == pytest.approx(top["a.prediction"] * FACTOR)
    assert top["bedrooms"] == max(r["bedrooms"] for r in ROWS)  # the biggest prediction
    text = cli(server, "compare", "shadowed", "--since", "1h")
    assert text.returncode == 0, text.stderr
    assert "answered by both releases" in text.stdout and "50.00%" in text.stdout
    assert "liveml promote OBJECTIVE 2.0" in text.stdout
    # the notebook's view of the same report: tables, a plot, and promotion in one call
    seen = Deployment(deployed, server.client).compare(since="1h")
    assert seen.numeric.loc[0, "meanRel"] == pytest.approx(FACTOR - 1, rel=1e-9)
    assert list(seen.top["b.prediction"])[:1] == [top["b.prediction"]]
    assert "Comparison" in seen._repr_html_() and "2.0" in seen._repr_html_()
    assert seen.plot().png()[:8] == b"\x89PNG\r\n\x1a\n"
    assert Deployment(deployed, server.client).shadow_status()["mirrored"] >= 8
    # from the report, promotion is one action: the deployment upgrades, the shadow ends
    assert seen.promote()["tag"] == "PRODUCTION"
    wait_for(lambda: query(server, deployed, ROWS[:1])[0] == pytest.approx(before[0] * FACTOR),
             timeout=120, what="the deployment to serve 2.0")
    wait_for(lambda: shadow(server, deployed) is None, timeout=30, what="the shadow to end")
    wait_for(lambda: not shadow_pids(server, deployed), timeout=60, what="its replicas to stop")
    events = [e["message"] for e in server.client.events(deployed, 100)]
    assert any("Shadow of release 2.0 stopped: release 2.0 now serves" in e for e in events)


def test_a_failing_shadow_never_changes_nor_fails_a_live_answer(
        server: Server, deployed: str) -> None:
    served = query(server, deployed, [ROW])[0]
    server.client.start_shadow(deployed, "3.0", sample=1.0, duration=None)
    active(server, deployed)
    with Loops(server, deployed, count=2) as loops:
        wait_for(lambda: shadow(server, deployed)["errors"] >= 20, timeout=60,
                 what="the shadow to fail")
    results = [r for loop in loops.loops for r in loop.results]
    assert results and loops.failures() == []
    assert {value for _, value in results} == {served}
    doc = shadow(server, deployed)
    assert doc["answered"] == 0 and doc["errors"] >= 20 and doc["until"] is None
    report = server.client.compare(deployed, since="1h")
    assert report["b"]["version"] == "3.0" and report["b"]["errors"] >= 20
    stopped = cli(server, "shadow", "shadowed", "--stop")
    assert stopped.returncode == 0 and "stopped: shadow of release 3.0" in stopped.stdout
    assert shadow(server, deployed) is None
    ended = [e["message"] for e in server.client.events(deployed, 100)
             if e["message"].startswith("Shadow of release 3.0 stopped: stopped by")]
    assert ended and " answered 0" not in ended[0] and "0 answered" in ended[0], ended
    wait_for(lambda: not shadow_pids(server, deployed), timeout=60, what="its replicas to stop")


def test_a_shadow_ends_with_its_duration_and_on_disable(server: Server, deployed: str) -> None:
    server.client.start_shadow(deployed, "3.0", duration="3s")
    wait_for(lambda: shadow(server, deployed) is None, timeout=60, what="the duration to end")
    events = [e["message"] for e in server.client.events(deployed, 100)]
    assert any("Shadow of release 3.0 stopped: its duration is over" in e for e in events)
    server.client.start_shadow(deployed, "3.0", duration=None)
    active(server, deployed)
    server.client.disable(deployed)
    wait_for(lambda: shadow(server, deployed) is None, timeout=30, what="the shadow to stop")
    wait_for(lambda: not shadow_pids(server, deployed), timeout=60, what="its replicas to stop")
    events = [e["message"] for e in server.client.events(deployed, 100)]
    assert any("stopped: the deployment was disabled" in e for e in events)
    resp = requests.post(f"{server.url}liveml/api/deployments/{deployed}/shadow",
                         json={"release": "3.0"}, headers=server.headers(), timeout=30)
    assert resp.status_code == 409 and "enable it first" in json.dumps(resp.json())
    server.client.enable(deployed)
    server.client.wait(deployed, timeout=120)


def test_replay_runs_captured_queries_against_another_release(
        server: Server, deployed: str) -> None:
    """Release 2.0 serves now (promoted above); replay its captured queries against 1.0."""
    resp = requests.post(f"{server.url}liveml/api/deployments/{deployed}/replay",
                         json={"release": "1.0"}, headers=server.headers(), timeout=120)
    assert resp.status_code == 400 and resp.json()["errorName"] == "NothingToReplay"
    assert "--capture both" in resp.json()["parameters"]["message"]
    server.client.update(deployed, runtimeConfiguration={"capture": "both"})
    server.client.wait(deployed, timeout=120)
    live = [query(server, deployed, ROWS) for _ in range(5)][-1]
    report = server.client.replay(deployed, "1.0", since="1h")
    assert report["source"] == "replay"
    assert (report["a"]["version"], report["b"]["version"]) == ("2.0", "1.0")
    assert report["queries"] == 5 and report["rows"] == 5 * len(ROWS)
    [diff] = report["numeric"]
    gaps = [abs(p / FACTOR - p) for p in live]  # by hand: 1.0 answers 1/FACTOR of 2.0's
    assert diff["meanAbs"] == pytest.approx(sum(gaps) / len(gaps), rel=1e-9)
    assert diff["meanRel"] == pytest.approx(1 - 1 / FACTOR, rel=1e-9)
    assert report["b"]["errors"] == 0
    wait_for(lambda: not [p for p in runtime_pids(deployed) if "-replay-" in
                          Path(f"/proc/{p}/cmdline").read_text()], timeout=60,
             what="the replay's replica to stop")
    again = server.client.compare(deployed, since="1h", source="replay")
    assert again["queries"] == 5 and again["numeric"][0]["meanRel"] == diff["meanRel"]
    out = cli(server, "replay", "shadowed", "--release", "1.0", "--since", "1h")
    assert out.returncode == 0, out.stderr
    assert "5 queries (25 rows) answered by both releases (replay)" in out.stdout
    assert "replaying the captured queries" in out.stderr
    missing = requests.post(f"{server.url}liveml/api/deployments/{deployed}/replay",
                            json={"release": "9.9"}, headers=server.headers(), timeout=60)
    assert missing.status_code == 404 and missing.json()["errorName"] == "ReleaseNotFound"


def test_the_compare_view_shadows_compares_and_promotes(server: Server, deployed: str) -> None:
    """The widgets' Compare tab, on the deployment that serves 2.0: shadow 1.0, compare,
    promote 1.0 from the report (confirmed), and the deployment goes back to 1.0."""
    from liveml_ext.widgets import DeploymentView

    view = DeploymentView(deployed, server.client, background=False)
    tab = view.compare
    assert view.widget.get_title(3) == "Compare" and "no shadow" in tab.shadow_status.value
    tab.other.value = "1.0"
    tab.duration.value = "until stopped"
    tab.start.click()
    assert "starting" in tab.message.value, tab.message.value
    active(server, deployed)
    live = query(server, deployed, ROWS)
    for _ in range(5):
        query(server, deployed, ROWS)
    wait_for(lambda: shadow(server, deployed)["answered"] >= 6, timeout=60,
             what="the shadow to answer")
    tab.refresh()
    assert "ACTIVE" in tab.shadow_status.value and "1.0" in tab.shadow_status.value
    tab.window.value = "15m"
    tab.run_compare.click()
    report = tab.report
    assert report is not None and report["b"]["version"] == "1.0" and report["queries"] >= 6
    assert report["numeric"][0]["meanRel"] == pytest.approx(1 - 1 / FACTOR, rel=1e-9)
    assert "Comparison" in tab.report_html.value and tab.plot_image.value[:4] == b"\x89PNG"
    assert tab.promote_button.description == "Promote 1.0" and not tab.promote_button.disabled
    tab.promote_button.click()
    assert server.client.deployment(deployed)["release"]["version"] == "2.0"  # not yet
    tab.confirm.click()
    assert "1.0 is now Production" in tab.message.value
    wait_for(lambda: query(server, deployed, ROWS[:1])[0] == pytest.approx(live[0] / FACTOR),
             timeout=120, what="the deployment to serve 1.0 again")
    wait_for(lambda: shadow(server, deployed) is None, timeout=30, what="the shadow to end")


def test_a_shadow_survives_a_restart_of_the_control_plane(
        house_model: Path, tmp_path: Path) -> None:
    first = start_server(tmp_path / "home")
    try:
        rid = deploy_reference(first, house_model, "restarted", "restarted", replicas=1)["rid"]
        model = joblib.load(house_model)
        first.client.submit("restarted", save(Scaled(model, FACTOR), tmp_path / "s.pkl"),
                            name="scaled")
        first.client.release("restarted", "scaled", "2.0", tag="staging")
        first.client.start_shadow(rid, "staging", duration="1h")
        until = active(first, rid)["until"]
    finally:
        first.stop()
    wait_for(lambda: not runtime_pids(rid), timeout=60, what="the replicas to stop")
    second = start_server(tmp_path / "home")
    try:
        doc = active(second, rid)  # the same shadow, started again with its replicas
        assert (doc["releaseVersion"], doc["until"]) == ("2.0", until)
        second.client.wait(rid, timeout=120)  # its own replica may be ready after the shadow's
        before = query(second, rid, ROWS)
        wait_for(lambda: shadow(second, rid)["answered"] >= 1, timeout=60,
                 what="the shadow to answer after the restart")
        report = second.client.compare(rid, since="1h")
        assert report["numeric"][0]["meanRel"] == pytest.approx(FACTOR - 1, rel=1e-9)
        assert query(second, rid, ROWS) == before
    finally:
        second.stop()
