"""The notebook's Python API: submit from memory, deploy, query with DataFrames, logs, metrics.

    import liveml_ext.notebook as lm
    lm.submit("houses", fitted_pipeline, name="ridge")      # no file needed
    lm.release("houses", "ridge", "1.0", tag="staging"); lm.promote("houses", "1.0")
    dep = lm.deploy("houses", name="House prices")           # waits, with a progress bar
    dep.transform(df)                                        # -> DataFrame
    dep.logs("level:ERROR"); dep.metrics("container"); dep.plot_metrics("requests")
    dep.update(runtimeConfiguration={"capture": "both"}); dep.history(since="1h")  # DataFrame

It finds the control plane as the CLI does (``LIVEML_URL``/``LIVEML_TOKEN`` or the connection file
that ``liveml server`` or the Jupyter extension writes) and says what to do when none runs.
Answers are dicts and DataFrames as before; in a notebook they show as cards and readable tables
(``display.Record``, ``display.Frame``).
"""
from __future__ import annotations

import io
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from liveml_runtime.schema import json_rows

from . import display as ui
from .client import Client, LiveMLClientError

_client: Client | None = None


def connect(url: str | None = None, token: str | None = None) -> Client:
    """The client every call here uses (found once, then kept)."""
    global _client
    if url or token or _client is None:
        _client = Client(url, token)
    return _client


def dumps(model: Any) -> bytes:
    """A fitted estimator or ModelAdapter as bytes; classes defined in a notebook go by value."""
    import cloudpickle

    buffer = io.BytesIO()
    cloudpickle.dump(model, buffer)
    return buffer.getvalue()


def submit(objective: str, model: Any, name: str = "", create: bool = True,
           namespace: str = "default", exist_ok: bool = False, input_example: Any = None,
           output_columns: list[str] | None = None) -> ui.Record:
    """Submit a model object (or a file path) to an objective, creating the objective if needed.

    ``input_example`` (a DataFrame, typed by its dtypes, or JSON rows) declares the model's input
    columns and types, and its self-test runs on the first rows: a plain class with
    ``predict(df)`` needs one (a scikit-learn model fitted on a DataFrame, or a ModelAdapter
    with api(), declares its own inputs; an example then types untyped columns).

    A fitted pyspark.ml model (a ``PipelineModel`` or any ``Model``) goes straight from memory:
    it is saved to a temporary folder and zipped with its input columns, which come from
    ``input_example`` (a pandas DataFrame); ``output_columns`` picks the model's columns to
    answer with besides the inputs (default: ``prediction``, and ``probability`` for classifiers).

    Submitting the same model under the same name again returns the existing submission; another
    model under a name in use is refused (``SubmissionAlreadyExists``): pick a new name, or pass
    ``exist_ok=True`` to keep and return the existing submission (a notebook that runs again).
    """
    c = connect()
    if create:
        try:
            c.create_objective(objective, namespace=namespace)
        except LiveMLClientError as err:
            if err.name != "ObjectiveAlreadyExists":
                raise
    from liveml_runtime.spark_model import is_spark_model, pack, pack_model

    example = None  # a Spark model's example travels in its artifact
    if isinstance(model, str) and (Path(model).is_dir() or zipfile.is_zipfile(model)):
        data: str | bytes = pack(model, input_example, output_columns)  # a saved Spark model
    elif is_spark_model(model):
        data = pack_model(model, input_example, output_columns)
    else:
        data = model if isinstance(model, (str, bytes)) else dumps(model)
        example = input_example
    try:
        doc = c.submit(objective, data, name=name, input_example=example)
    except LiveMLClientError as err:
        existing = [s for s in c.submissions(objective) if s["name"] == name]
        if not (exist_ok and err.name == "SubmissionAlreadyExists" and existing):
            raise
        doc = existing[0]
        kept = ui.note(f"{ui.escape(objective)} already has a submission named <b>"
                       f"{ui.escape(name)}</b> (another artifact, submitted "
                       f"{ui.escape(ui.fmt.short_time(doc['createdAt']))}): kept it, and this "
                       "model was not submitted. Submit it under a new name to release it.",
                       "warn")
        return ui.Record(doc, kept + ui.submission_card(doc),
                         f"kept the existing submission {name} ({doc['rid']})")
    return ui.Record(doc, ui.submission_card(doc), f"submission {doc['name']} ({doc['rid']})")


