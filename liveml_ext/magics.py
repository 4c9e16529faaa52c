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
from html import escape
from typing import Any

import pandas as pd
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class
from IPython.display import HTML, Image, display

from . import cli, notebook
from .client import LiveMLClientError

FRAMES = {"ls": lambda doc: pd.DataFrame([notebook.summary(d) for d in doc]),
          "objective": lambda doc: pd.DataFrame(doc) if isinstance(doc, list) else doc,
          "releases": pd.DataFrame, "events": pd.DataFrame,
          "submissions": lambda doc: pd.DataFrame([{k: v for k, v in r.items()
                                                    if k not in ("api", "requirements")}
                                                   for r in doc]),
          "logs": lambda doc: pd.DataFrame(doc["data"]) if "data" in doc else doc,
          "metrics": pd.DataFrame}


def error_html(err: LiveMLClientError) -> HTML:
    """The error envelope, readably: what was wrong and which input or column."""
    params = dict(err.parameters)
    message = params.pop("message", "")
    detail = params.pop("errorType", None)
    rows = "".join(f"<tr><td>{escape(str(k))}</td><td>{escape(json.dumps(v))}</td></tr>"
                   for k, v in {**(detail or {}), **params}.items())
    return HTML(f"<div style='border-left:4px solid #c62828;padding:4px 8px'>"
                f"<b>{escape(err.name)}</b> ({err.status}): {escape(message)}"
                f"{'<table>' + rows + '</table>' if rows else ''}</div>")


def rich(command: str, doc: Any, args: argparse.Namespace) -> Any:
    """A command's result as what a notebook shows best."""
    if isinstance(doc, dict) and "status" in doc and "rid" in doc:
        return notebook.Deployment(doc["rid"])
    if command == "query":
        if isinstance(doc, dict) and "responseData" in doc:
            return pd.DataFrame(doc["responseData"])
        outs = {k: notebook.rows_frame(v) for k, v in doc.items()}
        return next(iter(outs.values())) if len(outs) == 1 else outs
    if command == "metrics" and getattr(args, "plot", None):
        display(Image(filename=args.plot))
    if command in FRAMES:
        return FRAMES[command](doc)
    return doc


def parse(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace | None:
    """argparse without exiting the kernel: usage errors are printed, None is returned."""
    try:
        return parser.parse_args(argv)
    except SystemExit:
        return None


@magics_class
class LiveMLMagics(Magics):
    @line_magic
    def liveml(self, line: str) -> Any:
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

    @cell_magic("liveml")
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
        if args.output:
            self.shell.user_ns[args.output] = result
        return result


def load_ipython_extension(ipython: Any) -> None:
    """Register the magics (loading twice is harmless: IPython replaces them)."""
    ipython.register_magics(LiveMLMagics)
