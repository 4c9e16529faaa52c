"""Checked JSON rows -> the pandas DataFrame a model gets, and model outputs -> JSON.

This is the one place where request rows become a frame (``ModelRunner.to_frames`` and the
batching queue both come here). Each declared column gets the dtype its type means, whatever the
values of one request happen to be, so a model sees the same dtypes on every call:

============  ====================================  ==========================================
type          required column                       nullable column (``required=False``)
============  ====================================  ==========================================
``integer``   ``int64``                             ``Int64`` (nulls are ``pd.NA``)
``double``    ``float64``                           ``float64`` (nulls are NaN)
``boolean``   ``bool``                              ``boolean`` (nulls are ``pd.NA``)
``string``    pandas' default string dtype          the same (nulls are NaN)
``datetime``  ``datetime64[ns, UTC]``               the same (nulls are ``NaT``)
``date``      ``object`` of ``datetime.date``       the same (nulls are None)
``decimal``   ``object`` of ``decimal.Decimal``     the same (nulls are None)
``array``     ``object`` of lists                   the same (nulls are None)
``any``       whatever pandas infers                the same
============  ====================================  ==========================================

Dates stay ``datetime.date`` objects rather than ``datetime64``: a date has no time of day or
zone, and that is what ``Spark``'s ``toPandas()`` and pandas' own ``dt.date`` give; a model that
wants timestamps calls ``pd.to_datetime(df["day"])``. Columns a request carries beyond the
declared ones follow the declared ones, as pandas infers them (null in the rows without the
key); ``api.check_rows`` bounds how many a request may carry (``--max-columns``).

Outputs: a float that is NaN is written as ``null`` (pandas' missing value); an infinite one
(a model's overflow, e.g. on an input of ``1e308``) is refused with a 400 ``InferenceFailure``
naming the output column and row (``nonFiniteOutput``), since JSON has no infinity.
"""
from __future__ import annotations

import datetime as _dt
import decimal as _dec
from typing import Any

import numpy as np
import pandas as pd

from .api import Column, decode_value, is_missing, row_keys
from .errors import InferenceFailure

#: pandas' own dtype for strings: ``str`` on pandas 3, ``object`` before
_STRING = pd.Series(["text"]).dtype


def column_values(col: Column, values: list[Any]) -> Any:
    """One declared column's JSON values (checked; None or NaN for nulls) -> a pandas array."""
    kind = col.type
    if kind == "integer":
        if col.required and not any(is_missing(v) for v in values):
            return np.array(values, dtype=np.int64)
        return pd.array([None if is_missing(v) else int(v) for v in values], dtype="Int64")
    if kind == "double":
        return np.array(values, dtype=np.float64)  # None becomes NaN
    if kind == "boolean":
        if col.required and not any(is_missing(v) for v in values):
            return np.array(values, dtype=bool)
        return pd.array([None if is_missing(v) else bool(v) for v in values], dtype="boolean")
    if kind == "datetime":
        stamps = [None if is_missing(v) else decode_value(col, v) for v in values]
        return pd.DatetimeIndex(pd.to_datetime(stamps, utc=True)).as_unit("ns").array
    if kind in ("date", "decimal", "array"):
        out = np.empty(len(values), dtype=object)
        out[:] = [None if is_missing(v) else decode_value(col, v) for v in values]
        return out
    if kind == "string":
        return pd.array(values, dtype=_STRING)  # None and NaN become its null
    return values


def to_frame(columns: list[Column], rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Checked rows -> a DataFrame: the declared columns first, typed, then any others.

    Linear in the body: the undeclared keys are found in one pass and their columns filled in
    another (``check_rows`` has bounded how many there are)."""
    names = {c.name for c in columns}
    extra = [key for key in row_keys(rows) if key not in names]
    data: dict[str, Any] = {c.name: column_values(c, [row.get(c.name) for row in rows])
                            for c in columns}
    if extra:
        filled = {name: [None] * len(rows) for name in extra}
        for i, row in enumerate(rows):
            for key, value in row.items():
                column = filled.get(key)
                if column is not None:
                    column[i] = value
        data.update(filled)
    if not data:  # no columns: still one row per request row
        return pd.DataFrame(index=pd.RangeIndex(len(rows)))
    return pd.DataFrame(data, copy=False)  # the dict's order: declared columns, then others


def json_default(value: Any) -> Any:
    """orjson's fallback: nulls of pandas become null, timestamps ISO 8601, decimals strings."""
    if value is pd.NaT or value is pd.NA:
        return None
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    if isinstance(value, _dec.Decimal):
        return str(value) if value.is_finite() else None
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    if isinstance(value, (_dt.timedelta, pd.Timedelta)):
        return pd.Timedelta(value).isoformat()
    return str(value)


def checked_rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """An output DataFrame -> its rows (``frame_rows``), in one pass over the columns that also
    refuses +-inf: ``InferenceFailure`` naming the first float column and row holding one."""
    if not frame.columns.is_unique:
        for i in range(frame.shape[1]):
            _refuse_infinite(frame.iloc[:, i])
        return frame_rows(frame)
    names, values = [], []
    for name, column in frame.items():
        _refuse_infinite(column)
        names.append(str(name))
        values.append(column.tolist())
    return [dict(zip(names, row)) for row in zip(*values)]


def _refuse_infinite(column: pd.Series) -> None:
    if getattr(column.dtype, "kind", "") != "f":
        return
    values = column.to_numpy()
    infinite = np.isinf(values)
    if infinite.any():
        row, name = int(infinite.argmax()), str(column.name)
        raise InferenceFailure(
            f"the model computed {values[row]} for output column {name!r} at row {row}, "
            "which JSON cannot carry; an input is probably outside the range the model "
            "handles (e.g. 1e308): check that row's values",
            errorType={"type": "nonFiniteOutput", "column": name, "row": row})


class Rows(list[dict[str, Any]]):
    """An output table already checked and encoded (``checked_rows``): a
    batch's rows, written once for all its requests."""


def frame_rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """A DataFrame -> a list of row objects of Python values (JSON via ``json_default``)."""
    if frame.columns.is_unique:
        columns = [str(c) for c in frame.columns]
        values = [frame[c].tolist() for c in frame.columns]
        return [dict(zip(columns, row)) for row in zip(*values)]
    rows: list[dict[str, Any]] = frame.to_dict(orient="records")
    return rows
