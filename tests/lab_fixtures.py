"""Fixtures of the browser UI tests: one real ``jupyter lab``, one Chromium, and a fresh browser
context per test (``tests/lab_harness.py`` has the parts; docs/developers.md).

``make(scope)`` makes them for a scope: ``tests/browser/conftest.py`` shares one Lab per package;
the lab extension's UI tests (``labextension/ui-tests/``, which is not a Python package) import
them per module::

    lab, liveml, chromium, page = make("module")
"""
from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from conftest import REPO, replica_pids
from lab_harness import VIEWPORT, Lab, LabPage, launch_chromium, start_lab, wait_true

from liveml_ext.client import Client

NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb")) + [REPO / "notebooks" / "house_model.py"]


def make(scope: str) -> tuple[Callable, ...]:
    """The ``lab``, ``liveml``, ``chromium`` and ``page`` fixtures, the first three of ``scope``."""

    @pytest.fixture(scope=scope, name="lab")
    def lab_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
        """``jupyter lab`` with the example notebooks in its root folder and the liveml control
        plane inside it (its own LIVEML_HOME, which its kernels inherit)."""
        running = start_lab(tmp_path_factory.mktemp("lab"), NOTEBOOKS)
        yield running
        running.stop()

    @pytest.fixture(scope=scope, name="liveml")
    def liveml_fixture(lab: Lab) -> Client:
        """The control plane inside Lab (Jupyter's token manages liveml too)."""
        return Client(lab.url, lab.token)

    @pytest.fixture(scope=scope, name="chromium")
    def chromium_fixture() -> Iterator[object]:
        from playwright.sync_api import sync_playwright

        with sync_playwright() as playwright:
            browser = launch_chromium(playwright)
            yield browser
            browser.close()

    @pytest.fixture(name="page")
    def page_fixture(request: pytest.FixtureRequest, lab: Lab, liveml: Client,
                     chromium) -> Iterator[LabPage]:
        """A fresh browser context on Lab, logged in with the token. After the test: a screenshot
        if it failed; no kernel and no deployment left running (whatever the test reached)."""
        failed_before = request.session.testsfailed
        context = chromium.new_context(viewport=VIEWPORT)
        lab_page = LabPage(context.new_page(), lab, request.node.name)
        try:
            lab_page.goto()
            yield lab_page
        finally:
            if request.session.testsfailed > failed_before:  # the call phase failed
                try:
                    lab_page.shot("failed")
                except Exception:  # noqa: BLE001 - the test's own failure is what matters
                    pass
            context.close()
            lab.shutdown_kernels()
            for dep in liveml.deployments():
                liveml.delete(dep["rid"])
            wait_true(lambda: not replica_pids(lab.home), timeout=120,
                      what="the test's replicas to stop")

    return lab_fixture, liveml_fixture, chromium_fixture, page_fixture
