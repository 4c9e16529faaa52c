"""Input examples: a model's input columns inferred from a DataFrame or JSON rows (like MLflow's
signatures), and the example rows its self-test runs on.

Inference, column by column:

- pandas dtypes say it directly: ``int*``/``Int*`` -> integer, ``float*`` -> double, ``bool``/
  ``boolean`` -> boolean, ``datetime64`` (naive or tz-aware) -> datetime, strings -> string,
  ``category`` -> the type of its categories;
- ``object`` columns (and JSON rows) by their values: all ``str`` -> string, all ``bool`` ->
  boolean, all ``int`` -> integer, ints and floats -> double, ``datetime`` -> datetime, ``date`` ->
  date, ``Decimal`` -> decimal (scale: the most digits after the point among the values;
  precision 38, the widest, so larger amounts of that scale still fit), lists or arrays -> array
  (items: the type of all their elements), anything mixed -> any;
- JSON rows and CSV files have no date or time types: a string column whose every value is an
  ISO 8601 date (``2024-01-31``) becomes date, one whose every value is an ISO timestamp
  (``2024-01-31T12:00:00Z``) datetime. DataFrame strings stay strings;
- a column is nullable (``required=False``) when the example has a null in it (or a row without
  it), else required.
"""
from __future__ import annotations

import datetime as _dt
import decimal as _dec
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from .api import DEFAULT_PRECISION, Column, Tabular, check_rows, decimal_digits, is_missing
from .errors import InvalidArgument, LiveMLError

#: Rows of an example kept with a submission (the schema is inferred from all of them).
MAX_EXAMPLE_ROWS = 100
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_STAMP = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}")


def _null(value: Any) -> bool:
    if is_missing(value):
        return True
    pd = sys.modules.get("pandas")  # rows need no pandas (the control plane infers them too)
    return pd is not None and (value is pd.NaT or value is pd.NA)


def _kinds() -> tuple[tuple[type, ...], ...]:
    """(booleans, integers, floats, timestamps, sequences), numpy's too when it is loaded."""
    np = sys.modules.get("numpy")
    if np is None:
        return (bool,), (int,), (float,), (_dt.datetime,), (list, tuple)
    return ((bool, np.bool_), (int, np.integer), (float, np.floating),
            (_dt.datetime, np.datetime64), (list, tuple, np.ndarray))


def _is_stamp(text: str) -> bool:
    if not _STAMP.match(text):
        return False
    try:
        _dt.datetime.fromisoformat(text)
    except ValueError:
        return False
    return True


def _is_date(text: str) -> bool:
    if not _DATE.match(text):
        return False
    try:
        _dt.date.fromisoformat(text)
    except ValueError:
        return False
    return True


def value_type(values: list[Any], sniff_strings: bool) -> tuple[str, dict[str, Any]]:
    """The type of a column's non-null Python values, and its details (scale, items)."""
    bools, ints, floats, stamps, sequences = _kinds()
    if not values:
        return "any", {}
    if all(isinstance(v, bools) for v in values):
        return "boolean", {}
    if all(isinstance(v, ints) and not isinstance(v, bools) for v in values):
        return "integer", {}
    if all(isinstance(v, ints + floats) and not isinstance(v, bools) for v in values):
        return "double", {}
    if all(isinstance(v, str) for v in values):
        if sniff_strings and all(_is_date(v) for v in values):
            return "date", {}
        if sniff_strings and all(_is_stamp(v) for v in values):
            return "datetime", {}
        return "string", {}
    if all(isinstance(v, stamps) for v in values):
        return "datetime", {}
    if all(isinstance(v, _dt.date) for v in values):
        return "date", {}
    if all(isinstance(v, _dec.Decimal) for v in values):
        finite = [v for v in values if v.is_finite()]
        scale = max((decimal_digits(v)[1] for v in finite), default=0)
        return "decimal", {"precision": DEFAULT_PRECISION, "scale": min(scale, DEFAULT_PRECISION)}
    if all(isinstance(v, sequences) for v in values):
        elements = [e for v in values for e in list(v) if not _null(e)]
        items, _ = value_type(elements, sniff_strings)
        return "array", {"items": "any" if items == "array" else items}
    return "any", {}


def _series_type(series: Any) -> tuple[str, dict[str, Any]]:
    import pandas as pd
    from pandas.api import types as pt

    dtype = series.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        return value_type(list(dtype.categories), sniff_strings=False)
    if pt.is_bool_dtype(dtype):
        return "boolean", {}
    if pt.is_integer_dtype(dtype):
        return "integer", {}
    if pt.is_float_dtype(dtype):
        return "double", {}
    if pt.is_datetime64_any_dtype(dtype):
        return "datetime", {}
    if pt.is_string_dtype(dtype) and not pt.is_object_dtype(dtype):
        return "string", {}
    return value_type([v for v in series.tolist() if not _null(v)], sniff_strings=False)


