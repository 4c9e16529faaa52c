"""The one REST client, used by the CLI, the magics and the widgets.

It finds the control plane from ``LIVEML_URL``/``LIVEML_TOKEN``, else from the connection file
that a running control plane writes in the liveml home (``LIVEML_HOME``, default ``~/.liveml``).
"""
from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote

import requests

from .core.names import RID_PREFIX, inference_path
from .core.states import DeploymentState, RolloutState


class LiveMLClientError(Exception):
    """An error answer from the control plane, carrying its envelope."""

    def __init__(self, status: int, envelope: dict[str, Any]) -> None:
        self.status = status
        self.envelope = envelope
        self.name = envelope.get("errorName", "Error")
        self.parameters = envelope.get("parameters", {})
        message = self.parameters.get("message", "")
        super().__init__(f"{self.name} ({status}): {message}" if message else
                         f"{self.name} ({status})")


class NotConnected(LiveMLClientError):
    def __init__(self, message: str) -> None:
        super().__init__(0, {"errorName": "NotConnected", "parameters": {"message": message}})


def home() -> Path:
    return Path(os.environ.get("LIVEML_HOME") or Path.home() / ".liveml").expanduser()


def discover() -> tuple[str, str]:
    """(url, token) from the environment or the connection file; raises NotConnected."""
    url, token = os.environ.get("LIVEML_URL"), os.environ.get("LIVEML_TOKEN")
    if url and token:
        return url, token
    path = home() / "connection.json"
    if path.exists():
        doc = json.loads(path.read_text())
        return url or doc["url"], token or doc["token"]
    raise NotConnected(
        f"no liveml control plane found (no LIVEML_URL/LIVEML_TOKEN, no {path}). Start one with "
        "`liveml server` in a terminal, or run JupyterLab with liveml installed, then retry")


