"""The example notebooks in a real JupyterLab, in a real Chromium, through Lab's own Run menu.

Each notebook runs twice: Run All Cells on the kernel Lab starts with it, then Kernel > Restart
Kernel and Run All Cells. Both runs must end without an error output and show what the notebook
is there to show. The assertions read text and elements (tables, images, widgets), not the CSS
classes of liveml's own HTML.
"""
from __future__ import annotations

import time

import nbformat
import pytest
from lab_harness import NOTEBOOK_TIMEOUT, UI_TIMEOUT, WIDGET, LabPage, elapsed
from playwright.sync_api import expect

RUNS = [pytest.param(False, id="run-all"), pytest.param(True, id="restart-run-all")]
MS = 1000


def run(page: LabPage, notebook: str, restart: bool) -> str:
    """Open ``notebook``, run it all (the second time: restart and run all); no error output."""
    page.open_notebook(notebook)
    started = time.monotonic()
    cells = page.run_all(restart=restart, timeout=NOTEBOOK_TIMEOUT)
    took = elapsed(started)
    print(f"{page.test_name}: {notebook} ran in {took}")
    page.shot("finished")
    page.assert_no_errors(cells)
    return took


def image_loaded(image) -> bool:
    return image.evaluate("img => img.complete && img.naturalWidth > 0")


@pytest.mark.parametrize("restart", RUNS)
def test_quickstart(page: LabPage, restart: bool):
    run(page, "quickstart.ipynb", restart)
    card = page.outputs("dep = lm.deploy")
    expect(card).to_contain_text("ACTIVE")
    page.shot("deployment", card)

    table = page.outputs("predictions = dep.transform").locator("table", has_text="prediction").first
    expect(table).to_be_visible()
    page.shot("predictions", table)

    image = page.outputs("plot_metrics").locator("img").first
    image.scroll_into_view_if_needed(timeout=UI_TIMEOUT * MS)
    expect(image).to_be_visible()
    assert image_loaded(image), "the metrics plot did not load"
    page.shot("metrics", image)


@pytest.mark.parametrize("restart", RUNS)
def test_multi_io_adapter(page: LabPage, restart: bool):
    run(page, "multi_io_adapter.ipynb", restart)
    refused = page.outputs('"discount": "a lot"')
    expect(refused).to_contain_text("InferenceInvalidInput")
    page.shot("refused", refused)

    priced = page.outputs('out["priced"]').locator("table", has_text="final").first
    expect(priced).to_be_visible()
    page.shot("priced", priced)


@pytest.mark.parametrize("restart", RUNS)
def test_operations(page: LabPage, restart: bool):
    run(page, "operations.ipynb", restart)
    disabled = page.outputs("%liveml disable")
    expect(disabled).to_contain_text("DISABLED")
    enabled = page.outputs("%liveml enable")
    expect(enabled).to_contain_text("ACTIVE")
    page.shot("enabled", enabled)

    panel = page.outputs("%liveml releases-panel")
    widget = panel.locator(WIDGET).first
    widget.scroll_into_view_if_needed(timeout=UI_TIMEOUT * MS)
    expect(widget).to_be_visible(timeout=UI_TIMEOUT * MS)
    expect(panel.get_by_role("button", name="Mark as Production")).to_be_visible()
    expect(panel).not_to_contain_text("Loading widget")
    expect(panel).not_to_contain_text("ReleasesView(")  # a widget's text repr: not rendered
    page.shot("releases-panel", panel)


def test_harness_reports_a_failing_cell(page: LabPage):
    """The error detector catches a raised exception, names the cell and its error, and keeps a
    stream to stderr apart (both look the same in Lab's DOM); a widget really renders."""
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {
        "name": "python3", "display_name": "Python 3", "language": "python"}})
    nb.cells = [nbformat.v4.new_code_cell("import sys\nprint('only a warning', file=sys.stderr)"),
                nbformat.v4.new_code_cell("import ipywidgets\nipywidgets.Button(description='Press')"),
                nbformat.v4.new_code_cell("raise ValueError('deliberately broken')"),
                nbformat.v4.new_code_cell("print('never reached')")]
    (page.lab.root / "broken.ipynb").write_text(nbformat.writes(nb))
    page.open_notebook("broken.ipynb")
    cells = page.run_all()
    page.shot("finished")
    assert cells[0].stderr == ["only a warning\n"] and not cells[0].errors
    assert [len(c.errors) for c in cells] == [0, 0, 1, 0]
    problems = page.problems(cells)
    assert "code cell 2" in problems and "ValueError: deliberately broken" in problems, problems
    assert "never run: [3]" in problems, problems
    with pytest.raises(AssertionError, match="deliberately broken"):
        page.assert_no_errors(cells)
    expect(page.outputs("ipywidgets.Button").get_by_role("button", name="Press")).to_be_visible(
        timeout=UI_TIMEOUT * MS)
