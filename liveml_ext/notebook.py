"""The notebook's Python API: submit from memory, deploy, query with DataFrames, logs, metrics.

    import liveml_ext.notebook as lm
    lm.submit("houses", fitted_pipeline, name="ridge")      # no file needed
    lm.release("houses", "ridge", "1.0", tag="staging"); lm.promote("houses", "1.0")
    dep = lm.deploy("houses", name="House prices")           # waits, with a progress bar
    dep.transform(df)                                        # -> DataFrame
    dep.logs("level:ERROR"); dep.metrics("container"); dep.plot_metrics("requests")

It finds the control plane as the CLI does (``LIVEML_URL``/``LIVEML_TOKEN`` or the connection file
that ``liveml server`` or the Jupyter extension writes) and says what to do when none runs.
"""
from __future__ import annotations

import io
from typing import Any

import pandas as pd

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
           namespace: str = "default") -> dict[str, Any]:
    """Submit a model object (or a file path) to an objective, creating the objective if needed."""
    c = connect()
    if create:
        try:
            c.create_objective(objective, namespace=namespace)
        except LiveMLClientError as err:
            if err.name != "ObjectiveAlreadyExists":
                raise
    data = model if isinstance(model, (str, bytes)) else dumps(model)
    return c.submit(objective, data, name=name)


def release(objective: str, submission: str, version: str, note: str = "",
            tag: str | None = None) -> dict[str, Any]:
    return connect().release(objective, submission, version, note, tag)


def promote(objective: str, version: str) -> dict[str, Any]:
    """Mark a release as production (deployments following production move to it)."""
    return connect().promote(objective, version)


def releases(objective: str) -> pd.DataFrame:
    return pd.DataFrame(connect().releases(objective))


def submissions(objective: str) -> pd.DataFrame:
    rows = connect().submissions(objective)
    return pd.DataFrame([{k: v for k, v in r.items() if k not in ("api", "requirements")}
                         for r in rows])


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


def deployments() -> pd.DataFrame:
    return pd.DataFrame([summary(d) for d in connect().deployments()])


def summary(d: dict[str, Any]) -> dict[str, Any]:
    st = d["status"]
    return {"name": d["name"], "apiName": d["apiName"], "state": st["state"],
            "ready": f"{st['readyReplicas']}/{st['desiredReplicas']}",
            "environment": d["environment"], "release": (d.get("release") or {}).get("version"),
            "reason": st["reason"], "rid": d["rid"]}


def rows_frame(rows: Any) -> pd.DataFrame | Any:
    """Rows (a list of objects) as a DataFrame; anything else as it is."""
    if isinstance(rows, list) and all(isinstance(r, dict) for r in rows):
        return pd.DataFrame(rows)
    return rows


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
        rows = frame.to_dict(orient="records") if isinstance(frame, pd.DataFrame) else frame
        body = {"requestData": rows, "requestParams": params or {}}
        return pd.DataFrame(self.client.query(self.rid, body)["responseData"])

    def transform_v2(self, **inputs: Any) -> dict[str, Any]:
        """Multi I/O: one keyword per named input (DataFrames or values) -> outputs by name."""
        body = {k: v.to_dict(orient="records") if isinstance(v, pd.DataFrame) else v
                for k, v in inputs.items()}
        return {k: rows_frame(v) for k, v in self.client.query(self.rid, body, v2=True).items()}

    def logs(self, query: str = "", since: str = "1h", limit: int = 200,
             columns: list[str] | None = None, **window: Any) -> pd.DataFrame:
        page = self.client.logs(self.rid, query, since=since, limit=limit, columns=columns,
                                **window)
        return pd.DataFrame(page["data"])

    def metrics(self, kind: str | None = None, since: str = "1h",
                node: str | None = None) -> pd.DataFrame:
        frame = pd.DataFrame(self.client.metrics(self.rid, kind, since=since, node=node))
        if not frame.empty:
            frame["time"] = pd.to_datetime(frame["time"])
        return frame

    def plot_metrics(self, kind: str = "container", since: str = "1h") -> Plot:
        """One panel per metric, one line per replica (a matplotlib Figure, shown inline)."""
        from .observability.plots import plot_metrics

        rows = self.client.metrics(self.rid, kind, since=since)
        return Plot(plot_metrics(rows, title=f"{self.describe()['name']}: {kind} metrics"))

    def update(self, **changes: Any) -> dict[str, Any]:
        return self.client.update(self.rid, **changes)

    def disable(self) -> dict[str, Any]:
        return self.client.disable(self.rid)

    def enable(self) -> dict[str, Any]:
        return self.client.enable(self.rid)

    def delete(self) -> dict[str, Any]:
        return self.client.delete(self.rid)

    def _repr_html_(self) -> str:
        return deployment_html(self.describe())

    def __repr__(self) -> str:
        return f"Deployment({self.rid!r})"


class Plot:
    """A matplotlib Figure that a notebook shows inline without pyplot (``.figure`` is it)."""

    def __init__(self, figure: Any) -> None:
        self.figure = figure

    def __getattr__(self, name: str) -> Any:
        return getattr(self.figure, name)

    def _repr_png_(self) -> bytes:
        buffer = io.BytesIO()
        self.figure.savefig(buffer, format="png", dpi=90)
        return buffer.getvalue()


def deployment_html(d: dict[str, Any]) -> str:
    """A deployment as a small HTML card with its replicas."""
    from html import escape

    st = d["status"]
    color = {"ACTIVE": "#2e7d32", "DEGRADED": "#ef6c00", "FAILED": "#c62828"}.get(st["state"],
                                                                                 "#555")
    replicas = "".join(
        f"<tr><td>{escape(r['nodeId'])}</td><td>{r['state']}</td><td>{r['health']}</td>"
        f"<td>{escape(r['releaseVersion'])}</td><td>{escape(r['reason'])}</td></tr>"
        for r in st["replicas"])
    rc = d["runtimeConfiguration"]
    return (f"<div><b>{escape(d['name'])}</b> <code>{escape(d['apiName'])}</code> "
            f"<span style='color:{color};font-weight:bold'>{st['state']}</span> "
            f"{escape(st['reason'])}<br><small>{escape(d['rid'])}</small><br>"
            f"release {(d.get('release') or {}).get('version', '-')} · {d['environment']} · "
            f"replicas {rc['minReplicas']}..{rc['maxReplicas']} · cpu {rc['cpu']} · "
            f"memory {rc['memory']} · threads {rc['threadCount']}"
            f"<table><tr><th>node</th><th>state</th><th>health</th><th>release</th>"
            f"<th>reason</th></tr>{replicas}</table></div>")
