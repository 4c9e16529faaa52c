"""One progress display for waiting on a deployment: a terminal, a pipe or a notebook.

- In a notebook (``tqdm.auto`` picks the widget bar when ipywidgets is there): a widget bar.
- In a terminal: one tqdm line, narrower than the terminal (at most 100 columns), without
  rates: ``starting ████▌     1/2 replicas ready, node 3f2a: Loading model artifact``.
- When the output is not a terminal (CI, pipes, ``liveml deploy --wait 2>log``): one plain line
  per change, no ``\\r`` frames, no repeats.

Each ends with the final state (``ACTIVE: 2/2 replicas ready, release 1.0``), not the last
startup step. The texts come from ``progress_text`` (pure), the same for the three.
"""
from __future__ import annotations

import contextlib
import shutil
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, TextIO

from .client import Client, LiveMLClientError
from .core.states import ReplicaState

BAR_FORMAT = "{desc} {bar} {n}/{total} replicas ready{postfix}"
MAX_COLUMNS = 100
STEP_COLUMNS = 48  # the startup step's share of a bar line


@dataclass(frozen=True)
class Progress:
    """Where a deployment stands, as the three displays show it."""

    state: str    # "starting", "active", ... (lower case while waiting)
    ready: int    # ready replicas of the target release
    total: int    # desired replicas
    detail: str   # the newest startup step ("node x: Loading model artifact") or ""

    @property
    def line(self) -> str:
        """``starting: 0/2 replicas ready — node x: Loading model artifact``."""
        return f"{self.state}: {self.ready}/{self.total} replicas ready" + \
            (f" — {self.detail}" if self.detail else "")


def progress_text(doc: dict[str, Any], step: dict[str, Any] | None = None,
                  final: bool = False) -> Progress:
    """A deployment document (and the newest replica log record, ``{node_id, message}``) as
    ``Progress``. ``final``: the end state, e.g. ``ACTIVE: 2/2 replicas ready, release 1.0``
    (its detail is the release, or the reason when it is not ready)."""
    st = doc["status"]
    version = (doc.get("targetRelease") or {}).get("version")
    total = max(0, int(st.get("desiredReplicas") or 0))
    ready = sum(1 for r in st.get("replicas", [])
                if r.get("state") == ReplicaState.READY and r.get("releaseVersion") == version)
    ready = min(ready, total) if total else ready
    if final:
        served = (doc.get("release") or {}).get("version")
        detail = st.get("reason") or (f"release {served}" if served else "")
        return Progress(st["state"], ready, total, detail)
    detail = f"node {step['node_id']}: {step['message']}" if step else (st.get("reason") or "")
    return Progress(st["state"].lower(), ready, total, detail)


def final_line(p: Progress) -> str:
    return f"{p.state}: {p.ready}/{p.total} replicas ready" + (f", {p.detail}" if p.detail else "")


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[:max(0, width - 1)] + "…"


class _Lines:
    """Plain lines, one per change (for files that are not terminals)."""

    def __init__(self, file: TextIO) -> None:
        self.file, self.last = file, ""

    def show(self, p: Progress) -> None:
        if p.line != self.last:
            self.last = p.line
            print(p.line, file=self.file, flush=True)

    def close(self, text: str) -> None:
        if text != self.last:
            print(text, file=self.file, flush=True)


class _Bar:
    """A tqdm bar (terminal or notebook widget) with a known total and no rates."""

    def __init__(self, total: int, file: TextIO | None, notebook: bool) -> None:
        from tqdm.auto import tqdm

        # one column short of the terminal: a full-width line wraps in some terminals
        width = None if notebook else \
            min(MAX_COLUMNS, shutil.get_terminal_size((80, 24)).columns - 1)
        self.step_width = STEP_COLUMNS if width is None else max(10, width - 45)
        self.bar = tqdm(total=max(1, total), desc="starting", file=file, leave=True,
                        bar_format=BAR_FORMAT, ncols=width, dynamic_ncols=False)

    def show(self, p: Progress) -> None:
        self.bar.total = max(1, p.total)
        self.bar.n = min(self.bar.total, p.ready)
        self.bar.set_description_str(p.state, refresh=False)
        self.bar.set_postfix_str(_clip(p.detail, self.step_width), refresh=False)
        self.bar.refresh()

    def close(self, text: str) -> None:
        self.bar.set_description_str(text, refresh=False)
        self.bar.set_postfix_str("", refresh=False)
        self.bar.bar_format = "{desc}"
        self.bar.refresh()
        self.bar.close()


def _is_notebook_bar() -> bool:
    from tqdm.auto import tqdm

    try:
        from tqdm.notebook import tqdm_notebook
    except ImportError:  # pragma: no cover - tqdm always has it
        return False
    return issubclass(tqdm, tqdm_notebook)


def _display(total: int, file: TextIO | None) -> _Lines | _Bar:
    import sys

    if _is_notebook_bar():
        return _Bar(total, file, notebook=True)
    out = file or sys.stderr
    isatty = getattr(out, "isatty", None)
    if callable(isatty) and isatty():
        return _Bar(total, out, notebook=False)
    return _Lines(out)


def wait_with_progress(client: Client, ref: str, file: TextIO | None = None,
                       timeout: float = 300.0) -> dict[str, Any]:
    """``client.wait`` with progress on ``file`` (default stderr); the final state at the end,
    also when it fails (then the error is raised)."""
    doc = client.deployment(ref)  # the desired count is known before anything is drawn
    display = _display(int(doc["status"].get("desiredReplicas") or 1), file)
    step: dict[str, Any] | None = None
    last_step = [0.0]
    latest = [doc]  # the newest document read, for the final line when waiting fails

    def progress(doc: dict[str, Any]) -> None:
        nonlocal step
        if time.monotonic() - last_step[0] > 0.5:  # the newest startup step, twice a second
            last_step[0] = time.monotonic()
            try:
                rows = client.logs(doc["rid"], "logger:liveml.replica", since="15m", limit=1,
                                   columns=["node_id", "message"])["data"]
            except LiveMLClientError:
                rows = []
            step = rows[0] if rows else step
        latest[0] = doc
        display.show(progress_text(doc, step))

    try:
        doc = client.wait(ref, timeout=timeout, progress=progress)
        latest[0] = doc
    finally:
        display.close(final_line(progress_text(latest[0], final=True)))
    return doc


@contextlib.contextmanager
def spinner(text: str, file: TextIO | None = None) -> Iterator[None]:
    """A wait of unknown length (a replay): ``text`` and the seconds so far, refreshed twice a
    second on a terminal; one line when the output is not a terminal."""
    out = file or sys.stderr
    if not out.isatty():
        print(f"{text} ...", file=out, flush=True)
        yield
        return
    from tqdm.auto import tqdm

    bar = tqdm(total=None, desc=text, bar_format="{desc} {elapsed}", file=out, leave=False)
    stop = threading.Event()

    def tick() -> None:
        while not stop.wait(0.5):
            bar.refresh()

    thread = threading.Thread(target=tick, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        bar.close()

