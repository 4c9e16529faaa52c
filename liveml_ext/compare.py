"""Two releases on the same queries: the report ``liveml compare`` and ``dep.compare()`` show.

The input is the comparison store's pairs (``capture.store.PAIR_SCHEMA``: the live answer ``a``
and the shadow's or a replay's answer ``b`` to one request body). Queries both releases answered
with a 2xx are read row by row (the request's rows, each answer's rows); every output column
(a column of the answers that is not an input) is compared: numbers by their absolute and
relative differences, anything else by agreement and a confusion table. Latency and error
counts come from all pairs. Pure: no I/O.
"""
from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from typing import Any

import orjson
import pandas as pd

from .capture.frame import json_or_none
from .core import models as m

#: rows listed under ``topDifferences``
TOP = 10
#: values kept per side in a confusion table (the rest are summed as "(other)")
CONFUSION_VALUES = 20


def _table(value: Any) -> list[dict[str, Any]] | None:
    if isinstance(value, list) and all(isinstance(r, dict) for r in value):
        return value
    return None


def request_rows(api: str, body: Any) -> list[dict[str, Any]] | None:
    """A request body's rows: v1 ``requestData``, or a v2 body's first table."""
    if not isinstance(body, dict):
        return None
    if api == "v1":
        return _table(body.get("requestData"))
    return next((t for t in map(_table, body.values()) if t is not None), None)


def answer_rows(api: str, body: Any) -> list[dict[str, Any]] | None:
    """An answer's rows: v1 ``responseData``; v2, its first table output, else its scalar
    outputs as one row."""
    if not isinstance(body, dict):
        return None
    if api == "v1":
        return _table(body.get("responseData"))
    table = next((t for t in map(_table, body.values()) if t is not None), None)
    if table is not None:
        return table
    scalars = {k: v for k, v in body.items() if not isinstance(v, (list, dict))}
    return [scalars] if scalars else None


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and \
        math.isfinite(float(value))


def _quantiles(values: pd.Series) -> tuple[float, float, float, float]:
    return (float(values.mean()), float(values.quantile(0.5)), float(values.quantile(0.95)),
            float(values.max()))


def _pct(values: pd.Series, q: float) -> float | None:
    values = values.dropna()
    return float(values.quantile(q)) if len(values) else None


def _ok(status: pd.Series) -> pd.Series:
    return (status >= 200) & (status < 300)


def select(pairs: pd.DataFrame, release: str | None = None) -> pd.DataFrame:
    """The pairs of one comparison: those of ``release`` (the other side's version), else of
    the newest pair's two releases (a window may hold earlier shadows, and the serving
    release may have changed in it)."""
    if pairs.empty:
        return pairs
    if release:
        return pairs[pairs["b_release"] == release]
    newest = pairs.loc[pairs["time"].idxmax()]
    return pairs[(pairs["b_release"] == newest["b_release"]) &
                 (pairs["a_release"] == newest["a_release"])]


def report(pairs: pd.DataFrame, deployment_rid: str, source: str, since: dt.datetime,
           until: dt.datetime) -> m.DescribeComparison:
    """Compare the two sides of ``pairs`` (a DataFrame with PAIR_SCHEMA's columns)."""
    n = len(pairs)
    a_version = str(pairs["a_release"].mode().iloc[0]) if n else ""
    b_version = str(pairs["b_release"].mode().iloc[0]) if n else ""
    side_a = m.ReleaseSide(version=a_version, queries=n,
                           errors=int((~_ok(pairs["a_status"])).sum()) if n else 0,
                           p50_ms=_pct(pairs["a_latency_ms"], 0.5) if n else None,
                           p99_ms=_pct(pairs["a_latency_ms"], 0.99) if n else None)
    b_failed = (~_ok(pairs["b_status"])) | (pairs["b_error"].fillna("") != "") if n else None
    side_b = m.ReleaseSide(version=b_version, queries=n,
                           errors=int(b_failed.sum()) if b_failed is not None else 0,
                           p50_ms=_pct(pairs["b_latency_ms"], 0.5) if n else None,
                           p99_ms=_pct(pairs["b_latency_ms"], 0.99) if n else None)
    inputs, outs_a, outs_b, queries = [], [], [], 0
    both = pairs[_ok(pairs["a_status"]) & ~b_failed] if n and b_failed is not None else pairs
    for api, req, ra, rb in zip(both["api"], both["request"], both["a_response"],
                                both["b_response"]):
        rows = request_rows(api, json_or_none(req))
        a_rows, b_rows = answer_rows(api, json_or_none(ra)), answer_rows(api, json_or_none(rb))
        if rows is None or a_rows is None or b_rows is None or \
                not len(rows) == len(a_rows) == len(b_rows):
            continue
        queries += 1
        inputs += rows
        outs_a += a_rows
        outs_b += b_rows
    frame_in = pd.DataFrame(inputs)
    frame_a, frame_b = pd.DataFrame(outs_a), pd.DataFrame(outs_b)
    columns = [c for c in frame_a.columns if c in frame_b.columns and c not in frame_in.columns]
    if not columns:  # answers that repeat no input: every column they share
        columns = [c for c in frame_a.columns if c in frame_b.columns]
    numeric, categorical, scores = _columns(frame_a, frame_b, columns)
    return m.DescribeComparison(
        deployment_rid=deployment_rid, source="replay" if source == "replay" else "shadow",
        since=since, until=until, a=side_a, b=side_b, queries=queries, rows=len(frame_in),
        numeric=numeric, categorical=categorical,
        top_differences=_top(frame_in, frame_a, frame_b, columns, scores))


