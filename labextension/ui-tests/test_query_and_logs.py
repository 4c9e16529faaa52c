"""A deployment's Query and Logs & Metrics tabs in Lab and Chromium.

A deployment of the house model is queried through the row editor (and its curl and Python
snippets are run as a user would paste them), its logs searched, re-columned, paged and
downloaded, its metrics charted per replica; a multi I/O model is queried through v2 with one
editor per named input.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from conftest import house_model  # noqa: F401 - a fixture
from lab_fixtures import make
from lab_harness import NOTEBOOK_TIMEOUT, UI_TIMEOUT, LabPage, wait_true
from model_fixtures import PriceAndCount, save
from playwright.sync_api import expect

from browser.test_panels_browser import released

lab, liveml, chromium, page = make("module")

MS = 1000
PRICE = re.compile(r"^\d{6}(\.\d{1,2})?$")  # a house price: six figures (and cents)
BIN = Path(sys.executable).parent


def open_page(page: LabPage, rid: str, tab: str):
    """The deployment's page through the command the sidebar runs, on the tab ``tab``."""
    page.page.evaluate(
        f"window.jupyterapp.commands.execute('liveml:open-deployment', {{rid: {json.dumps(rid)}}})")
    view = page.page.locator(".jp-LiveML-page:visible")
    expect(view).to_be_visible(timeout=UI_TIMEOUT * MS)
    view.locator(".lm-TabBar-tab", has_text=tab).click()
    body = view.locator(".jp-LiveML-tab:visible")
    expect(body).to_be_visible()
    return view, body


def inference_requests(page: LabPage) -> list[str]:
    """The URLs of the inference requests the page sends from now on."""
    sent: list[str] = []
    page.page.on("request", lambda r: sent.append(r.url) if "/inference/transform/" in r.url else None)
    return sent


