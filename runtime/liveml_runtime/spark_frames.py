"""pandas <-> Spark conversions driven by the declared columns, never inferred.

Each declared column gets an explicit Arrow and Spark type (integer -> LongType, double ->
DoubleType, string -> StringType, boolean -> BooleanType, datetime -> TimestampType in UTC, date
-> DateType, decimal -> DecimalType(precision, scale), array -> ArrayType(items)); ``required``
false makes it nullable. pandas goes to Arrow here (each value checked against its column, a bad
one is a 400 naming the column), Arrow to Spark with ``createDataFrame(table, schema)``, and back
with ``toArrow()``; ML vectors become arrays of doubles on the JVM side first.
"""
from __future__ import annotations

import datetime as dt
import decimal
import math
from typing import Any

from .api import Column
from .errors import invalid_input

DEFAULT_PRECISION, DEFAULT_SCALE = 38, 18


def _decimal_shape(col: Column) -> tuple[int, int]:
    return (col.precision or DEFAULT_PRECISION,
            DEFAULT_SCALE if col.scale is None else col.scale)


def _unsupported(col: Column, kind: str) -> Exception:
    return ValueError(f"column {col.name!r} is declared {kind!r}, which has no Spark type: "
                      "declare it as string, integer, double, boolean, datetime, date, decimal "
                      "or array (with its items type)")


def arrow_type(col: Column, kind: str | None = None) -> Any:
    import pyarrow as pa

    kind = kind or col.type
    simple = {"integer": pa.int64(), "double": pa.float64(), "string": pa.string(),
              "boolean": pa.bool_(), "datetime": pa.timestamp("us", tz="UTC"),
              "date": pa.date32()}
    if kind in simple:
        return simple[kind]
    if kind == "decimal":
        return pa.decimal128(*_decimal_shape(col))
    if kind == "array" and col.items not in ("any", "array"):
        return pa.list_(arrow_type(col, col.items))
    raise _unsupported(col, f"array of {col.items}" if kind == "array" else kind)


def spark_type(col: Column, kind: str | None = None) -> Any:
    from pyspark.sql import types as T

    kind = kind or col.type
    simple = {"integer": T.LongType(), "double": T.DoubleType(), "string": T.StringType(),
              "boolean": T.BooleanType(), "datetime": T.TimestampType(), "date": T.DateType()}
    if kind in simple:
        return simple[kind]
    if kind == "decimal":
        return T.DecimalType(*_decimal_shape(col))
    if kind == "array" and col.items not in ("any", "array"):
        return T.ArrayType(spark_type(col, col.items), containsNull=True)
    raise _unsupported(col, f"array of {col.items}" if kind == "array" else kind)


def spark_schema(columns: list[Column]) -> Any:
    from pyspark.sql import types as T

    return T.StructType([T.StructField(c.name, spark_type(c), nullable=not c.required)
                         for c in columns])


def check_columns(columns: list[Column]) -> None:
    """Refuse, up front, a declaration that has no Spark type."""
    if not columns:
        raise ValueError("a Spark model needs its input columns declared: pass an input "
                         "example (--input-example FILE, or input_example=df)")
    for c in columns:
        arrow_type(c)


def _null(value: Any) -> bool:
    if value is None or isinstance(value, float) and math.isnan(value):
        return True
    try:
        import pandas as pd

        return value is pd.NA or value is pd.NaT
    except ImportError:  # pragma: no cover
        return False


def _value(kind: str, value: Any, col: Column) -> Any:
    """One value in its column's Python form for Arrow; TypeError/ValueError when it does not fit."""
    import numpy as np

    if _null(value):
        return None
    if kind == "integer":
        if isinstance(value, (bool, np.bool_)):
            raise TypeError("a boolean")
        if isinstance(value, (int, np.integer)):
            return int(value)
        if isinstance(value, (float, np.floating)) and float(value).is_integer():
            return int(value)
        raise TypeError(type(value).__name__)
    if kind == "double":
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.number)):
            raise TypeError(type(value).__name__)
        return float(value)
    if kind == "string":
        if not isinstance(value, str):
            raise TypeError(type(value).__name__)
        return value
    if kind == "boolean":
        if not isinstance(value, (bool, np.bool_)):
            raise TypeError(type(value).__name__)
        return bool(value)
    if kind == "datetime":
        return _timestamp(value)
    if kind == "date":
        if isinstance(value, dt.datetime):
            return value.date()
        if isinstance(value, dt.date):
            return value
        if isinstance(value, str):
            return dt.date.fromisoformat(value)
        raise TypeError(type(value).__name__)
    if kind == "decimal":
        if isinstance(value, (bool, np.bool_)):
            raise TypeError("a boolean")
        if isinstance(value, decimal.Decimal):
            out = value
        elif isinstance(value, (int, float, str, np.number)):
            out = decimal.Decimal(str(value))
        else:
            raise TypeError(type(value).__name__)
        if not out.is_finite():
            raise ValueError(f"{value!r} is not a finite number")
        return out
    if kind == "array":
        if isinstance(value, (list, tuple, np.ndarray)):
            return [_value(col.items or "any", v, col) for v in value]
        raise TypeError(type(value).__name__)
    raise _unsupported(col, kind)


