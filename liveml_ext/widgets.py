"""ipywidgets panels (stock widgets only): deployments, a create form, details, releases.

``%liveml panel`` shows ``Panel()``. Every action runs on a worker thread, so the kernel never
blocks while a deployment starts or a query runs; errors show inline in the form that caused them.
"""
from __future__ import annotations

import json
import re
import shlex
import threading
from collections.abc import Callable
from html import escape
from typing import Any

import ipywidgets as w
import pandas as pd
from IPython.display import display

from . import notebook
from .client import Client, LiveMLClientError

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,127}$")
API_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


def _error(err: Exception) -> str:
    if isinstance(err, LiveMLClientError):
        detail = err.parameters.get("errorType") or {
            k: v for k, v in err.parameters.items() if k != "message"}
        extra = f"<br><small>{escape(json.dumps(detail))}</small>" if detail else ""
        return (f"<span style='color:#c62828'><b>{escape(err.name)}</b>: "
                f"{escape(err.parameters.get('message', ''))}{extra}</span>")
    return f"<span style='color:#c62828'>{escape(type(err).__name__)}: {escape(str(err))}</span>"


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
            except Exception as err:  # noqa: BLE001 - shown in the form, never raised into the kernel
                target.value = _error(err)
                return
            if done is not None:
                done(result)

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
        self.objective = w.Dropdown(options=objectives, description="Objective")
        self.name = w.Text(description="Name", placeholder="House prices")
        self.api_name = w.Text(description="API name", placeholder="(from the name)")
        self.description = w.Textarea(description="Description")
        self.environment = w.ToggleButtons(options=["Staging", "Production"], value="Production",
                                           description="Environment")
        self.replica_profile = w.Dropdown(
            options=[p["name"] for p in profiles["replicaProfiles"]], value="default",
            description="Replicas")
        self.resource_profile = w.Dropdown(
            options=[p["name"] for p in profiles["resourceProfiles"]], value="default",
            description="Resources")
        self.create = w.Button(description="Create deployment", button_style="primary")
        self.progress = w.IntProgress(min=0, max=1, description="starting", layout={"width": "60%"})
        self.progress.layout.visibility = "hidden"
        self.create.on_click(lambda _: self.submit())
        self.widget = w.VBox([self.objective, self.name, self.api_name, self.description,
                              self.environment, self.replica_profile, self.resource_profile,
                              self.create, self.progress, self.message])
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
                    f"{self.environment.value}: release one first")
        return ""

    def submit(self) -> None:
        problem = self.validate()
        if problem:
            self.message.value = f"<span style='color:#c62828'>{escape(problem)}</span>"
            return
        self.message.value = "creating…"
        self.create.disabled = True
        self.progress.layout.visibility = "visible"

        def action() -> dict[str, Any]:
            try:
                doc = self.client.deploy(
                    self.objective.value, self.name.value, self.environment.value.lower(),
                    replica_profile=self.replica_profile.value,
                    resource_profile=self.resource_profile.value,
                    api_name=self.api_name.value or None, description=self.description.value)
                self.rid = doc["rid"]
                return self.client.wait(doc["rid"], progress=self._progress)
            finally:
                self.create.disabled = False

        def done(doc: dict[str, Any]) -> None:
            self.message.value = (f"<span style='color:#2e7d32'>{escape(doc['name'])} is "
                                  f"{doc['status']['state']}</span> <code>{doc['rid']}</code>")
            if self.on_created:
                self.on_created(doc["rid"])

        self.run(action, done)

    def _progress(self, doc: dict[str, Any]) -> None:
        st = doc["status"]
        self.progress.max = max(1, st["desiredReplicas"])
        self.progress.value = min(self.progress.max, st["readyReplicas"])
        self.progress.description = st["state"].lower()