def shell_env(page: LabPage) -> dict[str, str]:
    """A terminal on this machine: the venv's `liveml` on PATH, Lab's liveml home."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVEML_")}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["LIVEML_HOME"] = str(page.lab.home)
    return env


def test_query_rows_snippets_logs_and_metrics_of_the_house_model(page: LabPage, liveml, house_model):
    released(liveml, "qo-houses", house_model)
    dep = liveml.wait(liveml.deploy("qo-houses", "Query houses", replicas=1)["rid"],
                      timeout=NOTEBOOK_TIMEOUT)
    assert dep["status"]["state"] == "ACTIVE"
    page.page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    view, query = open_page(page, dep["rid"], "Query")

    # one input per declared column, typed placeholders
    location = query.get_by_label("house-location (row 1)")
    expect(location).to_be_visible(timeout=UI_TIMEOUT * MS)
    expect(query.get_by_label("bedrooms (row 1)")).to_have_attribute("placeholder", re.compile("number"))
    location.fill("Austin")
    query.get_by_label("bedrooms (row 1)").fill("3")
    query.get_by_label("bathrooms (row 1)").fill("2")
    query.get_by_role("button", name="Add row").click()
    query.get_by_label("house-location (row 2)").fill("San Francisco")
    query.get_by_label("bedrooms (row 2)").fill("4")
    query.get_by_label("bathrooms (row 2)").fill("2.5")
    page.shot("rows", query)
    sent = inference_requests(page)
    query.get_by_role("button", name="Send").click()
    answer = query.get_by_role("table", name="Prediction")
    expect(answer).to_be_visible(timeout=UI_TIMEOUT * MS)
    expect(answer.locator("tbody tr")).to_have_count(2)
    expect(answer.locator("tbody tr").first.locator("td").last).to_have_text(PRICE)
    expect(query.get_by_text(f"Answered by model {dep['release']['modelUuid']}")).to_be_visible()
    expect(query.get_by_text(re.compile(r"in \d+ ms"))).to_be_visible()
    assert len(sent) == 1
    page.shot("answer", answer)

    # a typed value that does not fit its column: said at the editor, nothing sent
    query.get_by_label("bedrooms (row 2)").fill("many")
    query.get_by_role("button", name="Send").click()
    expect(query.get_by_text('row 2, bedrooms: "many" is not a number')).to_be_visible()
    query.get_by_role("button", name="Remove row 2").click()

    # the rows as JSON; bad JSON is said at the editor and nothing is sent
    query.get_by_label("Edit as JSON").check()
    editor = query.get_by_label("input_df (rows)")
    expect(editor).to_be_visible()
    rows = json.loads(editor.input_value())
    assert rows == [{"house-location": "Austin", "bedrooms": 3, "bathrooms": 2}]
    editor.fill('[{"house-location": "Austin", "bedrooms": 3,')
    query.get_by_role("button", name="Send").click()
    error = query.locator(".jp-LiveML-fieldError")
    expect(error).to_contain_text("input_df is not valid JSON")
    expect(query.get_by_role("alert")).to_contain_text("Nothing was sent")
    page.shot("bad-json", query)
    assert len(sent) == 1
    editor.fill(json.dumps([{"house-location": "Chicago", "bedrooms": 2, "bathrooms": 1}]))

    # a 4xx answer: the envelope's errorName: message
    editor.fill(json.dumps([{"house-location": "Chicago", "bedrooms": "two", "bathrooms": 1}]))
    query.get_by_role("button", name="Send").click()
    expect(query.get_by_role("alert")).to_contain_text(re.compile(r"Inference\w*: "),
                                                       timeout=UI_TIMEOUT * MS)
    page.shot("server-error", query)
    editor.fill(json.dumps([{"house-location": "Chicago", "bedrooms": 2, "bathrooms": 1}]))

    # Copy as curl: on the clipboard and on the page; pasted in a terminal, it answers
    query.get_by_role("button", name="Copy as curl").click()
    snippet = query.get_by_label("Snippet")
    expect(snippet).to_be_visible()
    curl = snippet.input_value()
    assert "$(liveml token show)" in curl
    assert f"{page.lab.url}foundry-ml-live/api/inference/transform/{dep['rid']}" in curl
    expect(query.get_by_text("Copied the curl command to the clipboard")).to_be_visible()
    assert page.page.evaluate("navigator.clipboard.readText()") == curl
    page.shot("curl", snippet)
    out = subprocess.run(["bash", "-c", curl], capture_output=True, text=True, timeout=60,
                         env=shell_env(page))
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["modelUuid"] == dep["release"]["modelUuid"] and len(doc["responseData"]) == 1

    # Copy as Python: run in a fresh interpreter of this venv, it answers
    query.get_by_role("button", name="Copy as Python").click()
    python = snippet.input_value()
    assert python.startswith("from liveml_ext.client import Client")
    out = subprocess.run([sys.executable, "-c", python], capture_output=True, text=True,
                         timeout=60, env=shell_env(page))
    assert out.returncode == 0, out.stderr
    assert "responseData" in out.stdout and dep["release"]["modelUuid"] in out.stdout
    page.shot("python", snippet)

    # Logs: the replica's startup line, found with the query language
    view.locator(".lm-TabBar-tab", has_text="Logs & Metrics").click()
    observe = view.locator(".jp-LiveML-observeTab")
    search = observe.get_by_label("Log search")
    expect(search).to_have_attribute("placeholder", re.compile("level:ERROR AND tags.node_id:"))
    records = observe.get_by_role("table", name="Log records")
    expect(records).to_be_visible(timeout=UI_TIMEOUT * MS)  # the newest records, unasked
    search.fill('logger:liveml.replica AND "Replica ready"')
    search.press("Enter")
    expect(records.locator("tbody tr")).to_have_count(1, timeout=UI_TIMEOUT * MS)
    expect(records).to_contain_text("Replica ready")
    expect(records).to_contain_text(dep["status"]["replicas"][0]["nodeId"])
    page.shot("logs", observe)

    # a query syntax error: the server's message under the search box
    search.fill("level:(")
    search.press("Enter")
    expect(observe.locator(".jp-LiveML-fieldError")).to_contain_text("InvalidLogQuery",
                                                                     timeout=UI_TIMEOUT * MS)
    page.shot("syntax-error", observe)

    # columns: release in, logger out
    search.fill("logger:liveml.replica")
    search.press("Enter")
    expect(observe.locator(".jp-LiveML-fieldError")).to_be_hidden(timeout=UI_TIMEOUT * MS)
    observe.get_by_text("Columns (5)").click()
    observe.get_by_label("release", exact=True).check()
    observe.get_by_label("logger", exact=True).uncheck()
    head = records.locator("thead")
    expect(head).to_contain_text("release", timeout=UI_TIMEOUT * MS)
    expect(head).not_to_contain_text("logger")
    expect(records.locator("tbody tr").first).to_contain_text("1.0")
    page.shot("columns", observe)

    # pages of 5, newest first: Older, Newer, First page
    total = len(liveml.logs(dep["rid"], "logger:liveml.replica", since="1h", limit=500)["data"])
    assert total > 5, f"only {total} startup records"
    observe.get_by_label("Records per page").select_option("5")
    expect(records.locator("tbody tr")).to_have_count(5, timeout=UI_TIMEOUT * MS)
    first_page = records.locator("tbody").text_content()
    observe.get_by_role("button", name="Older").click()
    expect(observe.get_by_text(re.compile(r"^page 2: "))).to_be_visible(timeout=UI_TIMEOUT * MS)
    expect(records.locator("tbody")).not_to_have_text(first_page)
    page.shot("older", observe)
    observe.get_by_role("button", name="Newer").click()
    expect(observe.get_by_text(re.compile(r"^page 1: "))).to_be_visible(timeout=UI_TIMEOUT * MS)
    expect(records.locator("tbody")).to_have_text(first_page)
    expect(observe.get_by_role("button", name="First page")).to_be_disabled()

    # download: every matching record, as a text file named after the API name
    with page.page.expect_download(timeout=UI_TIMEOUT * MS) as download:
        observe.get_by_role("button", name="Download").click()
    saved = download.value
    assert saved.suggested_filename == f"{dep['apiName']}-logs.txt"
    lines = Path(saved.path()).read_text().splitlines()
    assert lines[0].split("\t") == ["time", "level", "node_id", "message", "release"]
    assert len(lines) - 1 == total
    assert any("Replica ready" in line for line in lines)
    expect(observe.get_by_text(f"Downloaded {total} record(s)")).to_be_visible()

    # metrics: charts with a line per replica, refreshed while visible
    nodes = [r["nodeId"] for r in liveml.deployment(dep["rid"])["status"]["replicas"]]
    memory = observe.get_by_role("figure", name="Container memory")
    expect(memory).to_be_visible(timeout=UI_TIMEOUT * MS)
    for node in nodes:
        expect(memory.locator(".u-legend")).to_contain_text(node)
    expect(memory).to_contain_text("MiB")
    expect(observe.get_by_role("figure", name="Host CPU")).to_be_visible()
    rate = observe.get_by_role("figure", name="Request rate")
    expect(rate).to_be_visible(timeout=UI_TIMEOUT * MS)  # the queries above
    expect(rate.locator(".u-legend")).to_contain_text(nodes[0])
    expect(memory.locator("canvas")).to_have_count(1)
    page.shot("metrics", observe.locator(".jp-LiveML-metrics"))


def test_multi_io_model_through_v2_editors_and_a_disabled_deployment(page: LabPage, liveml, tmp_path):
    path = save(PriceAndCount(), tmp_path / "multi.pkl")
    liveml.create_objective("qo-multi")
    liveml.submit("qo-multi", path, name="m")
    liveml.release("qo-multi", "m", "1", tag="production")
    dep = liveml.wait(liveml.deploy("qo-multi", "Multi", replicas=1)["rid"], timeout=NOTEBOOK_TIMEOUT)
    view, query = open_page(page, dep["rid"], "Query")

    houses = query.get_by_label("houses")
    expect(houses).to_be_visible(timeout=UI_TIMEOUT * MS)
    assert json.loads(houses.input_value()) == [{"price": 0, "city": ""}]  # a row template
    discount = query.get_by_label("discount")
    expect(discount).to_have_value("0")  # its default
    sent = inference_requests(page)
    houses.fill('[{"price": 100, "city": "Austin"')
    query.get_by_role("button", name="Send").click()
    expect(query.locator(".jp-LiveML-field[data-field='houses'] .jp-LiveML-fieldError")).to_contain_text(
        "houses is not valid JSON")
    page.shot("bad-json", query)
    assert sent == []

    houses.fill(json.dumps([{"price": 100.0, "city": "Austin"}, {"price": 50, "city": "Chicago"}]))
    discount.fill("0.1")
    query.get_by_role("button", name="Send").click()
    priced = query.get_by_role("table", name="priced")
    expect(priced).to_be_visible(timeout=UI_TIMEOUT * MS)
    expect(priced.locator("tbody tr")).to_have_count(2)
    expect(priced.locator("tbody tr").first).to_contain_text("90")
    expect(query.get_by_label("count", exact=True)).to_have_text("2")
    expect(query.get_by_text(f"Answered by model {dep['release']['modelUuid']}")).to_be_visible()
    assert len(sent) == 1 and sent[0].split("?")[0].endswith(f"{dep['rid']}/v2")
    page.shot("answer", query)

    query.get_by_role("button", name="Copy as curl").click()
    curl = query.get_by_label("Snippet").input_value()
    assert f"{dep['rid']}/v2" in curl
    out = subprocess.run(["bash", "-c", curl], capture_output=True, text=True, timeout=60,
                         env=shell_env(page))
    assert out.returncode == 0 and json.loads(out.stdout)["count"] == 2, out.stdout + out.stderr

    liveml.disable(dep["rid"])
    wait_true(lambda: liveml.deployment(dep["rid"])["status"]["state"] == "DISABLED",
              what="the deployment to be disabled")
    expect(query.get_by_text("This deployment is disabled")).to_be_visible(timeout=UI_TIMEOUT * MS)
    expect(query.get_by_role("button", name="Send")).to_be_disabled()
    page.shot("disabled", query)