def infer_columns(data: Any, sniff_strings: bool | None = None) -> list[Column]:
    """Columns of a DataFrame or of JSON rows (a list of objects), typed as the module says.

    ``sniff_strings`` (dates and timestamps written as strings) defaults to True for rows and
    False for a DataFrame.
    """
    if hasattr(data, "dtypes") and hasattr(data, "columns"):
        sniff = False if sniff_strings is None else sniff_strings
        out = []
        for name in data.columns:
            series = data[name]
            kind, details = _series_type(series)
            if sniff and kind == "string":
                kind, details = value_type([v for v in series.tolist() if not _null(v)], True)
            out.append(Column(str(name), kind, required=not bool(series.isna().any()),
                              **details))
        return out
    rows = _rows_of(data)
    sniff = True if sniff_strings is None else sniff_strings
    names: list[str] = []
    seen: set[str] = set()
    for row in rows:
        for key in row:
            if key not in seen:
                seen.add(key)
                names.append(key)
    out = []
    for name in names:
        values = [row.get(name) for row in rows]
        present = [v for v in values if not _null(v)]
        kind, details = value_type(present, sniff)
        out.append(Column(name, kind, required=len(present) == len(values), **details))
    return out


def _rows_of(data: Any) -> list[dict[str, Any]]:
    if isinstance(data, dict) and "requestData" in data:
        data = data["requestData"]
    if not isinstance(data, list) or not data or not all(isinstance(r, dict) for r in data):
        raise InvalidArgument(
            "an input example is a pandas DataFrame, or JSON rows: a non-empty list of objects "
            '(or {"requestData": [...]}), one key per column', field="inputExample")
    return data


def json_rows(data: Any) -> list[dict[str, Any]]:
    """A DataFrame or rows -> JSON-ready rows: ISO 8601 timestamps and dates, decimals as
    strings, nulls (NaN, NaT, NA) as None, arrays as lists."""
    option = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS
    if not hasattr(data, "dtypes"):
        rows = _rows_of(data)
        try:  # plain JSON values (and datetimes): no pandas needed
            plain: list[dict[str, Any]] = orjson.loads(orjson.dumps(rows, option=option))
            return plain
        except TypeError:
            pass
    from .frames import frame_rows, json_default

    rows = frame_rows(data) if hasattr(data, "dtypes") else _rows_of(data)
    out: list[dict[str, Any]] = orjson.loads(orjson.dumps(rows, default=json_default,
                                                          option=option))
    return out


@dataclass
class InputExample:
    """A model's declared input columns and a few example rows (JSON-ready)."""

    columns: list[Column]
    rows: list[dict[str, Any]]

    @classmethod
    def of(cls, data: Any, columns: list[Any] | None = None,
           sniff_strings: bool | None = None, max_rows: int = MAX_EXAMPLE_ROWS) -> InputExample:
        """From a DataFrame or JSON rows: columns inferred from all of it (unless given), the
        first ``max_rows`` rows kept; the rows are checked against the columns."""
        if isinstance(data, InputExample):
            return data
        if hasattr(data, "dtypes") and len(data) == 0:
            raise InvalidArgument("the input example has no rows; give at least one",
                                  field="inputExample")
        cols = [c if isinstance(c, Column) else Column(**c) for c in columns] if columns \
            else infer_columns(data, sniff_strings)
        example = cls(cols, json_rows(data.head(max_rows) if hasattr(data, "head")
                                      else _rows_of(data)[:max_rows]))
        example.check()
        return example

    def check(self) -> None:
        try:
            check_rows(Tabular("inputExample", self.columns), self.rows)
        except LiveMLError as err:
            raise InvalidArgument(f"the input example does not fit its columns: {err.message}",
                                  field="inputExample",
                                  **err.parameters.get("errorType", {})) from err

    def to_dict(self) -> dict[str, Any]:
        from .api import ModelApi

        table = ModelApi([Tabular("inputExample", self.columns)],
                         [Tabular("out")]).to_dict()["inputs"][0]
        return {"columns": table["columns"], "rows": self.rows}

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> InputExample:
        return cls([Column(**c) for c in doc["columns"]], list(doc["rows"]))

    @classmethod
    def load(cls, source: str) -> InputExample | None:
        """From a JSON document (``to_dict``), given inline or as a file path; "" is None."""
        if not source:
            return None
        text = source if source.lstrip().startswith("{") else Path(source).read_text()
        return cls.from_dict(json.loads(text))


def read_input_example(path: str | Path) -> InputExample:
    """An input example file: CSV (``.csv``), else JSON rows (a list of objects or
    ``{"requestData": [...]}``)."""
    path = Path(path)
    if not path.is_file():
        raise InvalidArgument(f"no such input example file: {path}", field="inputExample")
    if path.suffix.lower() in (".csv", ".tsv"):
        import pandas as pd

        frame = pd.read_csv(path, sep="\t" if path.suffix.lower() == ".tsv" else ",",
                            dtype_backend="numpy_nullable")
        return InputExample.of(frame, sniff_strings=True)
    try:
        doc = json.loads(path.read_text())
    except ValueError as exc:
        raise InvalidArgument(f"the input example {path} is neither CSV (name it .csv) nor "
                              f"JSON: {exc}", field="inputExample") from exc
    return InputExample.of(doc)