def release_record(doc: dict[str, Any], submission: str = "") -> ui.Record:
    return ui.Record(doc, ui.release_line(doc, submission),
                     f"release {doc['version']} ({doc.get('tag') or 'no tag'})")


def release(objective: str, submission: str, version: str, note: str = "",
            tag: str | None = None) -> ui.Record:
    """Release a submission as ``version`` (with a tag). Releasing the same submission under the
    same version again returns the existing release as it is (its tag is not moved)."""
    return release_record(connect().release(objective, submission, version, note, tag),
                           submission)


def promote(objective: str, version: str) -> ui.Record:
    """Mark a release as production (deployments following production move to it)."""
    return release_record(connect().promote(objective, version))


RELEASE_COLUMNS = ["version", "tag", "submission", "note", "createdAt", "createdBy"]


def releases(objective: str) -> ui.Frame:
    """An objective's releases, newest first: version, tag, submission name, note, time."""
    c = connect()
    return releases_frame(c.releases(objective), c.submissions(objective))


def releases_frame(releases: list[dict[str, Any]], submissions: list[dict[str, Any]]) -> ui.Frame:
    names = {s["rid"]: s["name"] for s in submissions}
    rows = [{**r, "submission": names.get(r["submissionRid"], r["submissionRid"]),
             "tag": r.get("tag") or ""} for r in releases]
    return ui.frame(rows, RELEASE_COLUMNS, empty="no releases yet")


def submissions(objective: str) -> ui.Frame:
    return ui.frame(submission_rows(connect().submissions(objective)),
                    ["name", "adapter", "inputs", "createdAt"],
                    empty=f"{objective} has no submissions yet")


def submission_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Submissions without their API and requirements documents, inputs as a short list."""
    return [{**{k: v for k, v in r.items() if k not in ("api", "requirements")},
             "adapter": r["adapter"].rsplit(".", 1)[-1],
             "inputs": ", ".join(i["name"] for i in (r.get("api") or {}).get("inputs", []))}
            for r in rows]


def deploy(objective: str, name: str, wait: bool = True, **options: Any) -> Deployment:
    """Create a live deployment (see ``Client.deploy`` for options) and, by default, wait."""
    c = connect()
    doc = c.deploy(objective, name, **options)
    dep = Deployment(doc["rid"], c)
    if wait:
        dep.wait()
    return dep


def deployment(ref: str) -> Deployment:
    """A deployment by RID, API name or name."""
    c = connect()
    return Deployment(c.deployment(ref)["rid"], c)


def deployments() -> ui.Frame:
    return deployments_frame(connect().deployments())


def deployments_frame(docs: list[dict[str, Any]]) -> ui.Frame:
    return ui.frame([summary(d) for d in docs], empty="no live deployments yet")


def summary(d: dict[str, Any]) -> dict[str, Any]:
    st = d["status"]
    return {"name": d["name"], "apiName": d["apiName"], "state": st["state"],
            "ready": f"{st['readyReplicas']}/{st['desiredReplicas']}",
            "environment": d["environment"].title(),
            "release": (d.get("release") or {}).get("version"), "reason": st["reason"],
            "rid": d["rid"]}


def events_frame(rows: list[dict[str, Any]]) -> ui.Frame:
    return ui.frame(rows, ["at", "kind", "message", "fields"], empty="no events")


def rows_frame(rows: Any) -> pd.DataFrame | Any:
    """Rows (a list of objects) as a DataFrame; anything else as it is."""
    if isinstance(rows, list) and all(isinstance(r, dict) for r in rows):
        return ui.data_frame(rows)
    return rows


def outputs(doc: dict[str, Any]) -> ui.Outputs:
    """A v2 answer: one entry per named output, tables as DataFrames."""
    return ui.Outputs({k: rows_frame(v) for k, v in doc.items()})


def answer(doc: Any, v2: bool, unwrap: bool = False) -> Any:
    """An inference answer as a notebook shows it: a v1 answer's rows as a DataFrame, a v2
    answer's outputs by name (``unwrap``: a single output as itself)."""
    if not v2:
        return ui.data_frame(doc["responseData"])
    outs = outputs(doc)
    return next(iter(outs.values())) if unwrap and len(outs) == 1 else outs


