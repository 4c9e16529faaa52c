"""History records -> one DataFrame row per input row, the inputs as typed columns.

Each record's request body is read as the replica reads it (v1 ``requestData`` or the v2
input's rows, checked by ``liveml_runtime.api.check_rows``), and all rows become one frame with
``liveml_runtime.frames.to_frame``: each declared column gets its declared dtype, as the model
gets it (a record without usable rows, e.g. captured without its request, gives one row whose
inputs are missing, so a required integer column is then pandas' nullable ``Int64``). Output
rows aligned with the input rows follow as ``output.<name>`` columns. The record's own fields
come first (``time``, ``request_id``, ``status``, ...); one an input column also names is
prefixed ``history.``.
"""
from __future__ import annotations

from typing import Any

import orjson
import pandas as pd

from liveml_runtime.api import ModelApi, Tabular, check_rows
from liveml_runtime.errors import LiveMLError
from liveml_runtime.frames import to_frame

#: the record's fields a history frame carries, in this order
META = ("time", "request_id", "status", "latency_ms", "release", "node_id", "token_id",
        "error", "request_truncated", "response_truncated")


def json_or_none(text: Any) -> Any:
    """A stored body (JSON text) as its value; None when it is missing or not JSON."""
    if not isinstance(text, str):
        return None
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return None


def _request_rows(table: Tabular | None, api: str, body: Any) -> list[dict[str, Any]] | None:
    if not isinstance(body, dict):
        return None
    given = body.get("requestData") if api == "v1" else \
        body.get(table.name) if table is not None else None
    if table is None:
        return given if isinstance(given, list) and all(isinstance(r, dict) for r in given) \
            else None
    try:
        return check_rows(table, given)
    except LiveMLError:
        return None


def _response_rows(model: ModelApi | None, api: str, body: Any) -> list[Any] | None:
    if not isinstance(body, dict):
        return None
    if api == "v1":
        found = body.get("responseData")
    else:
        outputs = [p for p in model.outputs if isinstance(p, Tabular)] if model else []
        found = body.get(outputs[0].name) if outputs else None
    return found if isinstance(found, list) and all(isinstance(r, dict) for r in found) \
        else None


def history_frame(records: pd.DataFrame, api: dict[str, Any] | None) -> pd.DataFrame:
    """Records (the history's columns, as ``HistoryStore.read`` gives them) of one release,
    and that release's model API (a submission's ``api``; None: untyped inputs)."""
    model = ModelApi.coerce(api) if api else None
    tables = model.tabular_inputs if model else []
    table = tables[0] if tables else None
    meta: dict[str, list[Any]] = {name: [] for name in META}
    inputs: list[dict[str, Any]] = []
    outputs: list[dict[str, Any]] = []
    for rec in records.to_dict("records"):
        rows = _request_rows(table, rec["api"], json_or_none(rec.get("request"))) or [{}]
        response = json_or_none(rec.get("response"))
        answered = _response_rows(model, rec["api"], response)
        if answered is None or len(answered) != len(rows):
            answered = [{}] * len(rows)
        error = response.get("errorName") if isinstance(response, dict) and \
            rec["status"] >= 400 else None
        for row, out in zip(rows, answered):
            for name in META:
                meta[name].append(error if name == "error" else rec.get(name))
            inputs.append(row)
            outputs.append(out)
    frame = to_frame(table.columns if table else [], inputs)
    if any(outputs):
        answers = pd.DataFrame(outputs, index=frame.index)
        frame = frame.join(answers.add_prefix("output."))
    head = pd.DataFrame({(f"history.{k}" if k in frame.columns else k): v
                         for k, v in meta.items()}, index=frame.index)
    if "time" in head:
        head["time"] = pd.to_datetime(head["time"], utc=True)
    return pd.concat([head, frame], axis=1)
