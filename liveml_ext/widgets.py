"""ipywidgets panels (stock widgets only): deployments, a create form, details, releases.

``%liveml panel`` shows ``Panel()``. Every action runs on a worker thread, so the kernel never
blocks while a deployment starts or a query runs; errors show inline in the form that caused them.
Results are written into widgets' values (``HTML``, ``Image``, a ``Box``'s children), never
through an ``Output`` widget's context: an ``Output`` only captures what its own thread displays,
so what a worker thread shows there never reaches the browser.
"""
from __future__ import annotations

import json
import shlex
import threading
from collections.abc import Callable
from typing import Any

import ipywidgets as w

from . import display as ui
from . import notebook
from .client import Client, LiveMLClientError
from .core.names import API_NAME, NAME

LABEL = {"description_width": "8.5em"}  # wide enough for every label here, none cut


def _note(text: str, kind: str = "info") -> str:
    return ui.page(ui.note(text, kind))


def _button(description: str, style: str = "", icon: str = "") -> w.Button:
    return w.Button(description=description, button_style=style, icon=icon,
                    layout=w.Layout(width="fit-content", min_width="7em"))


def _field(cls: type, description: str, width: str = "24em", **kwargs: Any) -> Any:
    return cls(description=description, style=LABEL, layout=w.Layout(width=width), **kwargs)


class Base:
    """Runs actions off the kernel's thread and reports their errors in ``self.message``."""

    def __init__(self, client: Client | None = None, background: bool = True) -> None:
        self.client = client or notebook.connect()
        self.background = background
        self.message = w.HTML()
        self._threads: list[threading.Thread] = []

    def run(self, action: Callable[[], Any], done: Callable[[Any], None] | None = None,
            message: w.HTML | None = None) -> None:
        """Run ``action`` (on a thread), then ``done(result)``; errors go to ``message``."""
        target = message or self.message

        def work() -> None:
            try:
                result = action()
                if done is not None:
                    done(result)
            except Exception as err:  # noqa: BLE001 - shown in the form, never raised into the kernel
                target.value = ui.error_page(err)

        if self.background:
            thread = threading.Thread(target=work, daemon=True)
            self._threads.append(thread)
            thread.start()
        else:
            work()

    def join(self, timeout: float = 300.0) -> None:
        """Wait for the actions started so far (for scripts and tests)."""
        for thread in list(self._threads):
            thread.join(timeout)