class DeploymentView(Base):
    """Details of one deployment: overview and edits, Query, Logs & Metrics."""

    def __init__(self, rid: str, client: Client | None = None, background: bool = True) -> None:
        super().__init__(client, background)
        self.rid = rid
        doc = self.client.deployment(rid)
        self.api = self._model_api(doc)
        # overview
        self.status = w.HTML(notebook.deployment_html(doc))
        self.api_name = w.Text(value=doc["apiName"], description="API name")
        self.save_api_name = w.Button(description="Save API name")
        rc = doc["runtimeConfiguration"]
        self.min_replicas = w.BoundedIntText(value=rc["minReplicas"], min=0, max=64,
                                             description="Min replicas")
        self.max_replicas = w.BoundedIntText(value=rc["maxReplicas"], min=0, max=64,
                                             description="Max replicas")
        self.cpu = w.BoundedFloatText(value=rc["cpu"], min=0.01, max=256, description="vCPU")
        self.memory = w.Text(value=rc["memory"], description="Memory")
        self.threads = w.BoundedIntText(value=rc["threadCount"], min=1, max=1024,
                                        description="Threads")
        self.save_config = w.Button(description="Save configuration")
        self.disable = w.Button(description="Disable")
        self.enable = w.Button(description="Enable")
        self.delete = w.Button(description="Delete", button_style="danger")
        self.confirm = w.Button(description="Confirm", button_style="warning")
        self.confirm.layout.display = "none"
        self._pending: Callable[[], Any] | None = None
        self.save_api_name.on_click(lambda _: self.act(
            lambda: self.client.set_api_name(self.rid, self.api_name.value)))
        self.save_config.on_click(lambda _: self.act(lambda: self.client.update(
            self.rid, runtimeConfiguration={
                "minReplicas": self.min_replicas.value, "maxReplicas": self.max_replicas.value,
                "cpu": self.cpu.value, "memory": self.memory.value,
                "threadCount": self.threads.value})))
        self.disable.on_click(lambda _: self.ask("disable", lambda: self.client.disable(self.rid)))
        self.enable.on_click(lambda _: self.act(lambda: self.client.enable(self.rid)))
        self.delete.on_click(lambda _: self.ask("delete", lambda: self.client.delete(self.rid)))
        self.confirm.on_click(lambda _: self._confirmed())
        overview = w.VBox([self.status, w.HBox([self.api_name, self.save_api_name]),
                           w.HBox([self.min_replicas, self.max_replicas]),
                           w.HBox([self.cpu, self.memory, self.threads]), self.save_config,
                           w.HBox([self.disable, self.enable, self.delete, self.confirm]),
                           self.message])
        # query
        self.rows: list[dict[str, Any]] = []
        columns = self._columns()
        self.single = self.api is not None and len(self.api["inputs"]) == 1 and bool(columns)
        self.cells = {c["name"]: w.Text(description=c["name"], placeholder=c["type"])
                      for c in columns}
        self.add_row = w.Button(description="Add row")
        self.add_row.on_click(lambda _: self._add_row())
        self.json_body = w.Textarea(description="Body", layout={"width": "90%", "height": "8em"},
                                    value=json.dumps({i["name"]: [] if i["kind"] == "tabular"
                                                      else i.get("default")
                                                      for i in (self.api or {}).get("inputs", [])}))
        self.send = w.Button(description="Send", button_style="primary")
        self.send.on_click(lambda _: self.query())
        self.curl = w.Button(description="Copy as curl")
        self.curl.on_click(lambda _: self.show_curl())
        self.curl_text = w.Textarea(layout={"width": "90%", "height": "6em"})
        self.result = w.Output()
        self.query_message = w.HTML()
        editor = [w.HBox(list(self.cells.values())), self.add_row] if self.single else \
            [self.json_body]
        query = w.VBox([*editor, w.HBox([self.send, self.curl]), self.query_message,
                        self.result, self.curl_text])
        # logs and metrics
        self.window = w.Dropdown(options=["15m", "1h", "24h", "7d"], value="1h",
                                 description="Window")
        self.search_text = w.Text(description="Query", placeholder='level:ERROR or "text"')
        self.columns = w.SelectMultiple(
            options=["time", "level", "node_id", "logger", "message", "release", "traceback"],
            value=["time", "level", "node_id", "message"], description="Columns")
        self.search = w.Button(description="Search")
        self.search.on_click(lambda _: self.search_logs())
        self.download = w.Button(description="Download")
        self.download.on_click(lambda _: self.download_logs())
        self.plot_kind = w.ToggleButtons(options=["host", "container", "requests"],
                                         value="container")
        self.plot = w.Button(description="Plot metrics")
        self.plot.on_click(lambda _: self.plot_metrics())
        self.logs_out = w.Output()
        self.plot_out = w.Output()
        self.logs_message = w.HTML()
        observe = w.VBox([w.HBox([self.window, self.search_text]), self.columns,
                          w.HBox([self.search, self.download]), self.logs_message,
                          self.logs_out, w.HBox([self.plot_kind, self.plot]), self.plot_out])
        self.widget = w.Tab(children=[overview, query, observe])
        for i, title in enumerate(["Overview", "Query", "Logs & Metrics"]):
            self.widget.set_title(i, title)

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
    def refresh(self) -> None:
        self.status.value = notebook.deployment_html(self.client.deployment(self.rid))

    def act(self, action: Callable[[], Any]) -> None:
        self.message.value = "working…"
        self.run(action, lambda _: (self.refresh(), setattr(self.message, "value", "done")))

    def ask(self, what: str, action: Callable[[], Any]) -> None:
        """Destructive actions take a second click on Confirm."""
        self._pending = action
        self.confirm.description = f"Confirm {what}"
        self.confirm.layout.display = None
        self.message.value = f"click <b>Confirm {what}</b> to go on"

    def _confirmed(self) -> None:
        action, self._pending = self._pending, None
        self.confirm.layout.display = "none"
        if action is not None:
            self.run(action, lambda _: setattr(self.message, "value", "done"))

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
        self.query_message.value = f"{len(self.rows)} row(s) to send"

    def body(self) -> tuple[Any, bool]:
        if self.single:
            rows = self.rows or [{n: self._typed(n, t.value) for n, t in self.cells.items()}]
            return {"requestData": rows, "requestParams": {}}, False
        return json.loads(self.json_body.value), True

    def query(self) -> None:
        try:
            body, v2 = self.body()
        except ValueError as err:
            self.query_message.value = _error(err)
            return

        def done(doc: Any) -> None:
            self.query_message.value = ""
            self.rows = []
            shown = doc["responseData"] if "responseData" in doc else doc
            self.last = pd.DataFrame(shown) if isinstance(shown, list) else \
                {k: notebook.rows_frame(v) for k, v in shown.items()}
            self.result.clear_output()
            with self.result:
                display(self.last)

        self.run(lambda: self.client.query(self.rid, body, v2=v2), done, self.query_message)

    def show_curl(self) -> None:
        body, v2 = self.body()
        url = f"{self.client.url}foundry-ml-live/api/inference/transform/{self.rid}" + \
            ("/v2" if v2 else "")
        self.curl_text.value = (f"curl -s -X POST {shlex.quote(url)} \\\n  -H 'Authorization: "
                                f"Bearer $LIVEML_TOKEN' -H 'Content-Type: application/json' \\\n"
                                f"  -d {shlex.quote(json.dumps(body))}")

    # logs and metrics
    def search_logs(self) -> None:
        def done(page: dict[str, Any]) -> None:
            self.logs_message.value = f"{len(page['data'])} record(s), newest first"
            self.last_logs = pd.DataFrame(page["data"])
            self.logs_out.clear_output()
            with self.logs_out:
                display(self.last_logs)

        self.run(lambda: self.client.logs(self.rid, self.search_text.value,
                                          since=self.window.value, limit=500,
                                          columns=list(self.columns.value)), done,
                 self.logs_message)

    def download_logs(self, path: str | None = None) -> None:
        target = path or f"{self.rid.rsplit('.', 1)[-1]}-logs.txt"
        self.run(lambda: self.client.download_logs(
            self.rid, target, self.search_text.value, since=self.window.value,
            columns=list(self.columns.value)),
            lambda size: setattr(self.logs_message, "value",
                                 f"wrote {size} bytes to <code>{escape(target)}</code>"),
            self.logs_message)

    def plot_metrics(self) -> None:
        def done(plot: Any) -> None:
            self.last_plot = plot
            self.plot_out.clear_output()
            with self.plot_out:
                display(plot)

        dep = notebook.Deployment(self.rid, self.client)
        self.run(lambda: dep.plot_metrics(self.plot_kind.value, since=self.window.value), done,
                 self.logs_message)


