"""``%liveml panel`` and ``%liveml releases-panel`` driven as a person does, in Lab and Chromium.

Every result a widget produces (a created deployment, a prediction, log rows, a metrics plot, a
promotion) must appear in the page, whichever thread produced it in the kernel.
"""
from __future__ import annotations

import re

import nbformat
import pytest
from lab_harness import NOTEBOOK_TIMEOUT, UI_TIMEOUT, LabPage, wait_true
from playwright.sync_api import expect

from liveml_ext.client import LiveMLClientError

MS = 1000
MONEY = re.compile(r"\d{1,3}(,\d{3})+\.\d\d")  # a house price as the tables show it


def write_notebook(page: LabPage, name: str, *sources: str) -> None:
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {
        "name": "python3", "display_name": "Python 3", "language": "python"}})
    nb.cells = [nbformat.v4.new_code_cell(s) for s in sources]
    (page.lab.root / name).write_text(nbformat.writes(nb))
    page.open_notebook(name)
    page.assert_no_errors(page.run_all())


def released(liveml, objective: str, model, tag: str = "production") -> None:
    liveml.create_objective(objective)
    liveml.submit(objective, model, name="ridge")
    liveml.release(objective, "ridge", "1.0", tag=tag)


def field(scope, kind: str, label: str):
    """An ipywidgets control by its description label (``kind``: text, dropdown, ...)."""
    return scope.locator(f".widget-{kind}:has(> label:text-is('{label}'))").locator(
        "input, select, textarea").first


def test_deployments_panel_create_query_logs_metrics_disable_enable_delete(
        page: LabPage, liveml, house_model):
    released(liveml, "panel-houses", house_model)
    write_notebook(page, "panel.ipynb", "%load_ext liveml_ext\n%liveml panel")
    panel = page.outputs("%liveml panel")
    expect(panel.get_by_text("no live deployments yet")).to_be_visible(timeout=UI_TIMEOUT * MS)

    # create through the form
    panel.get_by_role("button", name="New deployment").click()
    form = panel.locator(".widget-vbox", has=page.page.get_by_text("New live deployment")).last
    field(form, "dropdown", "Objective").select_option("panel-houses")
    field(form, "text", "Name").fill("Panel houses")
    field(form, "dropdown", "Replicas").select_option(label="single (1)")
    page.shot("form", form)
    form.get_by_role("button", name="Create deployment").click()
    expect(panel.get_by_text("Panel houses is").first).to_be_visible(timeout=NOTEBOOK_TIMEOUT * MS)
    dep = liveml.deployment("panel-houses")
    assert dep["status"]["state"] == "ACTIVE"
    listing = panel.locator("table").first
    expect(listing).to_contain_text("Panel houses")
    expect(listing).to_contain_text("ACTIVE")
    picked = field(panel, "dropdown", "Deployment")
    expect(picked).to_have_value("Panel houses (panel-houses)")  # the new one, selected
    expect(panel.get_by_role("button", name="Create deployment")).to_have_count(0)  # form gone
    page.shot("created", panel)

    # query: the prediction appears in the page
    panel.get_by_role("tab", name="Query").click()
    field(panel, "text", "house-location").fill("Austin")
    field(panel, "text", "bedrooms").fill("2")
    field(panel, "text", "bathrooms").fill("1")
    panel.get_by_role("button", name="Send").click()
    answer = panel.locator("table", has_text="prediction")
    expect(answer).to_be_visible(timeout=UI_TIMEOUT * MS)
    expect(answer).to_contain_text("Austin")
    expected = liveml.query(dep["rid"], [{"house-location": "Austin", "bedrooms": 2,
                                          "bathrooms": 1}])["responseData"][0]["prediction"]
    expect(answer).to_contain_text(f"{expected:,.2f}")
    panel.get_by_role("button", name="Copy as curl").click()
    snippet = panel.locator("textarea").last
    expect(snippet).to_have_value(re.compile(r"Bearer \$\(liveml token show\)"))
    expect(snippet).to_have_value(re.compile(re.escape(dep["rid"])))
    panel.get_by_role("button", name="Copy as Python").click()
    expect(snippet).to_have_value(re.compile(r"lm\.deployment\('panel-houses'\)\.transform"))
    page.shot("query", answer)

    # logs and metrics: rows and an image in the page
    panel.get_by_role("tab", name="Logs & Metrics").click()
    wait_true(lambda: liveml.logs(dep["rid"], '"Replica ready"')["data"], timeout=UI_TIMEOUT,
              what="the replica's records to be shipped")
    panel.get_by_role("button", name="Search").click()
    expect(panel.get_by_text(re.compile(r"\d+ record\(s\), newest first"))).to_be_visible(
        timeout=UI_TIMEOUT * MS)
    logs = panel.locator("table", has_text="message")
    expect(logs).to_contain_text("Replica ready")
    assert logs.locator("tbody tr").count() >= 3
    page.shot("logs", logs)
    panel.get_by_role("button", name="Plot metrics").click()
    image = panel.locator(".widget-image").first
    expect(image).to_be_visible(timeout=NOTEBOOK_TIMEOUT * MS)
    assert image.evaluate("img => img.complete && img.naturalWidth > 0"), "no plot in the page"
    page.shot("metrics", image)

    # disable (with confirmation), enable
    panel.get_by_role("tab", name="Overview").click()
    expect(panel.get_by_role("button", name="Enable")).to_be_hidden()
    panel.get_by_role("button", name="Disable").click()
    confirm = panel.get_by_role("button", name="Confirm disable")
    expect(confirm).to_be_visible()
    assert liveml.deployment(dep["rid"])["enabled"]  # nothing happens before the confirmation
    page.shot("confirm-disable", panel)
    confirm.click()
    expect(panel.get_by_text("disabled (the RID is kept)")).to_be_visible(
        timeout=UI_TIMEOUT * MS)
    assert not liveml.deployment(dep["rid"])["enabled"]
    expect(listing).to_contain_text("DISABLED")
    expect(panel.get_by_role("button", name="Disable")).to_be_hidden()
    page.shot("disabled", panel)
    panel.get_by_role("button", name="Enable").click()
    expect(panel.get_by_text("enabled: starting")).to_be_visible(timeout=UI_TIMEOUT * MS)
    assert liveml.wait(dep["rid"], timeout=NOTEBOOK_TIMEOUT)["status"]["state"] == "ACTIVE"

    # delete (with confirmation): gone for good
    panel.get_by_role("button", name="Delete").click()
    panel.get_by_role("button", name="Confirm delete").click()
    expect(panel.get_by_text("was deleted")).to_be_visible(timeout=UI_TIMEOUT * MS)
    with pytest.raises(LiveMLClientError, match="LiveDeploymentNotFound"):
        liveml.deployment(dep["rid"])
    page.shot("deleted", panel)