class CreateDeploymentForm(Base):
    """Name, description, environment, profiles; validated before anything is sent."""

    def __init__(self, client: Client | None = None, background: bool = True,
                 on_created: Callable[[str], None] | None = None) -> None:
        super().__init__(client, background)
        self.on_created = on_created
        profiles = self.client.profiles()
        objectives = [o["name"] for o in self.client.objectives()]
        self.objective = _field(w.Dropdown, "Objective", options=objectives,
                                value=objectives[0] if objectives else None)
        self.name = _field(w.Text, "Name", placeholder="House prices")
        self.api_name = _field(w.Text, "API name", placeholder="(from the name)")
        self.description = _field(w.Textarea, "Description", width="36em")
        self.environment = w.ToggleButtons(options=["Staging", "Production"], value="Production",
                                           description="Environment", style=LABEL)
        self.replica_profile = _field(
            w.Dropdown, "Replicas", value="default",
            options=[(f"{p['name']} ({p['minReplicas']}" + (
                f"–{p['maxReplicas']}" if p["maxReplicas"] != p["minReplicas"] else "") +
                ")", p["name"]) for p in profiles["replicaProfiles"]])
        self.resource_profile = _field(
            w.Dropdown, "Resources", value="default",
            options=[(f"{p['name']} ({ui.fmt.decimal(p['cpu'])} vCPU, {p['memory']})", p["name"])
                     for p in profiles["resourceProfiles"]])
        self.create = _button("Create deployment", "primary", "rocket")
        self.progress = w.IntProgress(min=0, max=1, description="", style=LABEL,
                                      layout=w.Layout(width="36em", visibility="hidden"))
        self.create.on_click(lambda _: self.submit())
        self.widget = w.VBox([w.HTML("<b>New live deployment</b>"), self.objective, self.name,
                              self.api_name, self.description, self.environment,
                              self.replica_profile, self.resource_profile, self.create,
                              self.progress, self.message])
        self.rid: str | None = None

    def validate(self) -> str:
        """'' when the form can be sent, else what to fix (shown inline)."""
        if not self.objective.value:
            return "choose an objective (create one with %liveml objective create NAME)"
        if not NAME.match(self.name.value or ""):
            return "the name needs letters or digits (spaces, '.', '_', '-' allowed)"
        if self.api_name.value and not API_NAME.match(self.api_name.value):
            return "the API name takes lowercase letters, digits, '-' and '_'"
        tags = {r["tag"] for r in self.client.releases(self.objective.value)}
        if self.environment.value.upper() not in tags:
            return (f"objective {self.objective.value!r} has no release tagged "
                    f"{self.environment.value}: release one first (%liveml releases-panel "
                    f"{self.objective.value})")
        return ""

    def submit(self) -> None:
        problem = self.validate()
        if problem:
            self.message.value = _note(ui.escape(problem), "error")
            return
        self.message.value = _note("creating…")
        self.create.disabled = True

        def action() -> dict[str, Any]:
            try:
                doc = self.client.deploy(
                    self.objective.value, self.name.value, self.environment.value.lower(),
                    replica_profile=self.replica_profile.value,
                    resource_profile=self.resource_profile.value,
                    api_name=self.api_name.value or None, description=self.description.value)
                self.rid = doc["rid"]
                self._progress(doc)
                self.progress.layout.visibility = "visible"
                return self.client.wait(doc["rid"], progress=self._progress)
            finally:
                self.create.disabled = False

        def done(doc: dict[str, Any]) -> None:
            self._progress(doc)
            self.message.value = _note(
                f"<b>{ui.escape(doc['name'])}</b> is {ui.badge(doc['status']['state'])} "
                f"<code>{ui.escape(doc['apiName'])}</code> {ui.short_id(doc['rid'])}", "ok")
            self.name.value = self.api_name.value = self.description.value = ""
            if self.on_created:
                self.on_created(doc["rid"])

        self.run(action, done)

    def _progress(self, doc: dict[str, Any]) -> None:
        st = doc["status"]
        self.progress.max = max(1, st["desiredReplicas"])
        self.progress.value = min(self.progress.max, st["readyReplicas"])
        self.progress.description = f"{st['state'].lower()} {self.progress.value}/" \
                                    f"{self.progress.max}"
        self.progress.bar_style = "success" if st["state"] == "ACTIVE" else ""