def _columns(frame_a: pd.DataFrame, frame_b: pd.DataFrame, columns: Sequence[str]
             ) -> tuple[list[m.NumericDifference], list[m.CategoricalAgreement], pd.Series]:
    numeric, categorical = [], []
    scores = pd.Series(0.0, index=frame_a.index)
    for col in columns:
        a, b = frame_a[col], frame_b[col]
        if len(a) and all(_number(v) for v in a) and all(_number(v) for v in b):
            a, b = a.astype(float), b.astype(float)
            diff = (b - a).abs()
            nonzero = a != 0
            rel = diff[nonzero] / a[nonzero].abs()
            mean_abs, p50_abs, p95_abs, max_abs = _quantiles(diff)
            rel_stats = _quantiles(rel) if len(rel) else (None, None, None, None)
            numeric.append(m.NumericDifference(
                column=str(col), count=len(diff), mean_abs=mean_abs, p50_abs=p50_abs,
                p95_abs=p95_abs, max_abs=max_abs, mean_rel=rel_stats[0], p50_rel=rel_stats[1],
                p95_rel=rel_stats[2], max_rel=rel_stats[3]))
            scale = float(a.abs().mean()) or 1.0
            scores = scores + diff / scale
        else:
            sa, sb = a.map(_label), b.map(_label)
            same = sa == sb
            categorical.append(m.CategoricalAgreement(
                column=str(col), count=len(sa), agreement=float(same.mean()) if len(sa) else 1.0,
                confusion=_confusion(sa, sb)))
            scores = scores + (~same).astype(float)
    return numeric, categorical, scores


def _label(value: Any) -> str:
    return value if isinstance(value, str) else orjson.dumps(value).decode()


def _confusion(a: pd.Series, b: pd.Series) -> dict[str, dict[str, int]]:
    keep = set(a.value_counts().index[:CONFUSION_VALUES]) | \
        set(b.value_counts().index[:CONFUSION_VALUES])
    a = a.where(a.isin(keep), "(other)")
    b = b.where(b.isin(keep), "(other)")
    table = pd.crosstab(a, b)
    return {str(i): {str(j): int(v) for j, v in row.items() if v} for i, row in table.iterrows()}


def _top(frame_in: pd.DataFrame, frame_a: pd.DataFrame, frame_b: pd.DataFrame,
         columns: Sequence[str], scores: pd.Series) -> list[dict[str, Any]]:
    order = scores[scores > 0].sort_values(ascending=False).index[:TOP]
    out = []
    for i in order:
        row: dict[str, Any] = {str(k): _plain(v) for k, v in frame_in.loc[i].items()}
        for col in columns:
            row[f"a.{col}"] = _plain(frame_a.at[i, col])
            row[f"b.{col}"] = _plain(frame_b.at[i, col])
        row["score"] = round(float(scores[i]), 6)
        out.append(row)
    return out


def _plain(value: Any) -> Any:
    """A cell as JSON can hold it (numpy scalars to Python, NaN to None)."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


__all__ = ["answer_rows", "report", "request_rows", "select"]
