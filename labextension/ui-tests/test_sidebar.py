"""The JupyterLab extension's "Live deployments" sidebar (labextension/), in Lab and Chromium.

The Lab of the ``lab`` fixture loads the extension the venv installed
(share/jupyter/labextensions/liveml-labextension); the deployment is made through the REST client
and must appear in the sidebar, polled, until it is ACTIVE with its one replica ready.
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


def sidebar_tab(page: LabPage):
    return page.page.locator(f".jp-SideBar.jp-mod-left .lm-TabBar-tab[data-id='{PANEL_ID}']")


def test_sidebar_lists_a_deployment_until_active_comes_back_on_reload_and_says_why_disabled(
        page: LabPage, liveml, house_model):
    released(liveml, "sidebar-houses", house_model)
    tab = sidebar_tab(page)
    expect(tab).to_be_visible(timeout=UI_TIMEOUT * MS)
    expect(tab).to_have_attribute("title", "Live deployments")
    tab.click()
    panel = page.page.locator(f"#{PANEL_ID}")
    expect(panel).to_be_visible()
    expect(panel.get_by_text("No live deployments yet")).to_be_visible(timeout=UI_TIMEOUT * MS)
    page.shot("empty", panel)

    dep = liveml.deploy("sidebar-houses", "Sidebar houses", replicas=1)
    row = panel.get_by_role("listitem", name="Sidebar houses")
    expect(row).to_be_visible(timeout=UI_TIMEOUT * MS)  # listed while it starts
    expect(row).to_contain_text("ACTIVE 1/1", timeout=NOTEBOOK_TIMEOUT * MS)
    expect(row).to_contain_text(dep["apiName"])
    expect(row).to_contain_text("Production")
    expect(row).to_contain_text("release 1.0")
    expect(panel.get_by_role("alert")).to_be_hidden()
    page.shot("active", panel)

    # the open sidebar is in the saved workspace, so a reload shows it again
    def saved() -> bool:
        data = page.lab.get("lab/api/workspaces/default").json().get("data", {})
        return data.get("layout-restorer:data", {}).get("left", {}).get("current") == PANEL_ID

    wait_true(saved, what="the workspace to record the open sidebar")
    page.page.goto(f"{page.lab.url}lab?token={page.lab.token}")  # no ?reset this time
    expect(panel.get_by_role("listitem", name="Sidebar houses")).to_contain_text(
        "ACTIVE 1/1", timeout=UI_TIMEOUT * MS)
    page.shot("reloaded", panel)

    # not ACTIVE: the badge and the control plane's reason
    liveml.disable(dep["rid"])
    wait_true(lambda: liveml.deployment(dep["rid"])["status"]["state"] == "DISABLED",
              what="the deployment to be disabled")
    row = panel.get_by_role("listitem", name="Sidebar houses")
    expect(row).to_contain_text("DISABLED 0/", timeout=UI_TIMEOUT * MS)
    reason = liveml.deployment(dep["rid"])["status"]["reason"]  # the local backend gives none
    expect(row).to_contain_text(reason or f"Disabled: no replicas run. `liveml enable {dep['apiName']}`")
    page.shot("disabled", panel)


def test_palette_command_opens_the_panel(page: LabPage):
    page.collapse_left_sidebar()
    panel = page.page.locator(f"#{PANEL_ID}")
    expect(panel).to_be_hidden()
    page.page.keyboard.press("Control+Shift+C")
    palette = page.page.locator(".lm-CommandPalette-input")
    expect(palette).to_be_visible(timeout=UI_TIMEOUT * MS)
    palette.fill("Live deployments: open panel")
    command = page.page.locator(".lm-CommandPalette-item", has_text="Live deployments: open panel")
    expect(command).to_have_count(1)
    command.click()
    expect(panel).to_be_visible(timeout=UI_TIMEOUT * MS)
    expect(sidebar_tab(page)).to_have_class(re.compile(r"\blm-mod-current\b"))
    page.shot("opened", panel)


def test_sidebar_says_when_lab_cannot_be_reached_and_recovers_when_shown_again(page: LabPage):
    # the browser refuses the list requests: what a stopped `jupyter lab` looks like to the page
    listing = re.compile(r"/liveml/api/deployments(\?.*)?$")
    page.page.route(listing, lambda route: route.abort("connectionrefused"))
    tab = sidebar_tab(page)
    tab.click()
    panel = page.page.locator(f"#{PANEL_ID}")
    alert = panel.get_by_role("alert")
    expect(alert).to_contain_text("The Jupyter server cannot be reached", timeout=UI_TIMEOUT * MS)
    expect(alert).to_contain_text("Check that jupyter lab is still running")
    page.shot("unreachable", panel)

    # a Jupyter server without liveml's server extension answers its own 404 page
    page.page.unroute(listing)
    page.page.route(listing, lambda route: route.fulfill(
        status=404, content_type="text/html", body="<html><body>404 : Not Found</body></html>"))
    panel.get_by_role("button", name="Refresh now").click()
    expect(alert).to_contain_text("The liveml control plane is not running in this Jupyter server",
                                  timeout=UI_TIMEOUT * MS)
    expect(alert).to_contain_text("jupyter server extension enable liveml_ext")
    page.shot("no-extension", panel)

    page.page.unroute(listing)
    tab.click()  # hidden: the poll stands by
    expect(panel).to_be_hidden()
    tab.click()  # shown again: it refreshes at once instead of after its back-off
    expect(alert).to_be_hidden(timeout=UI_TIMEOUT * MS)
    expect(panel.get_by_text("No live deployments yet")).to_be_visible()