def _params(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def _q(ref: str) -> str:
    return quote(ref, safe="")


class Client:
    """Typed calls over the management and inference REST APIs."""

    def __init__(self, url: str | None = None, token: str | None = None,
                 timeout: float = 120.0) -> None:
        if url is None or token is None:
            found_url, found_token = discover()
            url, token = url or found_url, token or found_token
        self.url = url.rstrip("/") + "/"
        self.token = token
        self.timeout = timeout
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"Bearer {token}"

    def __repr__(self) -> str:
        return f"liveml Client({self.url})"

    def _repr_html_(self) -> str:
        """In a notebook: where it is connected, and whether the control plane answers."""
        from . import display as ui

        try:
            count = len(self.deployments())
        except LiveMLClientError as err:
            return ui.page(ui.error(err))
        return ui.page(ui.note(
            f"Connected to the liveml control plane at <code>{ui.escape(self.url)}</code>: "
            f"{count} live deployment(s). <span class='lm-muted'>%liveml panel opens the "
            f"deployments panel; %liveml -h lists the commands.</span>", "ok"))

    # --- plumbing --------------------------------------------------------------------------
    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        kwargs.setdefault("timeout", self.timeout)
        try:
            resp = self.http.request(method, self.url + path, **kwargs)
        except requests.ConnectionError as exc:
            raise NotConnected(f"cannot reach the liveml control plane at {self.url}: is it "
                               "running? Start it with `liveml server`") from exc
        try:
            doc = resp.json() if resp.content else None
        except ValueError:
            doc = {"errorName": "BadResponse", "parameters": {"message": resp.text[:500]}}
        if resp.status_code >= 400:
            raise LiveMLClientError(resp.status_code, doc if isinstance(doc, dict) else {})
        return doc

    def api(self, method: str, path: str, **kwargs: Any) -> Any:
        return self.request(method, "liveml/api/" + path, **kwargs)

    # --- registry --------------------------------------------------------------------------
    def create_objective(self, name: str, namespace: str = "default",
                         description: str = "") -> dict[str, Any]:
        return self.api("POST", "objectives", json={"name": name, "namespace": namespace,
                                                    "description": description})

    def objectives(self, namespace: str | None = None) -> list[dict[str, Any]]:
        params = {"namespace": namespace} if namespace else None
        return self.api("GET", "objectives", params=params)["data"]

    def objective(self, ref: str) -> dict[str, Any]:
        return self.api("GET", f"objectives/{_q(ref)}")

    def upload(self, data: bytes) -> str:
        return self.api("PUT", "artifacts", data=data,
                        headers={"Content-Type": "application/octet-stream"})["artifactId"]

    def submit(self, objective: str, model: str | Path | bytes, name: str = "",
               input_example: Any = None) -> dict[str, Any]:
        """Submit a model file (joblib/pickle) or its bytes as a new submission.

        ``input_example`` (a DataFrame, JSON rows, or the path of a JSON or CSV file) declares the
        model's input columns and types and gives its self-test rows (``liveml_runtime.schema``).
        """
        body: dict[str, Any] = {"name": name}
        if input_example is not None:
            body.update(example_body(input_example))
        data = model if isinstance(model, bytes) else Path(model).read_bytes()
        body["artifactId"] = self.upload(data)
        return self.api("POST", f"objectives/{_q(objective)}/submissions", json=body)

    def submissions(self, objective: str) -> list[dict[str, Any]]:
        return self.api("GET", f"objectives/{_q(objective)}/submissions")["data"]

    def release(self, objective: str, submission: str, version: str, note: str = "",
                tag: str | None = None) -> dict[str, Any]:
        body = {"submission": submission, "version": version, "note": note}
        if tag:
            body["tag"] = tag.upper()
        return self.api("POST", f"objectives/{_q(objective)}/releases", json=body)

    def releases(self, objective: str) -> list[dict[str, Any]]:
        return self.api("GET", f"objectives/{_q(objective)}/releases")["data"]

    def tag(self, objective: str, version: str, tag: str) -> dict[str, Any]:
        return self.api("PUT", f"objectives/{_q(objective)}/releases/{_q(version)}/tag",
                        json={"tag": tag.upper()})

    def promote(self, objective: str, version: str) -> dict[str, Any]:
        return self.tag(objective, version, "PRODUCTION")

    # --- deployments -----------------------------------------------------------------------
    def deploy(self, objective: str, name: str, environment: str = "production",
               replicas: int | None = None, replica_profile: str = "default",
               resource_profile: str = "default", api_name: str | None = None,
               description: str = "", runtime: dict[str, Any] | None = None) -> dict[str, Any]:
        runtime = dict(runtime or {})
        if replicas is not None:
            runtime.update(minReplicas=replicas, maxReplicas=replicas)
        body: dict[str, Any] = {"objective": objective, "name": name,
                                "environment": environment.upper(),
                                "replicaProfile": replica_profile,
                                "resourceProfile": resource_profile,
                                "description": description}
        if api_name:
            body["apiName"] = api_name
        if runtime:
            body["runtimeConfiguration"] = runtime
        return self.api("POST", "deployments", json=body)

    def deployments(self, namespace: str | None = None) -> list[dict[str, Any]]:
        params = {"namespace": namespace} if namespace else None
        return self.api("GET", "deployments", params=params)["data"]

    def deployment(self, ref: str) -> dict[str, Any]:
        return self.api("GET", f"deployments/{_q(ref)}")

    def update(self, ref: str, **changes: Any) -> dict[str, Any]:
        return self.api("PATCH", f"deployments/{_q(ref)}", json=changes)

    def replace_runtime(self, ref: str, config: dict[str, Any]) -> dict[str, Any]:
        return self.api("PUT", f"deployments/{_q(ref)}/runtime-configuration", json=config)

    def events(self, ref: str, limit: int = 100) -> list[dict[str, Any]]:
        return self.api("GET", f"deployments/{_q(ref)}/events", params={"limit": limit})["data"]

    def logs(self, ref: str, query: str = "", since: str | None = None, start: str | None = None,
             end: str | None = None, columns: list[str] | None = None, limit: int = 100,
             page_token: str | None = None) -> dict[str, Any]:
        """One page of log records, newest first: ``{"data": [...], "nextPageToken": ...}``."""
        params = _params(query=query or None, since=since, start=start, end=end,
                         columns=",".join(columns) if columns else None, limit=limit,
                         pageToken=page_token)
        return self.api("GET", f"deployments/{_q(ref)}/logs", params=params)

    def download_logs(self, ref: str, path: str | Path, query: str = "",
                      since: str | None = None, start: str | None = None,
                      end: str | None = None, columns: list[str] | None = None) -> int:
        """Write every matching record to a text file; returns the bytes written."""
        params = _params(query=query or None, since=since, start=start, end=end,
                         columns=",".join(columns) if columns else None)
        return self._download(f"deployments/{_q(ref)}/logs/download", params, path)

    def _download(self, path: str, params: dict[str, Any], target: str | Path | IO[bytes]) -> int:
        """Stream a GET's body to a file (a path or a binary file object); the bytes written."""
        resp = self.http.get(f"{self.url}liveml/api/{path}", params=params, stream=True,
                             timeout=self.timeout)
        if resp.status_code >= 400:
            raise LiveMLClientError(resp.status_code, resp.json())
        written = 0
        with contextlib.ExitStack() as stack:
            fh = stack.enter_context(open(target, "wb")) if isinstance(target, (str, Path)) \
                else target
            for chunk in resp.iter_content(1 << 16):
                written += fh.write(chunk)
        return written

    def start_shadow(self, ref: str, release: str = "staging", sample: float = 1.0,
                     duration: str | None = "1h", replicas: int = 1,
                     timeout: float = 30.0, **overrides: Any) -> dict[str, Any]:
        """Mirror ``sample`` of the live queries to ``release`` (staging, production or a
        version) for ``duration`` (None: until stopped); ``overrides``: cpu, memory,
        threadCount of its replicas."""
        return self.api("POST", f"deployments/{_q(ref)}/shadow", json={
            "release": release, "sample": sample, "duration": duration, "replicas": replicas,
            "timeout": timeout, **overrides})

    def shadow(self, ref: str) -> dict[str, Any]:
        return self.api("GET", f"deployments/{_q(ref)}/shadow")

    def stop_shadow(self, ref: str) -> dict[str, Any]:
        return self.api("DELETE", f"deployments/{_q(ref)}/shadow")

    def compare(self, ref: str, since: str | None = None, start: str | None = None,
                end: str | None = None, source: str = "shadow",
                release: str | None = None) -> dict[str, Any]:
        """The serving release against the shadow (or a replay) on the same queries: the
        newest one in the window, or the one of ``release``."""
        return self.api("GET", f"deployments/{_q(ref)}/compare",
                        params=_params(since=since, start=start, end=end, source=source,
                                       release=release))

    def replay(self, ref: str, release: str, since: str = "1h", limit: int = 1000,
               replicas: int = 1) -> dict[str, Any]:
        """Run the captured queries of ``since`` against ``release`` (a short-lived pool) and
        compare; waits while its replicas start (up to the client's timeout)."""
        return self.api("POST", f"deployments/{_q(ref)}/replay", json={
            "release": release, "since": since, "limit": limit, "replicas": replicas})

    def history(self, ref: str, since: str | None = None, start: str | None = None,
                end: str | None = None, status: str | None = None, release: str | None = None,
                limit: int = 100) -> dict[str, Any]:
        """Captured queries, newest first: ``{"data": [records], "dropped": N}`` (``status``:
        2xx, 4xx, 5xx, error or a code; ``release``: a version)."""
        params = _params(since=since, start=start, end=end, status=status, release=release,
                         limit=limit)
        return self.api("GET", f"deployments/{_q(ref)}/history", params=params)

    def download_history(self, ref: str, target: str | Path | IO[bytes],
                         since: str | None = None, start: str | None = None,
                         end: str | None = None, status: str | None = None,
                         release: str | None = None) -> int:
        """Every matching captured query as one Parquet file; returns the bytes written."""
        params = _params(since=since, start=start, end=end, status=status, release=release)
        return self._download(f"deployments/{_q(ref)}/history/download", params, target)

    def metrics(self, ref: str, kind: str | None = None, since: str | None = None,
                start: str | None = None, end: str | None = None,
                node: str | None = None) -> list[dict[str, Any]]:
        params = _params(kind=kind, since=since, start=start, end=end, node=node)
        return self.api("GET", f"deployments/{_q(ref)}/metrics", params=params)["data"]

    def set_api_name(self, ref: str, api_name: str) -> dict[str, Any]:
        return self.api("PUT", f"deployments/{_q(ref)}/api-name", json={"apiName": api_name})

    def disable(self, ref: str) -> dict[str, Any]:
        return self.api("POST", f"deployments/{_q(ref)}/disable")

    def enable(self, ref: str) -> dict[str, Any]:
        return self.api("POST", f"deployments/{_q(ref)}/enable")

    def delete(self, ref: str) -> dict[str, Any]:
        return self.api("DELETE", f"deployments/{_q(ref)}")

    def wait(self, ref: str, timeout: float = 300.0, interval: float = 0.1,
             progress: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
        """Poll until the deployment is ACTIVE with exactly its desired replicas, all of its
        target, ready (after a scale-down: the surplus gone), or FAILED."""
        deadline = time.monotonic() + timeout
        while True:
            doc = self.deployment(ref)
            if progress:
                progress(doc)
            status = doc["status"]
            target = (doc.get("targetRelease") or {}).get("rid")
            served = (doc.get("release") or {}).get("rid")
            rollout = status.get("rollout") or {}
            current = rollout.get("generation", doc.get("generation")) == doc.get("generation")
            if status["state"] == DeploymentState.ACTIVE and status["isReady"] and not status["reason"] and \
                    (target is None or target == served) and current and \
                    status.get("readyReplicas", 0) == status.get("desiredReplicas", 0) and \
                    rollout.get("state", RolloutState.COMPLETE) == RolloutState.COMPLETE:
                return doc
            if status["state"] in (DeploymentState.FAILED, DeploymentState.DISABLED) or \
                    (current and rollout.get("state") == RolloutState.FAILED):
                raise LiveMLClientError(409, {
                    "errorName": "DeploymentNotReady",
                    "parameters": {"message": f"the deployment is {status['state']}: "
                                   f"{status['reason']}. See `liveml status {ref}`",
                                   "state": status["state"]}})
            if time.monotonic() > deadline:
                raise LiveMLClientError(408, {
                    "errorName": "Timeout",
                    "parameters": {"message": f"not ready after {timeout:.0f}s "
                                   f"({status['state']}: {status['reason']})"}})
            time.sleep(interval)

    # --- inference -------------------------------------------------------------------------
    def rid(self, ref: str) -> str:
        return ref if ref.startswith(RID_PREFIX) else self.deployment(ref)["rid"]

    def query(self, ref: str, body: Any, v2: bool = False) -> Any:
        """v1: ``body`` is rows (or a full ``{"requestData": ...}``); v2: one key per input."""
        if not v2 and isinstance(body, list):
            body = {"requestData": body, "requestParams": {}}
        return self.request("POST", inference_path(self.rid(ref), v2), json=body)

    def inference_url(self, rid: str, v2: bool = False) -> str:
        """The full URL of a deployment's inference endpoint (for curl and other clients)."""
        return self.url + inference_path(rid, v2)

    # --- misc ------------------------------------------------------------------------------
    def create_token(self, namespace: str | None = None, scope: str = "query",
                     description: str = "", expires_in: int | None = None) -> dict[str, Any]:
        """A new token; ``expires_in`` seconds after which it stops working (None: never)."""
        body: dict[str, Any] = {"namespace": namespace, "scope": scope,
                                "description": description}
        if expires_in is not None:
            body["expiresInSeconds"] = expires_in
        return self.api("POST", "tokens", json=body)

    def tokens(self) -> list[dict[str, Any]]:
        return self.api("GET", "tokens")["data"]

    def revoke_token(self, token_id: str) -> dict[str, Any]:
        return self.api("DELETE", f"tokens/{token_id}")

    def whoami(self) -> dict[str, Any]:
        return self.api("GET", "whoami")

    def profiles(self) -> dict[str, Any]:
        return self.api("GET", "profiles")


def example_body(input_example: Any) -> dict[str, Any]:
    """The ``inputExample`` rows and ``inputSchema`` columns of a submission, from a DataFrame
    (typed by its dtypes), JSON rows, or a JSON or CSV file."""
    from liveml_runtime.errors import LiveMLError
    from liveml_runtime.schema import InputExample, read_input_example

    try:
        if isinstance(input_example, (str, Path)):
            example = read_input_example(input_example)
        else:
            example = InputExample.of(input_example)
    except LiveMLError as err:  # raised as the server would answer it
        raise LiveMLClientError(err.status, err.envelope()) from err
    doc = example.to_dict()
    return {"inputExample": doc["rows"], "inputSchema": doc["columns"]}