class ReleasesView(Base):
    """An objective's submissions and releases: release to Staging, mark as Production."""

    def __init__(self, objective: str, client: Client | None = None,
                 background: bool = True) -> None:
        super().__init__(client, background)
        self.objective = objective
        self.table = w.HTML()
        self.submission = w.Dropdown(description="Submission")
        self.version = w.Text(description="Version")
        self.note = w.Text(description="Note")
        self.release_button = w.Button(description="Release to Staging")
        self.release_button.on_click(lambda _: self.release())
        self.release_pick = w.Dropdown(description="Release")
        self.promote_button = w.Button(description="Mark as Production", button_style="warning")
        self.promote_button.on_click(lambda _: self.ask_promote())
        self.confirm = w.Button(description="Confirm", button_style="danger")
        self.confirm.layout.display = "none"
        self.confirm.on_click(lambda _: self.promote())
        self.widget = w.VBox([self.table, w.HBox([self.submission, self.version, self.note,
                                                  self.release_button]),
                              w.HBox([self.release_pick, self.promote_button, self.confirm]),
                              self.message])
        self.refresh()

    def refresh(self) -> None:
        subs = self.client.submissions(self.objective)
        releases = self.client.releases(self.objective)
        self.submission.options = [s["name"] for s in subs]
        self.release_pick.options = [r["version"] for r in releases]
        frame = pd.DataFrame([{k: r[k] for k in ("version", "tag", "note", "createdAt",
                                                 "createdBy")} for r in releases])
        self.table.value = frame.to_html(index=False) if len(frame) else "no releases yet"

    def release(self) -> None:
        if not self.version.value.strip():
            self.message.value = "<span style='color:#c62828'>give the release a version</span>"
            return
        self.run(lambda: self.client.release(self.objective, self.submission.value,
                                             self.version.value.strip(), self.note.value,
                                             tag="staging"),
                 lambda doc: (self.refresh(), setattr(
                     self.message, "value", f"released {escape(doc['version'])} to Staging")))

    def ask_promote(self) -> None:
        self.confirm.description = f"Confirm: {self.release_pick.value} to Production"
        self.confirm.layout.display = None

    def promote(self) -> None:
        self.confirm.layout.display = "none"
        version = self.release_pick.value
        self.run(lambda: self.client.promote(self.objective, version),
                 lambda doc: (self.refresh(), setattr(
                     self.message, "value", f"{escape(doc['version'])} is now Production")))


