"""The notebook: magics in a real IPython shell, the Python API, and the example notebooks."""
from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pandas as pd
import pytest
from conftest import ROW, reference_module, run_notebook, wait_for
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

import liveml_ext.notebook as lm


@pytest.fixture
def shell(server, monkeypatch):
    monkeypatch.setenv("LIVEML_URL", server.url)
    monkeypatch.setenv("LIVEML_TOKEN", server.token)
    lm._client = None
    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "liveml_ext")
    ip.run_line_magic("reload_ext", "liveml_ext")  # loading twice is harmless
    yield ip
    lm._client = None


def test_magics_and_python_api(shell):
    ip = shell
    sub = lm.submit("nb-houses", reference_module().train(), name="ridge")  # from memory
    assert sub["api"]["inputs"][0]["columns"][0]["name"] == "house-location"
    ip.run_line_magic("liveml", "release nb-houses ridge --version 1.0 --tag staging")
    ip.run_line_magic("liveml", "promote nb-houses 1.0")
    releases = ip.run_line_magic("liveml", "releases nb-houses")
    assert isinstance(releases, pd.DataFrame) and releases.loc[0, "tag"] == "PRODUCTION"
    dep = ip.run_line_magic("liveml", "deploy nb-houses --name NB --replicas 1 --wait")
    assert isinstance(dep, lm.Deployment) and "ACTIVE" in dep._repr_html_()
    listing = ip.run_line_magic("liveml", "ls")
    assert "nb" in set(listing["apiName"])

    out = dep.transform(pd.DataFrame([ROW, ROW]))
    assert list(out.columns)[-1] == "prediction" and len(out) == 2
    assert dep.transform_v2(input_df=pd.DataFrame([ROW]))["output_df"].shape == (1, 4)

    result = ip.run_cell_magic("liveml", "query nb -o answer", json.dumps([ROW]))
    assert isinstance(result, pd.DataFrame) and ip.user_ns["answer"] is result
    csv = "house-location,bedrooms,bathrooms\nAustin,2,1\nChicago,1,1\n"
    assert len(ip.run_cell_magic("liveml", "query nb", csv)) == 2
    v2 = ip.run_cell_magic("liveml", "query nb --v2", json.dumps({"input_df": [ROW]}))
    assert isinstance(v2, pd.DataFrame) and "prediction" in v2

    with capture_output() as captured:
        assert ip.run_cell_magic("liveml", "query nb", json.dumps([{**ROW, "bedrooms": "x"}])) is None
    html = "".join(o.data.get("text/html", "") for o in captured.outputs)
    assert "InferenceInvalidInput" in html and "typeMismatch" in html and "bedrooms" in html
    with capture_output() as captured:
        assert ip.run_line_magic("liveml", "status nowhere") is None
    assert "LiveDeploymentNotFound" in "".join(o.data.get("text/html", "")
                                                for o in captured.outputs)
    with capture_output() as captured:
        assert ip.run_line_magic("liveml", "deploy") is None  # a usage error, not a crash
    assert "required" in captured.stderr

    wait_for(lambda: len(dep.logs('"Replica ready"')) > 0,
             what="the replica's log records to be shipped")
    logs = dep.logs('"Replica ready"')
    assert isinstance(logs, pd.DataFrame) and len(logs) == 1
    dep.delete()


def test_quickstart_notebook_runs_top_to_bottom(server, monkeypatch, tmp_path):
    nb, outputs = run_notebook(server, monkeypatch, "quickstart")
    html = [o.data.get("text/html", "") for o in outputs if "data" in o]
    assert any("prediction" in h and "<table" in h for h in html), "no DataFrame of predictions"
    assert any("image/png" in o.get("data", {}) for o in outputs), "no metrics plot"
    Path(tmp_path / "executed.ipynb").write_text(nbformat.writes(nb))


def test_compare_releases_notebook_runs_top_to_bottom(server, monkeypatch, tmp_path):
    """notebooks/compare_releases.ipynb: deploy Production, shadow Staging, send traffic,
    compare, promote from the report."""
    nb, outputs = run_notebook(server, monkeypatch, "compare_releases")
    html = [o.data.get("text/html", "") for o in outputs if "data" in o]
    assert any("Shadow" in h and "ACTIVE" in h for h in html), "the shadow never got ready"
    report = [h for h in html if "Comparison" in h]
    assert report and "mean abs" in report[0] and "prediction" in report[0], "no comparison"
    assert any("image/png" in o.get("data", {}) for o in outputs), "no comparison plot"
    assert any("is Production now" in h for h in html)
    releases = server.client.releases("compare-houses")
    assert [r["version"] for r in releases if r["tag"] == "PRODUCTION"] == ["2.0"]
    Path(tmp_path / "executed.ipynb").write_text(nbformat.writes(nb))