class DeploymentView(Base):
    """Details of one deployment: overview and edits, Query, Logs & Metrics."""

    def __init__(self, rid: str, client: Client | None = None, background: bool = True,
                 on_change: Callable[[], None] | None = None) -> None:
        super().__init__(client, background)
        self.rid = rid
        self.on_change = on_change  # after an edit, disable, enable or delete (the panel's list)
        doc = self.client.deployment(rid)
        self.doc = doc
        self.api = self._model_api(doc)
        # overview
        self.status = w.HTML()
        self.api_name = _field(w.Text, "API name", value=doc["apiName"])
        self.save_api_name = _button("Save API name")
        rc = doc["runtimeConfiguration"]
        self.min_replicas = _field(w.BoundedIntText, "Min replicas", "13em",
                                   value=rc["minReplicas"], min=0, max=64)
        self.max_replicas = _field(w.BoundedIntText, "Max replicas", "13em",
                                   value=rc["maxReplicas"], min=0, max=64)
        self.cpu = _field(w.BoundedFloatText, "vCPU", "13em", value=rc["cpu"], min=0.01, max=256)
        self.memory = _field(w.Text, "Memory", "13em", value=rc["memory"])
        self.threads = _field(w.BoundedIntText, "Threads", "13em", value=rc["threadCount"],
                              min=1, max=1024)
        self.capture = _field(w.Dropdown, "Capture", "13em",
                              options=["off", "request", "response", "both"],
                              value=rc.get("capture", "off"))
        self.capture_sample = _field(w.BoundedFloatText, "Sample", "13em",
                                     value=rc.get("captureSample", 1.0), min=0, max=1, step=0.05)
        self.capture_max_bytes = _field(w.BoundedIntText, "Max bytes", "13em",
                                        value=rc.get("captureMaxBytes", 65536), min=0,
                                        max=50 * 1024 * 1024)
        self.save_config = _button("Save configuration")
        self.disable = _button("Disable", "warning", "pause")
        self.enable = _button("Enable", "success", "play")
        self.delete = _button("Delete", "danger", "trash")
        self.confirm = _button("Confirm", "danger")
        self.cancel = _button("Cancel")
        self.confirm.layout.display = self.cancel.layout.display = "none"
        self._pending: Callable[[], Any] | None = None
        self.save_api_name.on_click(lambda _: self.act(
            lambda: self.client.set_api_name(self.rid, self.api_name.value),
            "API name saved"))
        self.save_config.on_click(lambda _: self.act(lambda: self.client.update(
            self.rid, runtimeConfiguration={
                "minReplicas": self.min_replicas.value, "maxReplicas": self.max_replicas.value,
                "cpu": self.cpu.value, "memory": self.memory.value,
                "threadCount": self.threads.value, "capture": self.capture.value,
                "captureSample": self.capture_sample.value,
                "captureMaxBytes": self.capture_max_bytes.value}),
            "configuration saved: rolling out"))
        self.disable.on_click(lambda _: self.ask(
            "disable", lambda: self.client.disable(self.rid), "disabled (the RID is kept)"))
        self.enable.on_click(lambda _: self.act(lambda: self.client.enable(self.rid),
                                                "enabled: starting"))
        self.delete.on_click(lambda _: self.ask(
            "delete", lambda: self.client.delete(self.rid), "deleted for good"))
        self.confirm.on_click(lambda _: self._confirmed())
        self.cancel.on_click(lambda _: self._cancel())
        overview = w.VBox([self.status, w.HBox([self.api_name, self.save_api_name]),
                           w.HBox([self.min_replicas, self.max_replicas]),
                           w.HBox([self.cpu, self.memory, self.threads]),
                           w.HBox([self.capture, self.capture_sample, self.capture_max_bytes]),
                           self.save_config,
                           w.HBox([self.disable, self.enable, self.delete, self.confirm,
                                   self.cancel]),
                           self.message])
        # query
        self.rows: list[dict[str, Any]] = []
        columns = self._columns()
        self.single = self.api is not None and len(self.api["inputs"]) == 1 and bool(columns)
        self.cells = {c["name"]: w.Text(description=c["name"], placeholder=c["type"],
                                        style={"description_width": "initial"},
                                        layout=w.Layout(width="auto"))
                      for c in columns}
        self.add_row = _button("Add row", icon="plus")
        self.add_row.on_click(lambda _: self._add_row())
        self.json_body = w.Textarea(description="Body", style=LABEL,
                                    layout={"width": "90%", "height": "8em"},
                                    value=json.dumps({i["name"]: [] if i["kind"] == "tabular"
                                                      else i.get("default")
                                                      for i in (self.api or {}).get("inputs", [])}))
        self.send = _button("Send", "primary", "paper-plane")
        self.send.on_click(lambda _: self.query())
        self.curl = _button("Copy as curl", icon="terminal")
        self.curl.on_click(lambda _: self.show_curl())
        self.python = _button("Copy as Python", icon="code")
        self.python.on_click(lambda _: self.show_python())
        self.snippet = w.Textarea(layout={"width": "90%", "height": "7em", "display": "none"})
        self.result = w.HTML()
        self.query_message = w.HTML()
        editor = [w.HBox(list(self.cells.values()), layout=w.Layout(flex_flow="row wrap")),
                  self.add_row] if self.single else [self.json_body]
        query = w.VBox([*editor, w.HBox([self.send, self.curl, self.python]),
                        self.query_message, self.result, self.snippet])
        # logs and metrics
        self.window = _field(w.Dropdown, "Window", "14em", options=["15m", "1h", "24h", "7d"],
                             value="1h")
        self.search_text = _field(w.Text, "Query", "36em",
                                  placeholder='level:ERROR or "free text"')
        self.columns = _field(
            w.SelectMultiple, "Columns", "24em",
            options=["time", "level", "node_id", "logger", "message", "release", "traceback"],
            value=["time", "level", "node_id", "message"], rows=4)
        self.search = _button("Search", "primary", "search")
        self.search.on_click(lambda _: self.search_logs())
        self.download = _button("Download", icon="download")
        self.download.on_click(lambda _: self.download_logs())
        self.plot_kind = w.ToggleButtons(options=["host", "container", "requests"],
                                         value="container", description="Metrics", style=LABEL)
        self.plot = _button("Plot metrics", icon="line-chart")
        self.plot.on_click(lambda _: self.plot_metrics())
        self.logs_table = w.HTML()
        self.plot_image = w.Image(format="png", layout=w.Layout(max_width="900px"))
        self.plot_image.layout.display = "none"
        self.logs_message = w.HTML()
        self.plot_message = w.HTML()
        observe = w.VBox([w.HBox([self.window, self.search_text]), self.columns,
                          w.HBox([self.search, self.download]), self.logs_message,
                          self.logs_table, w.HBox([self.plot_kind, self.plot]),
                          self.plot_message, self.plot_image])
        self.compare = CompareView(rid, self.client, background, doc=doc)
        self.widget = w.Tab(children=[overview, query, observe, self.compare.widget])
        for i, title in enumerate(["Overview", "Query", "Logs & Metrics", "Compare"]):
            self.widget.set_title(i, title)
        self.show_status(doc)

    def _model_api(self, doc: dict[str, Any]) -> dict[str, Any] | None:
        release = doc.get("release") or doc.get("targetRelease")
        if not release:
            return None
        objective = doc["objectiveRid"]
        for sub in self.client.submissions(objective):
            if sub["rid"] == release["submissionRid"]:
                return sub["api"]
        return None

    def _columns(self) -> list[dict[str, Any]]:
        inputs = (self.api or {}).get("inputs", [])
        return inputs[0]["columns"] if len(inputs) == 1 and inputs[0]["kind"] == "tabular" else []

    # overview actions
    def show_status(self, doc: dict[str, Any]) -> None:
        """The card, and only the buttons that apply: Enable when disabled, else Disable."""
        self.doc = doc
        self.status.value = notebook.deployment_html(doc)
        self.disable.layout.display = None if doc["enabled"] else "none"
        self.enable.layout.display = "none" if doc["enabled"] else None

    def refresh(self) -> None:
        self.show_status(self.client.deployment(self.rid))

    def act(self, action: Callable[[], Any], done: str = "done", refresh: bool = True) -> None:
        self.message.value = _note("working…")

        def finished(_: Any) -> None:
            if refresh:
                self.refresh()
            self.message.value = _note(ui.escape(done), "ok")
            if self.on_change is not None:
                self.on_change()

        self.run(action, finished)

    def ask(self, what: str, action: Callable[[], Any], done: str = "done") -> None:
        """Destructive actions take a second click on Confirm (or Cancel)."""
        self._pending = lambda: self.act(action, done, refresh=what != "delete")
        self.confirm.description = f"Confirm {what}"
        self.confirm.layout.display = self.cancel.layout.display = None
        self.message.value = _note(f"{ui.escape(what.capitalize())} "
                                   f"<b>{ui.escape(self.doc['name'])}</b>? Click "
                                   f"<b>Confirm {what}</b> to go on.", "warn")

    def _cancel(self) -> None:
        self._pending = None
        self.confirm.layout.display = self.cancel.layout.display = "none"
        self.message.value = ""

    def _confirmed(self) -> None:
        action, self._pending = self._pending, None
        self.confirm.layout.display = self.cancel.layout.display = "none"
        if action is not None:
            action()

    # query
    def _typed(self, name: str, text: str) -> Any:
        kind = next((c["type"] for c in self._columns() if c["name"] == name), "any")
        if kind in ("double", "integer", "any"):
            try:
                number = float(text)
                return int(number) if kind == "integer" or number.is_integer() and \
                    kind == "any" else number
            except ValueError:
                return text
        if kind == "boolean":
            return text.strip().lower() in ("1", "true", "yes")
        return text

    def _add_row(self) -> None:
        self.rows.append({n: self._typed(n, t.value) for n, t in self.cells.items()})
        self.query_message.value = _note(f"{len(self.rows)} row(s) to send: change the values "
                                         "for the next row, or click Send")

    def body(self) -> tuple[Any, bool]:
        if self.single:
            rows = self.rows or [{n: self._typed(n, t.value) for n, t in self.cells.items()}]
            return {"requestData": rows, "requestParams": {}}, False
        return json.loads(self.json_body.value), True

    def query(self) -> None:
        try:
            body, v2 = self.body()
        except ValueError as err:
            self.query_message.value = ui.error_page(err)
            return
        self.query_message.value = _note("sending…")

        def done(doc: Any) -> None:
            self.rows = []
            self.last = notebook.answer(doc, v2)
            self.result.value = self.last._repr_html_()
            self.query_message.value = _note("answered", "ok")

        self.run(lambda: self.client.query(self.rid, body, v2=v2), done, self.query_message)

    def show_curl(self) -> None:
        """A curl command that works from a terminal on this machine (the token via the CLI)."""
        body, v2 = self.body()
        self.snippet.layout.display = None
        self.snippet.value = (
            f"curl -s -X POST {shlex.quote(self.client.inference_url(self.rid, v2))} \\\n"
            f"  -H \"Authorization: Bearer $(liveml token show)\" "
            f"-H 'Content-Type: application/json' \\\n  -d {shlex.quote(json.dumps(body))}")

    def show_python(self) -> None:
        """Python that works in this notebook (or any kernel that finds the control plane)."""
        body, v2 = self.body()
        api = self.doc["apiName"]
        self.snippet.layout.display = None
        if v2:
            args = ", ".join(f"{k}={v!r}" for k, v in body.items())
            self.snippet.value = ("import liveml_ext.notebook as lm\n"
                                  f"lm.deployment({api!r}).transform_v2({args})")
        else:
            self.snippet.value = ("import pandas as pd\nimport liveml_ext.notebook as lm\n"
                                  f"rows = {body['requestData']!r}\n"
                                  f"lm.deployment({api!r}).transform(pd.DataFrame(rows))")

    # logs and metrics
    def search_logs(self) -> None:
        self.logs_message.value = _note("searching…")

        def done(page: dict[str, Any]) -> None:
            self.last_logs = ui.frame(page["data"])
            more = " (more: narrow the window or the query)" if page.get("nextPageToken") else ""
            self.logs_message.value = _note(f"{len(page['data']):,} record(s), newest first"
                                            f"{more}", "ok")
            self.logs_table.value = self.last_logs._repr_html_() if page["data"] else _note(
                "no log records match in this window", "warn")

        self.run(lambda: self.client.logs(self.rid, self.search_text.value,
                                          since=self.window.value, limit=500,
                                          columns=list(self.columns.value)), done,
                 self.logs_message)

    def download_logs(self, path: str | None = None) -> None:
        target = path or f"{self.rid.rsplit('.', 1)[-1]}-logs.txt"
        self.run(lambda: self.client.download_logs(
            self.rid, target, self.search_text.value, since=self.window.value,
            columns=list(self.columns.value)),
            lambda size: setattr(self.logs_message, "value", _note(
                f"wrote {ui.fmt.size(size)} to <code>{ui.escape(target)}</code> (beside the "
                "notebook)", "ok")),
            self.logs_message)

    def plot_metrics(self) -> None:
        kind = self.plot_kind.value
        self.plot_message.value = _note(f"reading {kind} metrics…")

        def waiting(have: int, want: int) -> None:
            self.plot_message.value = _note(f"waiting for {kind} samples: {have}/{want} per "
                                            "replica (one every few seconds)")

        def done(plot: Any) -> None:
            self.last_plot = plot
            self.plot_image.value = plot.png()
            self.plot_image.layout.display = None
            self.plot_message.value = _note(f"{kind} metrics, last {self.window.value}", "ok")

        dep = notebook.Deployment(self.rid, self.client)
        self.run(lambda: dep.plot_metrics(kind, since=self.window.value, min_samples=3,
                                          timeout=30, progress=waiting), done, self.plot_message)