class Panel(Base):
    """Deployments with live status; select one for its details; create a new one."""

    def __init__(self, client: Client | None = None, background: bool = True) -> None:
        super().__init__(client, background)
        self.table = w.HTML()
        self.pick = w.Dropdown(description="Deployment")
        self.refresh_button = w.Button(description="Refresh", icon="refresh")
        self.auto = w.Checkbox(value=False, description="Live status (every 5 s)")
        self.new = w.Button(description="New deployment", button_style="primary")
        self.details = w.Output()
        self.refresh_button.on_click(lambda _: self.refresh())
        self.pick.observe(lambda change: self.show(change["new"]), names="value")
        self.new.on_click(lambda _: self.show_form())
        self.auto.observe(lambda change: self._auto(change["new"]), names="value")
        self.view: DeploymentView | None = None
        self.form: CreateDeploymentForm | None = None
        self._stop = threading.Event()
        self.widget = w.VBox([w.HBox([self.refresh_button, self.auto, self.new]), self.table,
                              self.pick, self.message, self.details])
        self.refresh()

    def refresh(self) -> None:
        try:
            docs = self.client.deployments()
        except LiveMLClientError as err:
            self.message.value = _error(err)
            return
        frame = pd.DataFrame([notebook.summary(d) for d in docs])
        self.table.value = frame.drop(columns=["rid"]).to_html(index=False) if len(frame) \
            else "no live deployments yet: click <b>New deployment</b>"
        options = [(f"{d['name']} ({d['apiName']})", d["rid"]) for d in docs]
        if [o[1] for o in options] != [o[1] for o in self.pick.options]:
            self.pick.options = options
            self.pick.value = None
        if self.view is not None:
            try:
                self.view.refresh()
            except LiveMLClientError:
                self.view = None

    def show(self, rid: str | None) -> None:
        self.details.clear_output()
        if not rid:
            return
        self.view = DeploymentView(rid, self.client, self.background)
        with self.details:
            display(self.view.widget)

    def show_form(self) -> None:
        self.form = CreateDeploymentForm(self.client, self.background,
                                         on_created=lambda rid: self.refresh())
        self.details.clear_output()
        with self.details:
            display(self.form.widget)

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
        display(self.widget)
