"""A deployment's page in the main area (labextension/src/deployment.ts, overview.ts, config.ts),
driven as a user does in Lab and Chromium: open it from the sidebar, read the overview, rename
the API, edit the replica count and the vCPU and watch the rollouts, disable, enable, delete.

The deployment runs real replica processes of the reference house model; what the page shows is
compared with what the REST API answers.
"""
from __future__ import annotations

import re

from conftest import house_model  # noqa: F401 - a fixture
from lab_fixtures import make
from lab_harness import NOTEBOOK_TIMEOUT, UI_TIMEOUT, LabPage, wait_true
from playwright.sync_api import expect

from browser.test_panels_browser import released

lab, liveml, chromium, page = make("module")

MS = 1000
PANEL_ID = "liveml-deployments"


def open_sidebar(page: LabPage):
    tab = page.page.locator(f".jp-SideBar.jp-mod-left .lm-TabBar-tab[data-id='{PANEL_ID}']")
    expect(tab).to_be_visible(timeout=UI_TIMEOUT * MS)
    if "lm-mod-current" not in (tab.get_attribute("class") or ""):
        tab.click()
    panel = page.page.locator(f"#{PANEL_ID}")
    expect(panel).to_be_visible()
    return panel


def open_page(page: LabPage, name: str):
    """Click the deployment's row in the sidebar: its page opens in the main area."""
    panel = open_sidebar(page)
    row = panel.get_by_role("listitem", name=name)
    expect(row).to_be_visible(timeout=UI_TIMEOUT * MS)
    row.click()
    view = page.page.locator(".jp-LiveML-page:visible")
    expect(view).to_have_count(1, timeout=UI_TIMEOUT * MS)
    tab = page.page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab.lm-mod-current")
    expect(tab).to_contain_text(name, timeout=UI_TIMEOUT * MS)
    return view


def tab(view, title: str):
    view.locator(".lm-TabBar-tab", has_text=title).click()
    return view.locator(".jp-LiveML-tab:visible")


def dialog(page: LabPage, title: str):
    modal = page.page.get_by_role("dialog", name=title)
    expect(modal).to_be_visible(timeout=UI_TIMEOUT * MS)
    return modal