class Promotes(Base):
    """A view that marks a release as Production after a confirmation (``confirm``)."""

    def __init__(self, client: Client | None = None, background: bool = True) -> None:
        super().__init__(client, background)
        self.confirm = _button("Confirm", "danger")
        self.cancel = _button("Cancel")
        self.confirm.layout.display = self.cancel.layout.display = "none"
        self.confirm.on_click(lambda _: self.promote())
        self.cancel.on_click(lambda _: self._cancel())

    def offer(self, version: str) -> None:
        """Show what promoting ``version`` does, and the Confirm and Cancel buttons."""
        self.confirm.description = f"Confirm: {version} to Production"
        self.confirm.layout.display = self.cancel.layout.display = None
        self.message.value = _note(f"Deployments that follow Production will upgrade to "
                                   f"<b>{ui.escape(version)}</b>.", "warn")

    def _cancel(self) -> None:
        self.confirm.layout.display = self.cancel.layout.display = "none"
        self.message.value = ""

    def promote(self) -> None:
        raise NotImplementedError


class CompareView(Promotes):
    """A deployment's Compare tab: shadow another release, compare (shadow or replay), and
    promote the compared release from the report."""

    def __init__(self, rid: str, client: Client | None = None, background: bool = True,
                 doc: dict[str, Any] | None = None) -> None:
        super().__init__(client, background)
        self.rid = rid
        doc = doc or self.client.deployment(rid)
        self.objective = doc["objectiveRid"]
        self.other = _field(w.Dropdown, "Release", "18em")
        self.sample = _field(w.BoundedFloatText, "Sample", "13em", value=1.0, min=0.0, max=1.0,
                             step=0.05)
        self.duration = _field(w.Dropdown, "Duration", "13em",
                               options=["15m", "1h", "4h", "1d", "until stopped"], value="1h")
        self.start = _button("Start shadow", "primary", "clone")
        self.stop = _button("Stop shadow", "warning", "stop")
        self.shadow_status = w.HTML()
        self.window = _field(w.Dropdown, "Window", "13em", options=["15m", "1h", "24h", "7d"],
                             value="1h")
        self.source = w.ToggleButtons(options=["shadow", "replay"], value="shadow",
                                      description="Source", style=LABEL)
        self.run_compare = _button("Compare", "primary", "balance-scale")
        self.replay = _button("Replay captured queries", icon="repeat")
        self.report_html = w.HTML()
        self.plot_image = w.Image(format="png", layout=w.Layout(max_width="900px"))
        self.plot_image.layout.display = "none"
        self.promote_button = _button("Promote the compared release", "warning")
        self.promote_button.disabled = True
        self.report: notebook.Comparison | None = None
        self.start.on_click(lambda _: self.start_shadow())
        self.stop.on_click(lambda _: self.stop_shadow())
        self.run_compare.on_click(lambda _: self.compare())
        self.replay.on_click(lambda _: self.compare(replay=True))
        self.promote_button.on_click(lambda _: self.ask_promote())
        self.widget = w.VBox([
            w.HBox([self.other, self.sample, self.duration]), w.HBox([self.start, self.stop]),
            self.shadow_status, w.HBox([self.window, self.source]),
            w.HBox([self.run_compare, self.replay]), self.report_html, self.plot_image,
            w.HBox([self.promote_button, self.confirm, self.cancel]), self.message])
        self.refresh()

    def refresh(self) -> None:
        """The releases to pick from, and the shadow as it is now."""
        releases = self.client.releases(self.objective)
        self.other.options = [(f"{r['version']} ({(r.get('tag') or 'no tag').lower()})",
                               r["version"]) for r in releases]
        staging = [r["version"] for r in releases if r.get("tag") == "STAGING"]
        if staging or releases:
            self.other.value = (staging or [releases[0]["version"]])[0]
        try:
            shadow = self.client.shadow(self.rid)
        except LiveMLClientError as err:
            if err.status != 404:
                raise
            self.shadow_status.value = _note("no shadow: pick a release and start one")
            return
        self.shadow_status.value = notebook.shadow_record(shadow)._html

    def start_shadow(self) -> None:
        if not self.other.value:
            self.message.value = _note("no release to shadow: release one to Staging first",
                                       "error")
            return
        duration = None if self.duration.value == "until stopped" else self.duration.value

        def done(doc: dict[str, Any]) -> None:
            self.shadow_status.value = notebook.shadow_record(doc)._html
            self.message.value = _note(f"shadow of {ui.escape(doc['releaseVersion'])} "
                                       "starting: its replicas start, then it mirrors", "ok")

        self.run(lambda: self.client.start_shadow(self.rid, self.other.value,
                                                  sample=self.sample.value, duration=duration),
                 done)

    def stop_shadow(self) -> None:
        def done(doc: dict[str, Any]) -> None:
            self.shadow_status.value = notebook.shadow_record(doc, "stopped")._html
            self.message.value = _note("shadow stopped", "ok")

        self.run(lambda: self.client.stop_shadow(self.rid), done)

    def compare(self, replay: bool = False) -> None:
        dep = notebook.Deployment(self.rid, self.client)
        window = self.window.value
        self.report_html.value = _note(
            f"replaying the last {window} against {ui.escape(str(self.other.value))}: its "
            "replica starts first…" if replay else "comparing…")

        def action() -> notebook.Comparison:
            if replay:
                return dep.replay(self.other.value, since=window)
            return dep.compare(since=window, source=self.source.value)

        def done(report: notebook.Comparison) -> None:
            self.report = report
            self.report_html.value = report._repr_html_()
            if report["a"]["queries"]:
                self.plot_image.value = report.plot().png()
                self.plot_image.layout.display = None
            self.promote_button.disabled = not report["queries"]
            self.promote_button.description = \
                f"Promote {report['b']['version'] or 'the compared release'}"

        self.run(action, done, self.report_html)

    def ask_promote(self) -> None:
        if self.report is None or not self.report["queries"]:
            self.message.value = _note("compare first: nothing to promote from yet", "error")
            return
        self.offer(self.report["b"]["version"])

    def promote(self) -> None:
        self.confirm.layout.display = self.cancel.layout.display = "none"
        report = self.report
        if report is None:
            return

        def done(_: Any) -> None:
            self.message.value = _note(f"{ui.escape(report['b']['version'])} is now Production: "
                                       "the deployment is upgrading", "ok")
            self.refresh()

        self.run(report.promote, done)