def deleted(doc: dict[str, Any], name: str = "") -> ui.Record:
    what = f"{name} ({doc['rid']})" if name else doc["rid"]
    return ui.Record(doc, ui.note(f"Deleted <b>{ui.escape(name or doc['rid'])}</b> "
                                  f"{ui.short_id(doc['rid'])}: its RID answers 404 from now on",
                                  "ok"), f"deleted {what}")


def deployment_record(doc: dict[str, Any]) -> ui.Record:
    return ui.Record(doc, ui.deployment_card(doc),
                     f"{doc['name']} ({doc['apiName']}): {doc['status']['state']}")


class Deployment:
    """A live deployment seen from the notebook."""

    def __init__(self, rid: str, client: Client | None = None) -> None:
        self.rid = rid
        self.client = client or connect()

    def describe(self) -> dict[str, Any]:
        return self.client.deployment(self.rid)

    @property
    def status(self) -> dict[str, Any]:
        return self.describe()["status"]

    def wait(self, timeout: float = 300.0) -> dict[str, Any]:
        """Wait until ready, with a progress bar through the replicas' startup steps."""
        from .progress import wait_with_progress

        return wait_with_progress(self.client, self.rid, timeout=timeout)

    def transform(self, frame: pd.DataFrame | list[dict[str, Any]],
                  params: dict[str, Any] | None = None) -> pd.DataFrame:
        """Single tabular I/O: rows in, the output rows out, as a DataFrame."""
        rows = json_rows(frame) if isinstance(frame, pd.DataFrame) else frame
        body = {"requestData": rows, "requestParams": params or {}}
        return answer(self.client.query(self.rid, body), v2=False)

    def transform_v2(self, **inputs: Any) -> ui.Outputs:
        """Multi I/O: one keyword per named input (DataFrames or values) -> outputs by name."""
        body = {k: json_rows(v) if isinstance(v, pd.DataFrame) else v for k, v in inputs.items()}
        return answer(self.client.query(self.rid, body, v2=True), v2=True)

    def logs(self, query: str = "", since: str = "1h", limit: int = 200,
             columns: list[str] | None = None, **window: Any) -> pd.DataFrame:
        """Log records, newest first (``query`` in the log query language)."""
        page = self.client.logs(self.rid, query, since=since, limit=limit, columns=columns,
                                **window)
        return ui.frame(page["data"], empty="no log records match in this window")

    def metrics(self, kind: str | None = None, since: str = "1h",
                node: str | None = None) -> pd.DataFrame:
        frame = ui.frame(self.client.metrics(self.rid, kind, since=since, node=node),
                         empty="no samples in this window")
        if not frame.empty:
            frame["time"] = pd.to_datetime(frame["time"])
        return frame

    def plot_metrics(self, kind: str = "container", since: str = "1h", min_samples: int = 6,
                     timeout: float = 90.0,
                     progress: Callable[[int, int], None] | None = None) -> Plot:
        """One panel per metric, one line per replica (a matplotlib Figure, shown inline).

        Waits (with a progress bar, at most ``timeout`` seconds) until every replica has
        ``min_samples`` samples in the window, so the plot has lines worth reading.
        """
        from .observability.plots import plot_metrics, samples_per_replica

        rows = self.client.metrics(self.rid, kind, since=since)
        deadline = time.monotonic() + timeout
        bar = None

        def have() -> int:
            return min(samples_per_replica(rows).values(), default=0)

        while min_samples and have() < min_samples and time.monotonic() < deadline:
            if progress is not None:
                progress(have(), min_samples)
            else:
                if bar is None:
                    from tqdm.auto import tqdm

                    bar = tqdm(total=min_samples, desc=f"waiting for {kind} samples",
                               bar_format="{desc} {bar} {n}/{total}", leave=False)
                bar.n = have()
                bar.refresh()
            time.sleep(1.0)
            rows = self.client.metrics(self.rid, kind, since=since)
        if bar is not None:
            bar.n = min(have(), min_samples)  # full (green) when the samples came
            bar.close()
        return Plot(plot_metrics(rows, title=f"{self.describe()['name']}: {kind} metrics"))

    def history(self, since: str = "1h", status: str | None = None,
                release: str | None = None, **window: Any) -> pd.DataFrame:
        """Captured queries (``liveml update --capture``), one row per input row, newest first:
        the record's fields (time, request_id, status, latency_ms, release, ...), then the
        model's input columns with their declared dtypes, then ``output.<name>`` columns
        (``capture.frame``). ``status``: 2xx, 4xx, 5xx, error or a code."""
        import pyarrow.parquet as pq

        from .capture.frame import history_frame

        buffer = io.BytesIO()
        self.client.download_history(self.rid, buffer, since=since, status=status,
                                     release=release, **window)
        records = pq.read_table(io.BytesIO(buffer.getvalue())).to_pandas()
        if records.empty:
            return history_frame(records, None)
        apis = self._release_apis()
        parts = [history_frame(group, apis.get(version))
                 for version, group in records.groupby("release", sort=False, dropna=False)]
        frame = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]
        return frame.sort_values("time", ascending=False, kind="stable", ignore_index=True)

    def shadow(self, release: str = "staging", sample: float = 1.0, duration: str | None = "1h",
               replicas: int = 1, wait: bool = True, timeout: float = 300.0,
               **overrides: Any) -> ui.Record:
        """Mirror ``sample`` of the live queries to ``release`` (staging, production or a
        version) on replicas of its own; the live answers never change. ``overrides``: cpu,
        memory, threadCount of its replicas (default: the deployment's). With ``wait``, a
        progress bar until its replicas are ready (queries sampled before are skipped)."""
        doc = self.client.start_shadow(self.rid, release, sample=sample, duration=duration,
                                       replicas=replicas, **overrides)
        if wait:
            from tqdm.auto import tqdm

            bar = tqdm(total=replicas, desc=f"shadow of release {doc['releaseVersion']}",
                       bar_format="{desc} {bar} {n}/{total} replicas ready", leave=False)
            deadline = time.monotonic() + timeout
            while doc["state"] == "STARTING" and time.monotonic() < deadline:
                time.sleep(0.5)
                doc = self.client.shadow(self.rid)
                bar.n = doc["readyReplicas"]
                bar.refresh()
            bar.close()
        return shadow_record(doc)

    def shadow_status(self) -> ui.Record:
        return shadow_record(self.client.shadow(self.rid))

    def stop_shadow(self) -> ui.Record:
        return shadow_record(self.client.stop_shadow(self.rid), "stopped")

    def compare(self, since: str = "1h", source: str = "shadow",
                release: str | None = None) -> Comparison:
        """The serving release against the shadow (or a replay) on the same queries (the
        newest one in the window, or ``release``'s): tables and a plot; ``.promote()`` makes
        the other release Production."""
        doc = self.client.compare(self.rid, since=since, source=source, release=release)
        return Comparison(doc, self.describe()["objectiveRid"], self.client)

    def replay(self, release: str, since: str = "1h", limit: int = 1000) -> Comparison:
        """Run the captured queries of ``since`` against ``release`` in a short-lived pool
        (never the serving one) and compare, as ``compare()`` does for a shadow."""
        from .progress import spinner

        with spinner(f"replaying the last {since} against release {release}"):
            doc = self.client.replay(self.rid, release, since=since, limit=limit)
        return Comparison(doc, self.describe()["objectiveRid"], self.client)

    def _release_apis(self) -> dict[str, dict[str, Any]]:
        """Each release version of the deployment's objective -> its submission's model API."""
        objective = self.describe()["objectiveRid"]
        apis = {sub["rid"]: sub["api"] for sub in self.client.submissions(objective)}
        return {r["version"]: apis[r["submissionRid"]] for r in self.client.releases(objective)
                if r["submissionRid"] in apis}

    def update(self, **changes: Any) -> ui.Record:
        return deployment_record(self.client.update(self.rid, **changes))

    def capture(self, mode: str = "both", sample: float | None = None,
                max_bytes: int | None = None) -> ui.Record:
        """Inference history: capture ``mode`` (off, request, response or both) for a
        ``sample`` of the successful queries (failed ones always), bodies up to ``max_bytes``;
        read it with ``history()``. No replica restarts."""
        config: dict[str, Any] = {"capture": mode}
        if sample is not None:
            config["captureSample"] = sample
        if max_bytes is not None:
            config["captureMaxBytes"] = max_bytes
        return self.update(runtimeConfiguration=config)

    def disable(self) -> ui.Record:
        return deployment_record(self.client.disable(self.rid))

    def enable(self) -> ui.Record:
        return deployment_record(self.client.enable(self.rid))

    def delete(self) -> ui.Record:
        name = self.describe()["name"]
        return deleted(self.client.delete(self.rid), name)

    def _repr_html_(self) -> str:
        return ui.page(ui.deployment_card(self.describe()))

    def __repr__(self) -> str:
        return f"Deployment({self.rid!r})"


