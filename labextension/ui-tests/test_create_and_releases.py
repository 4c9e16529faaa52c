"""The lab extension's "Create deployment" dialog and "Releases" page, in Lab and Chromium.

The dialog shows the server's refusals on the fields they concern and stays open; a valid
deployment opens its page and appears in the sidebar. The Releases page releases a second
submission to Staging through its form, marks it as Production with a confirmation, and the
deployment that follows Production upgrades to it.
"""
from __future__ import annotations

from conftest import house_model  # noqa: F401 - a fixture
from lab_fixtures import make
from lab_harness import NOTEBOOK_TIMEOUT, UI_TIMEOUT, LabPage, wait_true
from playwright.sync_api import expect

from browser.test_panels_browser import released

lab, liveml, chromium, page = make("module")

MS = 1000
PANEL_ID = "liveml-deployments"


def open_sidebar(page: LabPage):
    page.page.locator(f".jp-SideBar.jp-mod-left .lm-TabBar-tab[data-id='{PANEL_ID}']").click()
    panel = page.page.locator(f"#{PANEL_ID}")
    expect(panel).to_be_visible(timeout=UI_TIMEOUT * MS)
    return panel


def field(scope, name: str):
    """A form row by its field name (the API's): its label, input, hint and error."""
    return scope.locator(f".jp-LiveML-field[data-field='{name}']")


def test_create_dialog_shows_server_errors_on_their_fields_then_creates(page: LabPage, liveml,
                                                                       house_model):
    panel = open_sidebar(page)
    dialog = page.page.get_by_role("dialog", name="Create live deployment")

    # no objective at all: the dialog says how to make one
    panel.get_by_role("button", name="+ New").click()
    expect(dialog).to_contain_text("There is no modeling objective yet", timeout=UI_TIMEOUT * MS)
    expect(dialog).to_contain_text("liveml objective create NAME")
    page.shot("no-objectives", dialog)
    dialog.get_by_role("button", name="Close").click()
    expect(dialog).to_be_hidden()

    released(liveml, "create-houses", house_model)  # 1.0, tagged Production
    panel.get_by_role("button", name="+ New").click()
    name = field(dialog, "name")
    expect(name).to_be_visible(timeout=UI_TIMEOUT * MS)
    expect(field(dialog, "objective").locator("select")).to_have_value(
        liveml.objective("create-houses")["rid"])
    expect(field(dialog, "replicaProfile").locator("select")).to_have_value("default")
    expect(field(dialog, "replicaProfile").locator("option", has_text="single")).to_have_text(
        "single (1 replica)")
    expect(field(dialog, "resourceProfile").locator("select")).to_have_value("default")
    expect(field(dialog, "resourceProfile").locator("option[value='default']")).to_contain_text("vCPU")
    create = dialog.get_by_role("button", name="Create")

    # an invalid name: the server's message on the Name field; the dialog stays open
    name.locator("input").fill("!!bad")
    create.click()
    expect(name.locator(".jp-LiveML-fieldError")).to_contain_text("InvalidArgument",
                                                                  timeout=UI_TIMEOUT * MS)
    expect(name.locator(".jp-LiveML-fieldError")).to_contain_text("pattern")
    expect(name.locator("input")).to_have_attribute("aria-invalid", "true")
    expect(dialog).to_contain_text("see the marked field")
    page.shot("invalid-name", dialog)

    # Staging, which no release holds: NoReleaseWithTag on that field
    name.locator("input").fill("Create houses")
    expect(field(dialog, "apiName").locator("input")).to_have_attribute("placeholder", "create-houses")
    environment = field(dialog, "environment")
    environment.locator("select").select_option(label="Staging")
    field(dialog, "replicaProfile").locator("select").select_option("single")
    create.click()
    expect(environment.locator(".jp-LiveML-fieldError")).to_contain_text(
        "NoReleaseWithTag: objective 'create-houses' has no release tagged STAGING",
        timeout=UI_TIMEOUT * MS)
    expect(name.locator(".jp-LiveML-fieldError")).to_be_hidden()
    page.shot("no-staging-release", dialog)
    assert liveml.deployments() == []

    # valid: the dialog closes, the deployment's page opens, the sidebar lists it until ACTIVE
    environment.locator("select").select_option(label="Production")
    create.click()
    expect(dialog).to_be_hidden(timeout=UI_TIMEOUT * MS)
    expect(page.page.locator(".jp-LiveML-page")).to_be_visible(timeout=UI_TIMEOUT * MS)
    expect(page.page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab.lm-mod-current")).to_contain_text(
        "Create houses", timeout=UI_TIMEOUT * MS)
    dep = liveml.deployment("create-houses")
    assert (dep["environment"], dep["replicaProfile"], dep["resourceProfile"]) == (
        "PRODUCTION", "single", "default")
    row = panel.get_by_role("listitem", name="Create houses")
    expect(row).to_be_visible(timeout=UI_TIMEOUT * MS)
    expect(row).to_contain_text("ACTIVE 1/1", timeout=NOTEBOOK_TIMEOUT * MS)
    page.shot("created", row)

    # a taken API name: ApiNameAlreadyExists on the API name field
    panel.get_by_role("button", name="+ New").click()
    expect(name).to_be_visible(timeout=UI_TIMEOUT * MS)
    name.locator("input").fill("Create houses again")
    field(dialog, "apiName").locator("input").fill("create-houses")
    create.click()
    expect(field(dialog, "apiName").locator(".jp-LiveML-fieldError")).to_contain_text(
        "ApiNameAlreadyExists: API name 'create-houses' is taken", timeout=UI_TIMEOUT * MS)
    page.shot("api-name-taken", dialog)
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_be_hidden()
    assert len(liveml.deployments()) == 1