def test_releases_panel_release_to_staging_promote_and_the_deployment_upgrades(
        page: LabPage, liveml, house_model):
    released(liveml, "panel-releases", house_model)
    rid = liveml.deploy("panel-releases", "Release follower", replicas=1)["rid"]
    liveml.wait(rid, timeout=NOTEBOOK_TIMEOUT)
    write_notebook(page, "releases.ipynb",
                   "%load_ext liveml_ext\n%liveml releases-panel panel-releases")
    view = page.outputs("%liveml releases-panel")
    expect(field(view, "dropdown", "Submission")).to_have_value("ridge")  # not blank
    expect(field(view, "dropdown", "Release")).to_have_value("1.0 (production)")
    page.shot("opened", view)

    field(view, "text", "Version").fill("1.1")
    view.get_by_role("button", name="Release to Staging").click()
    expect(view.get_by_text("released 1.1 to Staging")).to_be_visible(timeout=UI_TIMEOUT * MS)
    table = view.locator("table").first
    expect(table).to_contain_text("1.1")
    expect(table).to_contain_text("STAGING")
    expect(field(view, "dropdown", "Release")).to_have_value("1.1 (staging)")  # offered next

    view.get_by_role("button", name="Mark as Production").click()
    confirm = view.get_by_role("button", name="Confirm: 1.1 to Production")
    expect(confirm).to_be_visible()
    assert {r["version"]: r["tag"] for r in liveml.releases("panel-releases")}["1.1"] == "STAGING"
    page.shot("confirm-promote", view)
    confirm.click()
    expect(view.get_by_text("1.1 is now Production")).to_be_visible(timeout=UI_TIMEOUT * MS)
    expect(table).not_to_contain_text("NaN")  # the old release lost its tag: shown empty
    assert {r["version"]: r["tag"] for r in liveml.releases("panel-releases")} == {
        "1.1": "PRODUCTION", "1.0": None}
    wait_true(lambda: (liveml.deployment(rid).get("release") or {}).get("version") == "1.1",
              timeout=NOTEBOOK_TIMEOUT, what="the deployment to upgrade to 1.1")
    page.shot("promoted", view)


def luminance(rgb: str) -> float:
    r, g, b = (int(x) for x in re.findall(r"\d+", rgb)[:3])
    return (0.2126 * r + 0.7152 * g + 0.0722 * b) / 255


def test_outputs_follow_jupyterlabs_dark_theme(page: LabPage):
    """liveml's cards and tables use JupyterLab's CSS variables: in the dark theme they turn
    light-on-dark like Lab's own text."""
    write_notebook(page, "theme.ipynb",
                   "from IPython.display import HTML\nfrom liveml_ext import display as ui\n"
                   "HTML(ui.page(ui.card('Themed', 'ACTIVE', '', [('API name', 'themed')],"
                   " ui.table([{'price': 476111.9}]))))")
    card = page.outputs("ui.card").locator(".lm-card")
    expect(card).to_contain_text("476,111.90")
    colors = "el => [getComputedStyle(el).color, getComputedStyle(el).backgroundColor]"
    text, background = card.evaluate(colors)
    assert luminance(text) < 0.5 < luminance(background), (text, background)  # light theme
    page.menu("Settings", "Theme", "JupyterLab Dark")
    wait_true(lambda: page.page.evaluate(
        "document.body.dataset.jpThemeLight") == "false", what="the dark theme")
    wait_true(lambda: luminance(card.evaluate(colors)[0]) > 0.5, what="light text on dark")
    text, background = card.evaluate(colors)
    assert luminance(background) < 0.5, (text, background)
    page.shot("dark", card)
    page.menu("Settings", "Theme", "JupyterLab Light")
    wait_true(lambda: page.page.evaluate("document.body.dataset.jpThemeLight") == "true",
              what="the light theme back")