def _timestamp(value: Any) -> dt.datetime:
    import numpy as np
    import pandas as pd

    if isinstance(value, (bool, np.bool_)):
        raise TypeError("a boolean")
    if isinstance(value, (int, float, np.number)):
        ts = pd.Timestamp(float(value), unit="s", tz="UTC")
    elif isinstance(value, (str, dt.datetime, np.datetime64)):
        ts = pd.Timestamp(value)
    else:
        raise TypeError(type(value).__name__)
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    out: dt.datetime = ts.to_pydatetime(warn=False)
    return out


def _mismatch(col: Column, row: int | None, detail: str) -> Exception:
    where = f"row {row}: " if row is not None else ""
    expected = f"array of {col.items}" if col.type == "array" else col.type
    if col.type == "decimal":
        expected = "decimal({}, {})".format(*_decimal_shape(col))
    return invalid_input("typeMismatch", f"{where}column {col.name!r} must be {expected}: {detail}",
                         column=col.name, row=row, expected=col.type)


def _fast(series: Any, col: Column) -> Any:
    """Arrow straight from a numeric or boolean pandas column (no per-value Python work)."""
    import pyarrow as pa

    kind = series.dtype.kind
    if col.type == "integer" and kind in "iu":
        return pa.Array.from_pandas(series, type=pa.int64())
    if col.type == "double" and kind in "fiu":
        return pa.Array.from_pandas(series.astype("float64"), type=pa.float64())
    if col.type == "boolean" and kind == "b":
        return pa.Array.from_pandas(series, type=pa.bool_())
    return None


def to_arrow(frame: Any, columns: list[Column]) -> Any:
    """A pandas DataFrame -> an Arrow table of exactly the declared columns and types."""
    import pyarrow as pa

    arrays, fields = [], []
    for col in columns:
        typ = arrow_type(col)
        fields.append(pa.field(col.name, typ, nullable=not col.required))
        if col.name not in frame.columns:
            if col.required:
                raise invalid_input("requiredValueMissing", f"column {col.name!r} is missing",
                                    column=col.name)
            arrays.append(pa.nulls(len(frame), typ))
            continue
        series = frame[col.name]
        try:
            fast = _fast(series, col)
        except (pa.ArrowException, ValueError, TypeError):
            fast = None
        if fast is not None:
            arrays.append(fast)
            continue
        values = []
        for i, value in enumerate(series.tolist()):
            try:
                values.append(_value(col.type, value, col))
            except (TypeError, ValueError, ArithmeticError) as exc:
                raise _mismatch(col, i, f"got {exc}") from None
        try:
            arrays.append(pa.array(values, type=typ))
        except (pa.ArrowException, OverflowError, ValueError, TypeError) as exc:
            row = _bad_row(values, typ)
            raise _mismatch(col, row, str(exc)) from None
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def _bad_row(values: list[Any], typ: Any) -> int | None:
    import pyarrow as pa

    for i, value in enumerate(values):
        try:
            pa.array([value], type=typ)
        except (pa.ArrowException, OverflowError, ValueError, TypeError):
            return i
    return None


def to_spark(spark: Any, frame: Any, columns: list[Column]) -> Any:
    """A pandas DataFrame -> a Spark DataFrame with the schema of the declared columns."""
    return spark.createDataFrame(to_arrow(frame, columns), schema=spark_schema(columns))


def _quoted(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def to_pandas(frame: Any, names: list[str] | None = None) -> Any:
    """A Spark DataFrame (its ``names`` columns, in order) -> pandas: ML vectors as arrays of
    doubles, integers as nullable ``Int64``, booleans as ``boolean``, timestamps in UTC."""
    import pandas as pd
    import pyarrow as pa
    from pyspark.ml.functions import vector_to_array
    from pyspark.ml.linalg import VectorUDT
    from pyspark.sql import functions as F

    fields = {f.name: f for f in frame.schema.fields}
    selected = []
    for name in names or list(fields):
        column = F.col(_quoted(name))
        if isinstance(fields[name].dataType, VectorUDT):
            column = vector_to_array(column)
        selected.append(column.alias(name))
    table = frame.select(*selected).toArrow()

    def mapper(typ: Any) -> Any:
        if pa.types.is_integer(typ):
            return pd.Int64Dtype()
        if pa.types.is_boolean(typ):
            return pd.BooleanDtype()
        return None

    return table.to_pandas(types_mapper=mapper)
