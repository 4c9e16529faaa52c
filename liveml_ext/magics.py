"""``%load_ext liveml_ext``: the ``%liveml`` line magic and the ``%%liveml`` cell magic.

``%liveml SUBCOMMAND ...`` takes every ``liveml`` CLI subcommand with the same arguments (the same
parser) and returns rich results: DataFrames, deployment cards, plots. ``%%liveml query
DEPLOYMENT [--v2] [-o NAME]`` sends the cell body (JSON rows, a v2 object, or CSV) and shows the
answer as a DataFrame.
"""
from __future__ import annotations

import argparse
import io
import json
import shlex
from collections.abc import Callable
from typing import Any

import pandas as pd
from IPython.core.magic import Magics, line_cell_magic, magics_class
from IPython.display import HTML, Image, display

from . import cli, notebook
from . import display as ui
from .client import LiveMLClientError


def _objectives(doc: Any) -> Any:
    if isinstance(doc, list):
        return ui.frame(doc, ["name", "namespace", "description"], empty="no objectives yet")
    return ui.Record(doc, ui.note(f"Objective <b>{ui.escape(doc['name'])}</b> created in "
                                  f"namespace <code>{ui.escape(doc['namespace'])}</code> "
                                  f"{ui.short_id(doc['rid'])}", "ok"), f"objective {doc['name']}")


def _html(html: str) -> HTML:
    return HTML(ui.page(html))


# a command's answer -> what a notebook shows best (the CLI prints text for the same answers)
VIEWS: dict[str, Callable[[Any, argparse.Namespace], Any]] = {
    "ls": lambda doc, a: notebook.deployments_frame(doc),
    "objective": lambda doc, a: _objectives(doc),
    "submit": lambda doc, a: ui.Record(doc, ui.submission_card(doc), doc["name"]),
    "release": lambda doc, a: notebook.release_record(doc, a.submission),
    "promote": lambda doc, a: notebook.release_record(doc),
    "releases": lambda doc, a: notebook.releases_frame(
        doc, notebook.connect().submissions(a.objective)),
    "submissions": lambda doc, a: ui.frame(notebook.submission_rows(doc),
                                           ["name", "adapter", "inputs", "createdAt"],
                                           empty="no submissions yet"),
    "events": lambda doc, a: notebook.events_frame(doc),
    "logs": lambda doc, a: ui.frame(doc["data"], empty="no log records match in this window")
    if "data" in doc else _html(ui.note(f"wrote {doc['bytes']:,} bytes to "
                                         f"<code>{ui.escape(doc['file'])}</code>", "ok")),
    "metrics": lambda doc, a: _html(ui.metrics_summary(doc, a.kind or "")),
    "profiles": lambda doc, a: _html(ui.profiles_html(doc)),
    "delete": lambda doc, a: notebook.deleted(doc),
    "token": lambda doc, a: _html(ui.note(
        f"<code>{ui.escape(doc['token'])}</code> (scope {ui.escape(doc['scope'])}, namespace "
        f"{ui.escape(doc.get('namespace') or 'all')}; shown once: keep it safe)", "warn"))
    if "scope" in doc else _html(ui.note(f"<code>{ui.escape(doc['token'])}</code> for "
                                         f"<code>{ui.escape(doc['url'])}</code>")),
}


def error_html(err: LiveMLClientError) -> HTML:
    """The error envelope, readably: what was wrong and which input or column."""
    return HTML(ui.error_page(err))


def rich(command: str, doc: Any, args: argparse.Namespace) -> Any:
    """A command's result as what a notebook shows best."""
    if isinstance(doc, dict) and "status" in doc and "rid" in doc:
        return notebook.Deployment(doc["rid"])
    if command == "query":
        return notebook.answer(doc, bool(getattr(args, "v2", False)), unwrap=True)
    if command == "metrics" and getattr(args, "plot", None):
        display(Image(filename=args.plot))
    view = VIEWS.get(command)
    return doc if view is None else view(doc, args)


def parse(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace | None:
    """argparse without exiting the kernel: usage errors are printed, None is returned."""
    try:
        return parser.parse_args(argv)
    except SystemExit:
        return None


@magics_class
class LiveMLMagics(Magics):
    @line_cell_magic
    def liveml(self, line: str, cell: str | None = None) -> Any:
        """``%liveml COMMAND ...``: any `liveml` CLI command; ``%liveml -h`` lists them.
        ``%%liveml query DEPLOYMENT [--v2] [-o NAME]`` with JSON rows, a v2 object or CSV."""
        return self.liveml_line(line) if cell is None else self.liveml_cell(line, cell)

    def liveml_line(self, line: str) -> Any:
        """``%liveml COMMAND ...``: any `liveml` CLI command; ``%liveml -h`` lists them."""
        argv = shlex.split(line)
        args = parse(cli.build_parser(prog="%liveml"), argv)
        if args is None:
            return None
        if args.command == "panel":
            from .widgets import Panel

            return Panel(notebook.connect())
        if args.command == "releases-panel":
            from .widgets import ReleasesView

            return ReleasesView(args.objective, notebook.connect()).widget
        if args.command == "server":
            print("run `liveml server` in a terminal (or use JupyterLab with liveml installed): "
                  "a notebook cell should not host the control plane")
            return None
        try:
            doc = cli.run(argv, client=notebook.connect())
        except LiveMLClientError as err:
            display(error_html(err))
            return None
        except SystemExit as exc:  # a command's own usage error (e.g. --data is not JSON)
            print(exc)
            return None
        return rich(args.command, doc, args)

    def liveml_cell(self, line: str, cell: str) -> Any:
        """``%%liveml query DEPLOYMENT [--v2] [-o NAME]`` with JSON rows, a v2 object or CSV."""
        parser = argparse.ArgumentParser(prog="%%liveml query", add_help=True)
        parser.add_argument("command", choices=["query"])
        parser.add_argument("deployment")
        parser.add_argument("--v2", action="store_true")
        parser.add_argument("-o", "--output", help="store the result in this variable")
        args = parse(parser, shlex.split(line))
        if args is None:
            return None
        text = cell.strip()
        try:
            body: Any = json.loads(text)
        except ValueError:
            try:
                body = pd.read_csv(io.StringIO(text)).to_dict(orient="records")
            except (ValueError, pd.errors.ParserError) as exc:
                print(f"the cell is neither JSON nor CSV: {exc}")
                return None
        try:
            doc = notebook.connect().query(args.deployment, body, v2=args.v2)
        except LiveMLClientError as err:
            display(error_html(err))
            return None
        result = rich("query", doc, args)
        if args.output and self.shell is not None:
            self.shell.user_ns[args.output] = result
        return result


def load_ipython_extension(ipython: Any) -> None:
    """Register the magics (loading twice is harmless: IPython replaces them)."""
    ipython.register_magics(LiveMLMagics)