def test_widgets_drive_a_deployment_end_to_end(server, house_model, tmp_path):
    from liveml_ext.widgets import Panel, ReleasesView

    c = server.client
    c.create_objective("widgets")
    c.submit("widgets", house_model, name="m")
    c.release("widgets", "m", "1.0", tag="staging")
    panel = Panel(c, background=False)
    panel.new.click()
    form = panel.form
    form.objective.value = "widgets"
    form.create.click()
    assert "name needs" in form.message.value  # validated before anything is sent
    form.name.value = "Widget houses"
    form.environment.value = "Production"
    form.create.click()
    assert "no release tagged Production" in form.message.value

    releases = ReleasesView("widgets", c, background=False)
    assert releases.submission.value == "m" and releases.release_pick.value == "1.0"  # not blank
    releases.release_pick.value = None
    releases.ask_promote()  # nothing chosen: said so, nothing offered to confirm
    assert "choose a release" in releases.message.value and releases.confirm.layout.display == "none"
    releases.release_pick.value = "1.0"
    releases.promote_button.click()
    assert c.releases("widgets")[0]["tag"] == "STAGING"  # not before the confirmation
    releases.confirm.click()
    assert c.releases("widgets")[0]["tag"] == "PRODUCTION"
    assert "PRODUCTION" in releases.table.value

    form.replica_profile.value = "single"
    form.background = True  # as in a notebook: the kernel is not blocked while it starts
    form.create.click()
    form.join()
    assert "ACTIVE" in form.message.value, form.message.value
    rid = form.rid
    assert rid in [value for _, value in panel.pick.options]
    panel.pick.value = rid
    view = panel.view

    view.cells["house-location"].value = "Austin"
    view.cells["bedrooms"].value = "2"
    view.cells["bathrooms"].value = "1"
    view.add_row.click()
    view.cells["house-location"].value = "Chicago"
    view.add_row.click()
    view.send.click()
    assert list(view.last["house-location"]) == ["Austin", "Chicago"]
    assert view.last["prediction"].gt(0).all()
    view.show_curl()
    assert rid in view.snippet.value and "Authorization: Bearer" in view.snippet.value
    view.cells["bedrooms"].value = "two"
    view.send.click()
    assert "InferenceInvalidInput" in view.query_message.value and "bedrooms" in \
        view.query_message.value

    view.api_name.value = "widget-houses-2"
    view.save_api_name.click()
    assert c.deployment(rid)["apiName"] == "widget-houses-2"
    view.api_name.value = "Not Valid!"
    view.save_api_name.click()
    assert "InvalidArgument" in view.message.value
    view.threads.value = 2
    view.save_config.click()
    assert c.deployment(rid)["runtimeConfiguration"]["threadCount"] == 2

    view.search_text.value = '"Replica ready"'
    wait_for(lambda: c.logs(rid, '"Replica ready"')["data"], what="shipped log records")
    view.search.click()
    assert "record(s)" in view.logs_message.value and len(view.last_logs) >= 1
    view.download_logs(str(tmp_path / "logs.txt"))
    assert (tmp_path / "logs.txt").read_text().startswith("time")
    view.plot.click()
    assert view.last_plot._repr_png_()[:4] == b"\x89PNG"

    view.disable.click()
    assert c.deployment(rid)["enabled"]  # asks first
    view.confirm.click()
    assert not c.deployment(rid)["enabled"]
    view.enable.click()
    assert c.deployment(rid)["enabled"]
    view.delete.click()
    view.confirm.click()
    with pytest.raises(Exception, match="LiveDeploymentNotFound"):
        c.deployment(rid)
    panel.refresh()
    assert rid not in [value for _, value in panel.pick.options]


@pytest.mark.parametrize("name, expected", [
    ("multi_io_adapter", ["InferenceInvalidInput", "discount", "final"]),
    ("operations", ["Rolling out", "ops-prices", "DISABLED", "small"]),
])
def test_example_notebooks_run(server, monkeypatch, name, expected):
    _, outputs = run_notebook(server, monkeypatch, name)
    text = json.dumps([o.get("data", {}) for o in outputs] + [o.get("text", "") for o in outputs])
    for needle in expected:
        assert needle in text, needle


def test_a_notebook_that_runs_again_reuses_or_is_told_what_exists(shell):
    model = reference_module().train()
    first = lm.submit("nb-again", model, name="ridge")
    assert lm.submit("nb-again", model, name="ridge")["rid"] == first["rid"]  # the same model
    other = reference_module().train()
    other.set_params(ridge__alpha=50.0).fit(*reference_module().training_frame(200))
    with pytest.raises(Exception, match="SubmissionAlreadyExists") as refused:
        lm.submit("nb-again", other, name="ridge")
    assert "ridge-2" in str(refused.value)  # what to do next
    kept = lm.submit("nb-again", other, name="ridge", exist_ok=True)
    assert kept["rid"] == first["rid"] and "was not submitted" in kept._repr_html_()
    assert len(lm.submissions("nb-again")) == 1  # never a silent duplicate
    assert lm.release("nb-again", "ridge", "1.0", tag="staging")["tag"] == "STAGING"
    lm.promote("nb-again", "1.0")
    again = lm.release("nb-again", "ridge", "1.0", tag="staging")  # a re-run: as it is
    assert again["tag"] == "PRODUCTION" and len(lm.releases("nb-again")) == 1