class ReleasesView(Promotes):
    """An objective's submissions and releases: release to Staging, mark as Production."""

    def __init__(self, objective: str, client: Client | None = None,
                 background: bool = True) -> None:
        super().__init__(client, background)
        self.objective = objective
        self.table = w.HTML()
        self.submission = _field(w.Dropdown, "Submission")
        self.version = _field(w.Text, "Version", "16em", placeholder="e.g. 1.1")
        self.note = _field(w.Text, "Note", "24em")
        self.release_button = _button("Release to Staging", "primary")
        self.release_button.on_click(lambda _: self.release())
        self.release_pick = _field(w.Dropdown, "Release")
        self.promote_button = _button("Mark as Production", "warning")
        self.promote_button.on_click(lambda _: self.ask_promote())
        self.widget = w.VBox([w.HTML(f"<b>Releases of {ui.escape(objective)}</b>"), self.table,
                              w.HBox([self.submission, self.version]),
                              w.HBox([self.note, self.release_button]),
                              w.HBox([self.release_pick, self.promote_button, self.confirm,
                                      self.cancel]),
                              self.message])
        self.refresh()

    def refresh(self) -> None:
        subs = self.client.submissions(self.objective)
        releases = self.client.releases(self.objective)
        self.submission.options = [s["name"] for s in subs]  # newest first
        self.submission.value = subs[0]["name"] if subs else None
        self.release_pick.options = [(f"{r['version']} ({(r.get('tag') or 'no tag').lower()})",
                                      r["version"]) for r in releases]
        candidates = [r for r in releases if r.get("tag") != "PRODUCTION"] or releases
        self.release_pick.value = candidates[0]["version"] if candidates else None
        self.promote_button.disabled = not releases
        self.table.value = notebook.releases_frame(releases, subs)._repr_html_()

    def release(self) -> None:
        if not self.submission.value:
            self.message.value = _note("no submission yet: submit a model first "
                                       f"(lm.submit({self.objective!r}, model))", "error")
            return
        if not self.version.value.strip():
            self.message.value = _note("give the release a version (e.g. 1.1)", "error")
            return

        def done(doc: dict[str, Any]) -> None:
            self.refresh()
            self.version.value = self.note.value = ""
            self.message.value = _note(f"released {ui.escape(doc['version'])} to Staging", "ok")

        self.run(lambda: self.client.release(self.objective, self.submission.value,
                                             self.version.value.strip(), self.note.value,
                                             tag="staging"), done)

    def ask_promote(self) -> None:
        if not self.release_pick.value:
            self.message.value = _note("choose a release to mark as Production", "error")
            return
        self.offer(self.release_pick.value)

    def promote(self) -> None:
        self.confirm.layout.display = self.cancel.layout.display = "none"
        version = self.release_pick.value
        if not version:
            self.message.value = _note("choose a release to mark as Production", "error")
            return

        def done(doc: dict[str, Any]) -> None:
            self.refresh()
            self.message.value = _note(f"{ui.escape(doc['version'])} is now Production: "
                                       "deployments that follow it are upgrading", "ok")

        self.run(lambda: self.client.promote(self.objective, version), done)


