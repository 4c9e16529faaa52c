"""A real JupyterLab driven by a real Chromium: the harness of the browser UI tests.

``start_lab`` runs ``jupyter lab`` (the liveml server extension inside it) on a free loopback
port, isolated from the user's Jupyter, IPython and liveml folders; ``launch_chromium`` starts
the system's Chromium through Playwright (no downloaded browsers); ``LabPage`` drives Lab's own
UI: open a notebook, Run All, Restart Kernel and Run All, wait until the run is over, read the
error outputs, take screenshots. ``tests/browser/conftest.py`` turns them into fixtures.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import requests
from conftest import REPO, free_port, pids_alive, replica_pids, terminate, wait_for

TOKEN = "liveml-browser-test-token"
CHROMIUM = os.environ.get("LIVEML_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
VIEWPORT = {"width": 1400, "height": 900}
NOTEBOOK_TIMEOUT = 600  # s: a whole notebook, on a busy 2-core machine
UI_TIMEOUT = 60  # s: Lab itself answering a click

# User settings that make Lab quiet and deterministic: no news or update checks (no toasts),
# every cell attached to the DOM (no windowing: off-screen outputs are there to assert on).
LAB_SETTINGS = {
    "@jupyterlab/apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
    "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},
    "@jupyterlab/docmanager-extension/plugin": {"autosave": False},
}


def screenshots_dir() -> Path:
    path = Path(os.environ.get("LIVEML_SCREENSHOTS") or REPO / "test-artifacts" / "screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path


@dataclass
class Lab:
    """A running ``jupyter lab``: its URL (with the base URL, ending in /), token and folders."""

    url: str
    token: str
    root: Path  # the server's root_dir: the notebooks are here
    home: Path  # LIVEML_HOME of the server and of its kernels
    log: Path
    proc: subprocess.Popen

    def get(self, path: str, **kw) -> requests.Response:
        return requests.get(self.url + path, headers={"Authorization": f"token {self.token}"},
                            timeout=10, **kw)

    def shutdown_kernels(self) -> None:
        """End every kernel session (what a test's notebooks started)."""
        headers = {"Authorization": f"token {self.token}"}
        for session in self.get("api/sessions").json():
            requests.delete(f"{self.url}api/sessions/{session['id']}", headers=headers, timeout=30)
        wait_for(lambda: not self.get("api/kernels").json(), timeout=UI_TIMEOUT,
                 what="the kernels to shut down")

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self, timeout: float = 60) -> None:
        """SIGTERM (Lab shuts its kernels down, the extension its replicas), then SIGKILL; then no
        replica of this home is left."""
        pids = replica_pids(self.home)
        terminate(self.proc, timeout)
        try:  # kernels and their children left in the session Lab was started in
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        wait_for(lambda: not pids_alive(pids) and not replica_pids(self.home), timeout=60,
                 what="the replicas to stop with Lab")