def shadow_record(doc: dict[str, Any], state: str = "") -> ui.Record:
    items = [("release", ui.escape(doc["releaseVersion"])),
             ("serving", ui.escape(doc.get("servingVersion") or "-")),
             ("sample", f"{doc['sample']:.0%}"),
             ("replicas", f"{doc['readyReplicas']}/{doc['replicas']} ready"),
             ("mirrored", f"{doc['mirrored']:,} ({doc['answered']:,} answered, "
                          f"{doc['errors']:,} errors, {doc['skipped']:,} skipped)"),
             ("until", ui.escape(doc["until"] or "stopped by hand"))]
    html = ui.card("Shadow", state or doc["state"], doc.get("reason", ""), items)
    return ui.Record(doc, html, f"shadow of release {doc['releaseVersion']}: "
                               f"{state or doc['state']}, {doc['mirrored']} mirrored")


class Comparison(dict):
    """``dep.compare()``: the report (a dict, as the API answers it), shown as tables;
    ``numeric``, ``categorical`` and ``top`` as DataFrames, ``plot()``, ``promote()``."""

    def __init__(self, doc: dict[str, Any], objective: str, client: Client) -> None:
        super().__init__(doc)
        self.objective, self.client = objective, client

    @property
    def numeric(self) -> pd.DataFrame:
        return pd.DataFrame(self["numeric"])

    @property
    def categorical(self) -> pd.DataFrame:
        return pd.DataFrame([{k: v for k, v in c.items() if k != "confusion"}
                             for c in self["categorical"]])

    def confusion(self, column: str) -> pd.DataFrame:
        """The confusion table of a categorical output (first release's values down)."""
        found = next(c for c in self["categorical"] if c["column"] == column)
        return pd.DataFrame(found["confusion"]).T.fillna(0).astype(int)

    @property
    def top(self) -> pd.DataFrame:
        return pd.DataFrame(self["topDifferences"])

    def plot(self) -> Plot:
        from .observability.plots import plot_comparison

        return Plot(plot_comparison(dict(self)))

    def promote(self) -> ui.Record:
        """Make the compared release Production: the deployment then upgrades itself."""
        version = self["b"]["version"]
        doc = self.client.promote(self.objective, version)
        return ui.Record(doc, ui.note(f"Release <b>{ui.escape(version)}</b> is Production now; "
                                      "the deployment rolls it out with no downtime", "ok"),
                         f"promoted {version}")

    def _repr_html_(self) -> str:
        a, b = self["a"], self["b"]
        parts = [ui.card("Comparison", None, f"{self['queries']:,} queries, {self['rows']:,} "
                         f"rows answered by both ({self['source']})"),
                 ui.table([a, b], ["version", "queries", "errors", "p50Ms", "p99Ms"])]
        if self["numeric"]:
            parts.append(ui.table(self["numeric"]))
        if self["categorical"]:
            parts.append(ui.table([{k: v for k, v in c.items() if k != "confusion"}
                                   for c in self["categorical"]]))
        if self["topDifferences"]:
            parts.append(ui.table(self["topDifferences"], max_rows=10))
        if not a["queries"]:
            parts = [ui.note("no compared queries in this window: start a shadow "
                             "(<code>dep.shadow()</code>) and send traffic", "info")]
        return ui.page(*parts)

    def __repr__(self) -> str:
        return f"Comparison({self['a']['version']} vs {self['b']['version']}: " \
               f"{self['queries']} queries)"


class Plot:
    """A matplotlib Figure that a notebook shows inline without pyplot (``.figure`` is it)."""

    def __init__(self, figure: Any) -> None:
        self.figure = figure

    def __getattr__(self, name: str) -> Any:
        return getattr(self.figure, name)

    def png(self) -> bytes:
        buffer = io.BytesIO()
        self.figure.savefig(buffer, format="png", dpi=90)
        return buffer.getvalue()

    def _repr_png_(self) -> bytes:
        return self.png()


def deployment_html(d: dict[str, Any]) -> str:
    """A deployment as a card with its replicas (with liveml's stylesheet)."""
    return ui.page(ui.deployment_card(d))