def test_overview_api_name_replicas_cpu_disable_enable_delete(page: LabPage, liveml, house_model):
    released(liveml, "page-houses", house_model)
    dep = liveml.deploy("page-houses", "Page houses", replicas=1, description="houses for the page")
    other = liveml.deploy("page-houses", "Other houses", replicas=0, api_name="taken-name")
    view = open_page(page, "Page houses")
    overview = tab(view, "Overview")
    state = overview.get_by_label("State")
    expect(state).to_contain_text("ACTIVE 1/1 ready", timeout=NOTEBOOK_TIMEOUT * MS)
    expect(overview).to_contain_text("houses for the page")
    expect(overview).to_contain_text("answering queries")
    doc = liveml.deployment(dep["rid"])
    (replica,) = doc["status"]["replicas"]
    replicas = overview.get_by_role("table", name="Replicas")
    expect(replicas).to_contain_text(replica["nodeId"])
    expect(replicas).to_contain_text("READY")
    expect(overview).to_contain_text(dep["rid"])
    expect(overview).to_contain_text(f"/foundry-ml-live/api/inference/transform/{dep['rid']}")
    expect(overview.get_by_role("table", name="Recent events")).to_be_visible(timeout=UI_TIMEOUT * MS)
    page.shot("overview", view)

    # the API name: a name another deployment holds is refused where the user typed it
    overview.get_by_role("button", name="Edit API name").click()
    field = overview.get_by_label("API name")
    field.fill("taken-name")
    overview.get_by_role("button", name="Save", exact=True).click()
    expect(overview.get_by_role("alert")).to_contain_text("ApiNameAlreadyExists", timeout=UI_TIMEOUT * MS)
    expect(field).to_be_visible()  # still editing
    page.shot("api-name-taken", view)
    field.fill("page-houses-v2")
    field.press("Enter")
    expect(overview.locator(".jp-LiveML-apiName")).to_have_text("page-houses-v2", timeout=UI_TIMEOUT * MS)
    assert liveml.deployment(dep["rid"])["apiName"] == "page-houses-v2"
    expect(open_sidebar(page).get_by_role("listitem", name="Page houses")).to_contain_text(
        "page-houses-v2", timeout=UI_TIMEOUT * MS)

    # two replicas: the count changes, no new generation; the overview shows them come up
    config = tab(view, "Runtime configuration")
    config.get_by_label("Min replicas").fill("2")
    config.get_by_label("Max replicas").fill("2")
    page.shot("config-edited", view)
    config.get_by_role("button", name="Save configuration").click()
    overview = view.locator(".jp-LiveML-tab:visible")
    expect(view.locator(".lm-TabBar-tab.lm-mod-current")).to_have_text("Overview", timeout=UI_TIMEOUT * MS)
    expect(overview.get_by_label("State")).to_contain_text("ACTIVE 2/2 ready", timeout=NOTEBOOK_TIMEOUT * MS)
    expect(overview.get_by_role("table", name="Replicas").locator("tbody tr")).to_have_count(2)
    doc = liveml.deployment(dep["rid"])
    assert doc["runtimeConfiguration"]["minReplicas"] == 2 and doc["generation"] == dep["generation"]
    page.shot("two-replicas", view)

    # a bad value is refused in the browser, next to its field, and nothing is sent
    config = tab(view, "Runtime configuration")
    config.get_by_label("Threads").fill("1.5")
    config.get_by_role("button", name="Save configuration").click()
    expect(config.locator(".jp-LiveML-field[data-field='threadCount']")).to_contain_text("whole number")
    config.get_by_role("button", name="Reset").click()

    # a new vCPU lives in the replica: a new generation rolls out, replica by replica
    config.get_by_label("vCPU per replica").fill("0.75")
    config.get_by_role("button", name="Save configuration").click()
    overview = view.locator(".jp-LiveML-tab:visible")
    wait_true(lambda: liveml.deployment(dep["rid"])["generation"] == dep["generation"] + 1,
              what="a new generation")
    expect(overview.get_by_label("Rollout")).to_contain_text(
        f"generation {dep['generation'] + 1}", timeout=UI_TIMEOUT * MS)
    page.shot("rolling-out", view)
    expect(overview.get_by_label("Rollout")).to_contain_text("complete", timeout=NOTEBOOK_TIMEOUT * MS)
    expect(overview.get_by_label("State")).to_contain_text("ACTIVE 2/2 ready", timeout=NOTEBOOK_TIMEOUT * MS)
    new_nodes = {r["nodeId"] for r in liveml.deployment(dep["rid"])["status"]["replicas"]}
    assert replica["nodeId"] not in new_nodes  # every replica was replaced
    assert liveml.deployment(dep["rid"])["runtimeConfiguration"]["cpu"] == 0.75
    page.shot("rolled-out", view)

    # disable (confirmed), enable
    overview.get_by_role("button", name="Disable").click()
    confirm = dialog(page, "Disable Page houses?")
    expect(confirm).to_contain_text(dep["rid"])
    page.shot("confirm-disable", page.page.locator(".jp-LiveML-modal"))
    confirm.get_by_role("button", name="Disable").click()
    expect(confirm).to_be_hidden(timeout=UI_TIMEOUT * MS)
    expect(overview.get_by_label("State")).to_contain_text("DISABLED", timeout=UI_TIMEOUT * MS)
    expect(overview).to_contain_text("Disabled: no replica runs.", timeout=UI_TIMEOUT * MS)
    assert liveml.deployment(dep["rid"])["enabled"] is False
    page.shot("disabled", view)
    overview.get_by_role("button", name="Enable").click()
    expect(overview.get_by_label("State")).to_contain_text("ACTIVE 2/2 ready", timeout=NOTEBOOK_TIMEOUT * MS)

    # the page comes back on reload, on the same deployment
    page.page.reload()
    view = page.page.locator(".jp-LiveML-page:visible")
    expect(view.get_by_label("State")).to_contain_text("ACTIVE", timeout=UI_TIMEOUT * MS)
    expect(view).to_contain_text(dep["rid"])

    # delete: the dialog names the RID that stops answering; then the page says it is gone
    overview = tab(view, "Overview")
    overview.get_by_role("button", name="Delete").click()
    confirm = dialog(page, "Delete Page houses?")
    expect(confirm).to_contain_text(dep["rid"])
    expect(confirm).to_contain_text("answers 404 for good")
    confirm.get_by_role("button", name="Delete").click()
    expect(confirm).to_be_hidden(timeout=UI_TIMEOUT * MS)
    banner = view.get_by_role("alert").filter(has_text="was deleted")
    expect(banner).to_contain_text(dep["rid"], timeout=UI_TIMEOUT * MS)
    expect(overview.get_by_role("button", name="Enable")).to_be_hidden()
    page.shot("deleted", view)
    rids = {d["rid"] for d in liveml.deployments()}
    assert dep["rid"] not in rids and other["rid"] in rids
    expect(open_sidebar(page).get_by_role("listitem", name="Page houses")).to_have_count(
        0, timeout=UI_TIMEOUT * MS)


def test_sidebar_filter_and_open_by_name_and_launcher(page: LabPage, liveml, house_model):
    released(liveml, "filter-houses", house_model)
    for name in ("Alpha houses", "Beta houses", "Gamma flats"):
        liveml.deploy("filter-houses", name, replicas=0)
    panel = open_sidebar(page)
    rows = panel.locator(".jp-LiveML-row")
    expect(rows).to_have_count(3, timeout=UI_TIMEOUT * MS)
    panel.get_by_label("Filter deployments").fill("houses")
    expect(rows).to_have_count(2)
    expect(panel).to_contain_text('2 of 3 deployments match "houses"')
    panel.get_by_label("Filter deployments").fill("gamma production")
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("aria-label", "Gamma flats")
    page.shot("filtered", panel)

    # the palette: open a deployment by name
    page.page.keyboard.press("Control+Shift+C")
    palette = page.page.locator(".lm-CommandPalette-input")
    palette.fill("open deployment by name")
    page.page.locator(".lm-CommandPalette-item", has_text="Live deployments: open deployment by name").click()
    chooser = page.page.locator(".jp-Dialog select")
    expect(chooser).to_be_visible(timeout=UI_TIMEOUT * MS)
    chooser.select_option(label="Beta houses (beta-houses)")
    page.page.locator(".jp-Dialog .jp-mod-accept").click()
    view = page.page.locator(".jp-LiveML-page:visible")
    expect(view.locator(".jp-LiveML-title h2")).to_have_text("Beta houses", timeout=UI_TIMEOUT * MS)

    # the launcher has the extension's items
    page.page.keyboard.press("Control+Shift+L")
    launcher = page.page.locator(".jp-Launcher:visible")
    expect(launcher).to_be_visible(timeout=UI_TIMEOUT * MS)
    section = launcher.locator(".jp-Launcher-section", has_text="Live deployments")
    expect(section.locator(".jp-LauncherCard", has_text="New live deployment")).to_be_visible()
    expect(section.locator(".jp-LauncherCard", has_text="Model releases")).to_be_visible()
    page.shot("launcher", section)