def test_releases_page_releases_to_staging_then_marks_production_and_deployments_upgrade(
        page: LabPage, liveml, house_model):
    released(liveml, "release-houses", house_model)  # 1.0 of "ridge", Production
    dep = liveml.deploy("release-houses", "Release houses", replicas=1)
    second = liveml.submit("release-houses", house_model, name="ridge-2")

    panel = open_sidebar(page)
    panel.get_by_role("button", name="Releases").click()
    view = page.page.locator(".jp-LiveML-releases")
    chooser = view.get_by_role("combobox", name="Objective")
    expect(chooser).to_be_visible(timeout=UI_TIMEOUT * MS)
    chooser.select_option(label="release-houses")
    expect(page.page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab.lm-mod-current")).to_contain_text(
        "Releases: release-houses")
    releases = view.get_by_role("table", name="Releases")
    expect(releases.locator("tbody tr")).to_have_count(1, timeout=UI_TIMEOUT * MS)
    first = releases.locator("tr[data-version='1.0']")
    expect(first.locator(".jp-LiveML-badge")).to_have_text("Production")
    expect(first).to_contain_text("ridge")
    expect(first.get_by_role("button", name="Mark as Production")).to_have_count(0)
    deployments = view.get_by_role("table", name="Deployments")
    row = deployments.locator(f"tr[data-rid='{dep['rid']}']")
    expect(row).to_contain_text("Production")
    expect(row.locator("[data-state='ACTIVE']")).to_be_visible(timeout=NOTEBOOK_TIMEOUT * MS)

    # the form: newest submission first, with its name; the next version suggested
    form = view.get_by_role("region", name="Release to Staging")
    submission = field(form, "submission").locator("select")
    expect(submission).to_have_value(second["rid"])
    expect(submission.locator("option").first).to_contain_text("ridge-2")
    version = field(form, "version").locator("input")
    expect(version).to_have_value("1.1")
    page.shot("page", view)

    # a version another submission holds: 409 on the Version field
    version.fill("1.0")
    form.get_by_role("button", name="Release to Staging").click()
    expect(field(form, "version").locator(".jp-LiveML-fieldError")).to_contain_text(
        "ReleaseVersionAlreadyExists: objective 'release-houses' already has release '1.0'",
        timeout=UI_TIMEOUT * MS)
    page.shot("version-taken", form)

    version.fill("1.1")
    field(form, "note").locator("input").fill("ridge, second fit")
    form.get_by_role("button", name="Release to Staging").click()
    expect(form.get_by_role("status")).to_contain_text("1.1 is released to Staging",
                                                      timeout=UI_TIMEOUT * MS)
    new = releases.locator("tr[data-version='1.1']")
    expect(new.locator(".jp-LiveML-badge")).to_have_text("Staging", timeout=UI_TIMEOUT * MS)
    expect(new).to_contain_text("ridge-2")
    expect(new).to_contain_text("ridge, second fit")
    expect(releases.locator("tbody tr").first).to_have_attribute("data-version", "1.1")  # newest first
    expect(version).to_have_value("1.2")
    tags = view.get_by_role("table", name="Tag history")
    expect(tags.locator("tbody tr").first).to_contain_text("Staging")
    expect(tags.locator("tbody tr").first).to_contain_text("1.1")
    page.shot("staged", view)

    # Mark as Production: the confirmation names the deployment that will upgrade
    new.get_by_role("button", name="Mark as Production").click()
    confirm = page.page.get_by_role("dialog", name="Mark 1.1 as Production?")
    expect(confirm).to_contain_text("moves from 1.0 to 1.1")
    expect(confirm).to_contain_text(f"will upgrade to 1.1: Release houses ({dep['apiName']})")
    page.shot("confirm", confirm)
    confirm.get_by_role("button", name="Mark as Production").click()
    expect(confirm).to_be_hidden(timeout=UI_TIMEOUT * MS)
    expect(view.locator(".jp-LiveML-notice-ok").first).to_contain_text(
        "1.1 is now Production: 1 deployment(s) upgrading")
    expect(new.locator(".jp-LiveML-badge")).to_have_text("Production", timeout=UI_TIMEOUT * MS)
    expect(first.locator(".jp-LiveML-badge")).to_have_count(0)
    expect(first.get_by_role("button", name="Mark as Production")).to_be_visible()
    expect(new.get_by_role("button", name="Mark as Production")).to_have_count(0)
    expect(tags.locator("tbody tr").first).to_contain_text("Production")

    # the deployment that follows Production upgrades to 1.1
    wait_true(lambda: (liveml.deployment(dep["rid"])["release"] or {}).get("version") == "1.1",
              timeout=NOTEBOOK_TIMEOUT, what="the deployment to serve 1.1")
    expect(row.locator("td").nth(3)).to_have_text("1.1", timeout=UI_TIMEOUT * MS)
    expect(row.locator("[data-state='ACTIVE']")).to_be_visible(timeout=NOTEBOOK_TIMEOUT * MS)
    page.shot("upgraded", view)



def test_a_deployment_on_the_releases_page_opens_its_page(page: LabPage, liveml):
    """Needs index.ts to hand the app's commands to the page (``new ReleasesPage(services,
    objective, app.commands)``)."""
    dep = liveml.deploy("release-houses", "Release houses", replicas=1)  # the objective above
    panel = open_sidebar(page)
    panel.get_by_role("button", name="Releases").click()
    view = page.page.locator(".jp-LiveML-releases")
    view.get_by_role("combobox", name="Objective").select_option(label="release-houses")
    row = view.get_by_role("table", name="Deployments").locator(f"tr[data-rid='{dep['rid']}']")
    row.get_by_role("button", name="Release houses").click()
    expect(page.page.locator(".jp-LiveML-page")).to_be_visible(timeout=UI_TIMEOUT * MS)
    expect(page.page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab.lm-mod-current")).to_contain_text(
        "Release houses", timeout=UI_TIMEOUT * MS)