class Panel(Base):
    """Deployments with live status; select one for its details; create a new one."""

    def __init__(self, client: Client | None = None, background: bool = True) -> None:
        super().__init__(client, background)
        self.table = w.HTML()
        self.pick = _field(w.Dropdown, "Deployment", "36em")
        self.refresh_button = _button("Refresh", icon="refresh")
        self.auto = w.Checkbox(value=False, description="Live status (every 5 s)",
                               indent=False, layout=w.Layout(width="auto"))
        self.new = _button("New deployment", "primary", "plus")
        self.details = w.VBox()
        self.refresh_button.on_click(lambda _: self.refresh())
        self.pick.observe(lambda change: self.show(change["new"]), names="value")
        self.new.on_click(lambda _: self.show_form())
        self.auto.observe(lambda change: self._auto(change["new"]), names="value")
        self.view: DeploymentView | None = None
        self.form: CreateDeploymentForm | None = None
        self._stop = threading.Event()
        self.widget = w.VBox([w.HBox([self.refresh_button, self.new, self.auto]), self.table,
                              self.pick, self.message, self.details])
        self.refresh()

    def refresh(self, select: str | None = None, keep_view: bool = False) -> None:
        """The list and the picker; the open deployment's card too unless ``keep_view``."""
        try:
            docs = self.client.deployments()
        except LiveMLClientError as err:
            self.message.value = ui.error_page(err)
            return
        rows = [{**notebook.summary(d), "state": ui.badge(d["status"]["state"])} for d in docs]
        self.table.value = ui.page(ui.table(rows, raw={"state"})) if rows else _note(
            "no live deployments yet: click <b>New deployment</b>")
        options = [(f"{d['name']} ({d['apiName']})", d["rid"]) for d in docs]
        if keep_view:  # after an action in the open deployment: its own message says what it did
            self.message.value = ""
        if self.view is not None and self.view.rid not in {rid for _, rid in options}:
            self.message.value = _note(f"<b>{ui.escape(self.view.doc['name'])}</b> was deleted: "
                                       "its RID answers 404 from now on", "ok")
        if options != list(self.pick.options):
            current = self.pick.value
            self.pick.options = options
            keep = select or current
            self.pick.value = keep if keep in [o[1] for o in options] else None
        elif select:
            self.pick.value = select
        if self.view is not None and self.pick.value == self.view.rid and not keep_view:
            try:
                self.view.refresh()
            except LiveMLClientError:
                self.view = None

    def show(self, rid: str | None) -> None:
        if not rid:
            self.view = None
            if self.form is None or self.form.widget not in self.details.children:
                self.details.children = []
            return
        self.view = DeploymentView(rid, self.client, self.background,
                                   on_change=lambda: self.refresh(keep_view=True))
        self.details.children = [self.view.widget]

    def show_form(self) -> None:
        self.form = CreateDeploymentForm(self.client, self.background, on_created=self._created)
        self.pick.value = None
        self.details.children = [self.form.widget]

    def _created(self, rid: str) -> None:
        """After a create: the new deployment is selected and shown, the form goes."""
        if self.form is not None:
            self.message.value = self.form.message.value
        self.refresh(select=rid)

    def _auto(self, on: bool) -> None:
        self._stop.set()
        if on:
            self._stop = threading.Event()
            stop = self._stop

            def loop() -> None:
                while not stop.wait(5.0):
                    self.refresh()

            threading.Thread(target=loop, daemon=True).start()

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)