def lab_env(base: Path) -> dict[str, str]:
    """The environment of an isolated Lab: temporary Jupyter/IPython/liveml folders. The venv's
    share/jupyter (lab extensions, the kernelspec) and etc/jupyter (the server extensions) stay
    on the paths: they are the sys.prefix entries, which these variables do not replace."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("LIVEML_", "JUPYTER", "IPYTHON"))}
    dirs = {"LIVEML_HOME": "liveml-home", "JUPYTER_CONFIG_DIR": "jupyter-config",
            "JUPYTER_DATA_DIR": "jupyter-data", "JUPYTER_RUNTIME_DIR": "jupyter-runtime",
            "IPYTHONDIR": "ipython", "JUPYTERLAB_SETTINGS_DIR": "lab-settings",
            "JUPYTERLAB_WORKSPACES_DIR": "lab-workspaces"}
    for var, name in dirs.items():
        (base / name).mkdir(parents=True, exist_ok=True)
        env[var] = str(base / name)
    env["JUPYTER_PLATFORM_DIRS"] = "1"
    return env


def write_lab_settings(settings_dir: Path, settings: dict[str, dict] = LAB_SETTINGS) -> None:
    for plugin, values in settings.items():
        path = settings_dir / f"{plugin}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))


def start_lab(base: Path, files: Iterable[Path] = (), timeout: float = 180,
              args: tuple[str, ...] = ()) -> Lab:
    """``jupyter lab`` with ``files`` copied into its root folder, once it and the liveml control
    plane inside it answer."""
    root = base / "root"
    root.mkdir(parents=True, exist_ok=True)
    for f in files:
        shutil.copy(f, root / f.name)
    env = lab_env(base)
    write_lab_settings(Path(env["JUPYTERLAB_SETTINGS_DIR"]))
    port = free_port()
    log = base / "lab.log"
    cmd = [sys.executable, "-m", "jupyter", "lab", "--no-browser", f"--port={port}",
           "--ServerApp.ip=127.0.0.1", "--ServerApp.port_retries=0",
           f"--IdentityProvider.token={TOKEN}", f"--ServerApp.root_dir={root}",
           "--LabApp.news_url=None", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
           "--LabApp.extension_manager=readonly", "--LabApp.expose_app_in_browser=True", *args]
    if os.geteuid() == 0:
        cmd.append("--allow-root")
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=root,
                                start_new_session=True)
    lab = Lab(f"http://127.0.0.1:{port}/", TOKEN, root, Path(env["LIVEML_HOME"]), log, proc)

    def answers(path: str) -> bool:
        assert proc.poll() is None, f"jupyter lab exited:\n{lab.log_text()}"
        try:
            return lab.get(path).status_code == 200
        except requests.RequestException:
            return False

    try:
        wait_for(lambda: answers("api/status"), timeout=timeout, interval=0.2, what="jupyter lab")
        wait_for(lambda: answers("liveml/api/deployments") and (lab.home / "connection.json").exists(),
                 timeout=timeout, interval=0.2, what="the liveml control plane inside Lab")
    except BaseException:
        lab.stop()
        raise
    return lab


def launch_chromium(playwright):
    """The system's Chromium, headless, with a fresh profile (Playwright's temporary one)."""
    if not Path(CHROMIUM).exists():
        raise RuntimeError(f"no Chromium at {CHROMIUM}: apt-get install chromium "
                           "(or set LIVEML_CHROMIUM); browsers are never downloaded")
    return playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)


# In JupyterLab 4's DOM a traceback and a stream to stderr look alike (both are rendered as
# `.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]`), so the outputs' kinds
# are read from the notebook's model (Lab runs with `expose_app_in_browser`), the prompts (`[*]`
# while queued or running) from the DOM. Widget views render as `.jupyter-widgets`.
STDERR_OUTPUT = '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]'
WIDGET = ".jupyter-widgets"

_CELLS_JS = """() => {
    const panel = window.jupyterapp.shell.currentWidget;
    const model = panel.context.model.toJSON().cells.filter(c => c.cell_type === 'code');
    const nodes = Array.from(panel.node.querySelectorAll('.jp-Cell.jp-CodeCell'));
    return model.map((c, i) => ({
        index: i,
        prompt: nodes[i] ? (nodes[i].querySelector('.jp-InputArea-prompt') || {}).textContent || '' : '',
        source: Array.isArray(c.source) ? c.source.join('') : c.source,
        errors: c.outputs.filter(o => o.output_type === 'error').map(
            o => o.ename + ': ' + o.evalue + '\\n' + o.traceback.join('\\n')),
        stderr: c.outputs.filter(o => o.output_type === 'stream' && o.name === 'stderr').map(
            o => Array.isArray(o.text) ? o.text.join('') : o.text),
    }));
}"""
ANSI = re.compile(r"\x1b\[[0-9;]*m")


@dataclass
class CellOutput:
    index: int  # among the code cells, from 0
    prompt: str
    source: str
    errors: list[str]
    stderr: list[str]


@dataclass
class LabPage:
    """A Playwright page on a Lab, with helpers that go through Lab's own UI."""

    page: object  # playwright.sync_api.Page
    lab: Lab
    test_name: str = "test"
    shots: list[Path] = field(default_factory=list)

    # -- the app ---------------------------------------------------------------------------
    def goto(self, path: str = "lab") -> None:
        """Load Lab at ``path`` on a reset workspace (no tabs left open by an earlier test)."""
        self.page.goto(f"{self.lab.url}{path}?reset&token={self.lab.token}")
        self.page.locator("#jp-main-dock-panel").wait_for(timeout=UI_TIMEOUT * 1000)
        self.page.locator(".jp-LabShell").wait_for(timeout=UI_TIMEOUT * 1000)
        self.dismiss_popups()

    def collapse_left_sidebar(self) -> None:
        """Fold the file browser away (a click on its open tab), so the notebook gets the width."""
        current = self.page.locator(".jp-SideBar.jp-mod-left .lm-TabBar-tab.lm-mod-current")
        if current.count():
            current.first.click()
            wait_for(lambda: current.count() == 0, timeout=UI_TIMEOUT, what="the sidebar to fold")

    def dismiss_popups(self) -> None:
        """Close toasts (news, updates, anything else) that would cover the page."""
        for button in self.page.locator(".Toastify__close-button").all():
            try:
                button.click(timeout=2000)
            except Exception:  # noqa: BLE001 - gone meanwhile: nothing to close
                pass

    def menu(self, *path: str) -> None:
        """Click through the main menu bar: ``menu("Run", "Run All Cells")``."""
        self.page.keyboard.press("Escape")
        bar = self.page.locator("#jp-MainMenu")
        bar.locator(".lm-MenuBar-item", has_text=re.compile(rf"^{re.escape(path[0])}$")).click()
        for label in path[1:]:
            item = self.page.locator(".lm-Menu:visible .lm-Menu-item").filter(
                has=self.page.locator(".lm-Menu-itemLabel", has_text=re.compile(
                    rf"^{re.escape(label)}…?$")))
            item.first.click()

    def accept_dialog(self, timeout: float = UI_TIMEOUT) -> str:
        """Press the accept button of the dialog Lab shows; return the dialog's text."""
        dialog = self.page.locator(".jp-Dialog")
        dialog.wait_for(timeout=timeout * 1000)
        text = dialog.inner_text()
        dialog.locator(".jp-Dialog-button.jp-mod-accept").click()
        dialog.wait_for(state="detached", timeout=timeout * 1000)
        return text

    # -- notebooks ---------------------------------------------------------------------------
    @property
    def notebook(self):
        return self.page.locator(".jp-NotebookPanel:visible .jp-Notebook")

    def open_notebook(self, path: str) -> None:
        """Open ``path`` (relative to Lab's root) and wait until its kernel is idle."""
        self.goto(f"lab/tree/{path}")
        self.page.locator(f'.lm-TabBar-tab.jp-mod-current[title*="Path: {path}"]').wait_for(
            timeout=UI_TIMEOUT * 1000)
        self.notebook.locator(".jp-Cell").first.wait_for(timeout=UI_TIMEOUT * 1000)
        wait_until(lambda: self.accept_kernel_choice() or self.kernel_status() == "idle",
                   UI_TIMEOUT * 2, "the notebook's kernel to start", self.state)
        self.collapse_left_sidebar()
        self.wait_kernel_idle()

    def accept_kernel_choice(self) -> bool:
        """Accept Lab's "Select Kernel" dialog (a notebook without a known kernelspec) with its
        default choice. False either way, so that a wait goes on until the kernel is idle."""
        dialog = self.page.locator(".jp-Dialog", has_text="Select Kernel")
        if not dialog.count():
            return False
        self.accept_dialog()
        return False

    def kernel_status(self) -> str:
        ind = self.page.locator(".jp-NotebookPanel:visible .jp-Notebook-ExecutionIndicator")
        return (ind.first.get_attribute("data-status") or "") if ind.count() else ""

    def wait_kernel_idle(self, timeout: float = UI_TIMEOUT) -> None:
        wait_until(lambda: self.kernel_status() == "idle", timeout, "the kernel to be idle", self.state)

    def state(self) -> str:
        """The kernel's status and the code cells' prompts, for a timeout's message."""
        try:
            return f"kernel {self.kernel_status()!r}, prompts {[c.prompt for c in self.cells()]}"
        except Exception as exc:  # noqa: BLE001 - the page itself may be what is broken
            return f"unreadable page: {exc}"

    def cells(self) -> list[CellOutput]:
        cells = [CellOutput(**c) for c in self.page.evaluate(_CELLS_JS)]
        for c in cells:
            c.errors = [ANSI.sub("", e) for e in c.errors]
        return cells

    def clear_outputs(self) -> None:
        self.menu("Edit", "Clear Outputs of All Cells")
        wait_for(lambda: all(c.prompt.strip() in ("[ ]:", "") for c in self.cells()), timeout=UI_TIMEOUT,
                 what="the outputs to be cleared")

    def run_all(self, restart: bool = False, timeout: float = NOTEBOOK_TIMEOUT) -> list[CellOutput]:
        """Clear the outputs, then Run > Run All Cells (or Kernel > Restart Kernel and Run All
        Cells, accepting its dialog) and wait until the run is over. Returns the code cells."""
        self.clear_outputs()
        if restart:
            self.menu("Kernel", "Restart Kernel and Run All Cells")
            self.accept_dialog()
        else:
            self.menu("Run", "Run All Cells")
        return self.wait_run_finished(timeout)

    def wait_run_finished(self, timeout: float = NOTEBOOK_TIMEOUT) -> list[CellOutput]:
        """Until some cell ran, none is queued or running (``[*]``), and the kernel is idle twice
        in a row (a queued cell can start right after an idle moment)."""
        seen = []

        def over() -> bool:
            cells = self.cells()
            ran = any(re.search(r"\[\d+\]", c.prompt) for c in cells)
            busy = any("*" in c.prompt for c in cells)
            done = ran and not busy and self.kernel_status() == "idle"
            seen.append(done)
            return len(seen) >= 2 and seen[-1] and seen[-2]

        wait_until(over, timeout, "the notebook run to finish", self.state, interval=0.5)
        return self.cells()

    def problems(self, cells: list[CellOutput] | None = None) -> str:
        """A readable account of every error output (and of cells the run never reached);
        empty when there is none."""
        cells = cells if cells is not None else self.cells()
        lines = []
        for c in cells:
            for err in c.errors:
                head, _, trace = err.partition("\n")
                lines.append(f"code cell {c.index} {c.prompt.strip()} raised {head}\n"
                             f"--- its source:\n{c.source.strip()[:600]}\n"
                             f"--- its traceback:\n{tail(trace.strip(), 1500)}")
        not_run = [c.index for c in cells if not re.search(r"\[\d+\]", c.prompt)]
        if not_run:
            lines.append(f"code cells never run: {not_run}")
        return "\n".join(lines)

    def assert_no_errors(self, cells: list[CellOutput] | None = None) -> None:
        """Fail with the failing cells' source and error text, after a screenshot ``error`` of
        the first cell that raised (or was never reached)."""
        cells = cells if cells is not None else self.cells()
        problems = self.problems(cells)
        if problems:
            bad = [c.index for c in cells if c.errors or not re.search(r"\[\d+\]", c.prompt)]
            self.shot("error", self.notebook.locator(".jp-CodeCell").nth(bad[0]))
        assert not problems, f"{self.test_name}: the notebook run failed\n{problems}"

    def cell(self, source: str):
        """The code cell whose source holds ``source`` (the first one)."""
        editor = self.page.locator(".jp-InputArea-editor", has_text=source)
        return self.notebook.locator(".jp-CodeCell").filter(has=editor).first

    def outputs(self, source: str):
        """The output area of the code cell whose source holds ``source``."""
        return self.cell(source).locator(".jp-OutputArea")

    # -- evidence ----------------------------------------------------------------------------
    def shot(self, step: str, target=None) -> Path:
        """A full-page PNG ``<test>-<step>.png`` in the screenshots folder; ``target`` (a
        locator) is scrolled into view first."""
        if target is not None:
            try:
                target.first.scroll_into_view_if_needed(timeout=5000)
            except Exception:  # noqa: BLE001 - the screenshot is evidence, not an assertion
                pass
        test = re.sub(r"\[(.*)\]$", r"-\1", self.test_name)  # test_x[param] -> test_x-param
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{test}-{step}")
        path = screenshots_dir() / f"{safe}.png"
        self.page.screenshot(path=str(path), full_page=True)
        self.shots.append(path)
        return path


def tail(text: str, limit: int) -> str:
    """The last whole lines of ``text`` within ``limit`` characters."""
    if len(text) <= limit:
        return text
    cut = text[-limit:]
    return "[...]\n" + cut[cut.find("\n") + 1:]


def wait_until(predicate, timeout: float, what: str, state=lambda: "", interval: float = 0.25):
    """``conftest.wait_for``, whose timeout message also says ``state()`` at that moment."""
    try:
        return wait_for(predicate, timeout=timeout, interval=interval, what=what)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; now: {state()}") from None


def wait_true(predicate, timeout: float = UI_TIMEOUT, what: str = "condition"):
    """``conftest.wait_for`` with UI timeouts, for a test's own conditions."""
    return wait_for(predicate, timeout=timeout, interval=0.25, what=what)


def elapsed(since: float) -> str:
    return f"{time.monotonic() - since:.1f}s"
