"""A model's API: named inputs and outputs, and the codecs that check and decode requests.

A tabular input or output is a list of rows (JSON objects) with typed columns; a parameter is a
single typed value with a default. The codecs turn a request body into the keyword arguments of
the model, naming the offending input, column and row when the body does not match.

Types (``Column.type``, ``Parameter.type``), as JSON carries them:

============  ===============================================================================
``string``    a JSON string
``integer``   a whole JSON number (``3`` or ``3.0``) that fits in 64 bits
``double``    a JSON number
``boolean``   ``true`` / ``false``
``datetime``  a timestamp: an ISO 8601 string (no offset means UTC) or Unix seconds
``date``      an ISO 8601 date, ``YYYY-MM-DD``
``decimal``   a JSON string or number within ``precision``/``scale`` (default 38/18)
``array``     a JSON list whose elements are of type ``items`` (default ``any``; nulls allowed)
``any``       anything
============  ===============================================================================

Aliases: int/long -> integer, float/number -> double, bool -> boolean, str -> string,
timestamp -> datetime; Python types (``int``, ``datetime.date``, ``decimal.Decimal``, ...) too.
``required=False`` makes a column (or parameter) nullable. ``frames.to_frame`` says what each
type becomes in pandas.

Limits on a request body (``decode_body`` and ``check_rows``; each a 400
``InferenceInvalidInput`` naming what to change): a table has at least one row; its rows carry
at most ``max_columns`` distinct keys, declared and undeclared together (``MAX_COLUMNS``, 1000,
or twice the declared columns when that is more; the replica's ``--max-columns`` or
``LIVEML_MAX_COLUMNS`` sets it), and undeclared keys that most rows lack are refused past
``CELLS_PER_VALUE`` frame cells per value sent; JSON nests at most ``MAX_DEPTH`` levels (what
the answer can be written back with); an object repeats no key; a parameter given is not
``null`` (leave it out to take its default).
"""
from __future__ import annotations

import datetime as _dt
import decimal as _dec
import itertools
import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import orjson

from .errors import MalformedRequestBody, invalid_input

#: The type vocabulary of columns and parameters (see the module docstring of ``frames`` for
#: what each becomes in pandas).
TYPES = ("string", "integer", "double", "boolean", "datetime", "date", "decimal", "array", "any")
ALIASES = {"str": "string", "int": "integer", "long": "integer", "float": "double",
           "number": "double", "bool": "boolean", "timestamp": "datetime"}
DEFAULT_PRECISION, DEFAULT_SCALE = 38, 18
_PY_TYPES = {str: "string", int: "integer", float: "double", bool: "boolean", object: "any",
             _dt.datetime: "datetime", _dt.date: "date", _dec.Decimal: "decimal", list: "array"}
_INT64 = (-(1 << 63), (1 << 63) - 1)
# datetime64[ns] holds 1677-09-21 .. 2262-04-11; whole years inside it are accepted
_YEARS = (1678, 2261)
#: distinct keys a table's rows may carry per request (at least twice the declared columns)
MAX_COLUMNS = 1000
#: cells of undeclared columns a request's frame may hold per value it sent (past 100,000)
CELLS_PER_VALUE = 10
#: JSON nesting levels a body may have: the most orjson writes back (its encoder stops at 255)
MAX_DEPTH = 254


def type_name(kind: Any) -> str:
    """Normalize a column or parameter type given as a Python type or a name (or an alias)."""
    if isinstance(kind, str):
        name = ALIASES.get(kind.lower(), kind.lower())
        if name in TYPES:
            return name
    elif isinstance(kind, type) and kind in _PY_TYPES:
        return _PY_TYPES[kind]
    raise ValueError(f"unknown type {kind!r}; use one of {', '.join(TYPES)}")


def type_spec(kind: str, precision: int | None = None, scale: int | None = None,
              items: str | None = None) -> str:
    """A type as people read it: ``integer``, ``decimal(10,2)``, ``array<double>``."""
    if kind == "decimal":
        return f"decimal({precision or DEFAULT_PRECISION},{DEFAULT_SCALE if scale is None else scale})"
    if kind == "array":
        return f"array<{items or 'any'}>"
    return kind


# --- values: does a JSON value fit a type? -----------------------------------------------------
def parse_datetime(value: Any) -> _dt.datetime | None:
    """An ISO 8601 string (naive means UTC) or Unix seconds -> an aware UTC datetime, else None."""
    if isinstance(value, str):
        try:
            parsed = _dt.datetime.fromisoformat(value.strip())
        except ValueError:
            return None
        parsed = parsed.replace(tzinfo=_dt.UTC) if parsed.tzinfo is None else \
            parsed.astimezone(_dt.UTC)
    elif isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        try:
            parsed = _dt.datetime.fromtimestamp(value, _dt.UTC)
        except (OverflowError, OSError, ValueError):
            return None
    elif isinstance(value, _dt.datetime):
        parsed = value.replace(tzinfo=_dt.UTC) if value.tzinfo is None else \
            value.astimezone(_dt.UTC)
    else:
        return None
    return parsed if _YEARS[0] <= parsed.year <= _YEARS[1] else None


def parse_date(value: Any) -> _dt.date | None:
    """An ISO ``YYYY-MM-DD`` string -> a date, else None."""
    if isinstance(value, _dt.date) and not isinstance(value, _dt.datetime):
        return value
    if not isinstance(value, str):
        return None
    try:
        return _dt.date.fromisoformat(value.strip())
    except ValueError:
        return None


def parse_decimal(value: Any) -> _dec.Decimal | None:
    """A JSON string or number -> a finite Decimal (floats by their shortest repr), else None."""
    if isinstance(value, bool):
        return None
    try:
        if isinstance(value, _dec.Decimal):
            parsed = value
        elif isinstance(value, int):
            parsed = _dec.Decimal(value)
        elif isinstance(value, float):
            parsed = _dec.Decimal(repr(value))
        elif isinstance(value, str):
            parsed = _dec.Decimal(value.strip())
        else:
            return None
    except _dec.InvalidOperation:
        return None
    return parsed if parsed.is_finite() else None


def decimal_digits(value: _dec.Decimal) -> tuple[int, int]:
    """(digits before the point, digits after it) of a finite Decimal, trailing zeros dropped."""
    exponent = value.normalize().as_tuple().exponent
    scale = max(0, -int(exponent))
    _, digits, exp = value.as_tuple()
    return max(0, len(digits) + int(exp)), scale


Check = Callable[[Any, Any], str | None]


def _check_string(value: Any, spec: Any) -> str | None:
    return None if isinstance(value, str) else "a string"


def _check_integer(value: Any, spec: Any) -> str | None:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        return "a whole number"
    if not _INT64[0] <= value <= _INT64[1]:
        return "a whole number that fits in 64 bits"
    return None


def _check_double(value: Any, spec: Any) -> str | None:
    return None if isinstance(value, (int, float)) and not isinstance(value, bool) else "a number"


def _check_boolean(value: Any, spec: Any) -> str | None:
    return None if isinstance(value, bool) else "true or false"


def _check_datetime(value: Any, spec: Any) -> str | None:
    if parse_datetime(value) is not None:
        return None
    return ("an ISO 8601 timestamp such as 2024-01-31T12:00:00Z (or Unix seconds) "
            f"in the years {_YEARS[0]}-{_YEARS[1]}")


def _check_date(value: Any, spec: Any) -> str | None:
    return None if parse_date(value) is not None else "an ISO 8601 date such as 2024-01-31"


def _check_decimal(value: Any, spec: Any) -> str | None:
    parsed = parse_decimal(value)
    precision = getattr(spec, "precision", None) or DEFAULT_PRECISION
    scale = getattr(spec, "scale", None)
    scale = DEFAULT_SCALE if scale is None else scale
    wanted = (f"a decimal number (a JSON string or number) with at most {precision - scale} "
              f"digits before the point and {scale} after it")
    if parsed is None:
        return wanted
    before, after = decimal_digits(parsed)
    return wanted if before > precision - scale or after > scale else None


def _check_array(value: Any, spec: Any) -> str | None:
    if not isinstance(value, list):
        return "a JSON array"
    items = getattr(spec, "items", None) or "any"
    if items == "any":
        return None
    check = CHECKS[items]
    for i, element in enumerate(value):
        if not is_missing(element) and check(element, None) is not None:
            return f"a JSON array of {items} values (element {i} is {json_kind(element)})"
    return None


CHECKS: dict[str, Check] = {
    "string": _check_string, "integer": _check_integer, "double": _check_double,
    "boolean": _check_boolean, "datetime": _check_datetime, "date": _check_date,
    "decimal": _check_decimal, "array": _check_array, "any": lambda value, spec: None,
}


def is_missing(value: Any) -> bool:
    """None or a float NaN: a null."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def json_kind(value: Any) -> str:
    """The JSON kind of a decoded value, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "double"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


@dataclass
class Column:
    """A named, typed column. ``required`` False means nullable (null or absent is accepted).

    ``precision``/``scale`` apply to ``decimal`` (default 38/18), ``items`` to ``array`` (the
    element type, default ``any``); both are None for other types.
    """

    name: str
    type: str = "any"
    required: bool = True
    precision: int | None = None
    scale: int | None = None
    items: str | None = None

    def __post_init__(self) -> None:
        _typed(self)

    @property
    def spec(self) -> str:
        return type_spec(self.type, self.precision, self.scale, self.items)


def _typed(port: Any) -> None:
    """Normalize a column's or parameter's type and its decimal/array details."""
    port.type = type_name(port.type)
    if port.type == "decimal":
        port.precision = int(port.precision or DEFAULT_PRECISION)
        port.scale = DEFAULT_SCALE if port.scale is None else int(port.scale)
        if not 0 <= port.scale <= port.precision <= DEFAULT_PRECISION:
            raise ValueError(f"{port.name!r}: decimal({port.precision},{port.scale}) needs "
                             f"0 <= scale <= precision <= {DEFAULT_PRECISION}")
    else:
        port.precision = port.scale = None
    if port.type == "array":
        port.items = type_name(port.items or "any")
        if port.items == "array":
            raise ValueError(f"{port.name!r}: arrays of arrays are not supported; use items='any'")
    else:
        port.items = None


@dataclass
class Tabular:
    """A table of rows; ``columns`` empty means any columns are accepted."""

    name: str
    columns: list[Column] = field(default_factory=list)
    kind: str = "tabular"

    def __post_init__(self) -> None:
        self.columns = [c if isinstance(c, Column) else _column(c) for c in self.columns]


@dataclass
class Parameter:
    """A single typed value with a default; arrives as a plain Python value (see decode_value)."""

    name: str
    type: str = "any"
    default: Any = None
    required: bool = False
    kind: str = "parameter"
    precision: int | None = None
    scale: int | None = None
    items: str | None = None

    def __post_init__(self) -> None:
        _typed(self)

    @property
    def spec(self) -> str:
        return type_spec(self.type, self.precision, self.scale, self.items)


Port = Tabular | Parameter


def _column(spec: Any) -> Column:
    if isinstance(spec, dict):
        return Column(**spec)
    if isinstance(spec, (tuple, list)):
        return Column(*spec)
    return Column(str(spec))


def _port(spec: Any) -> Port:
    if isinstance(spec, (Tabular, Parameter)):
        return spec
    if isinstance(spec, dict):
        spec = dict(spec)
        kind = spec.pop("kind", "tabular")
        return Tabular(**spec) if kind == "tabular" else Parameter(**spec)
    raise TypeError(f"not an input or output declaration: {spec!r}")


@dataclass
class ModelApi:
    """Named inputs and outputs of a model, as declared by ``ModelAdapter.api()``."""

    inputs: list[Port]
    outputs: list[Port]

    def __post_init__(self) -> None:
        self.inputs = [_port(p) for p in self.inputs]
        self.outputs = [_port(p) for p in self.outputs]
        for ports, what in ((self.inputs, "input"), (self.outputs, "output")):
            names = [p.name for p in ports]
            if len(set(names)) != len(names):
                raise ValueError(f"duplicate {what} names in {names}")
        if not self.outputs:
            raise ValueError("a model API needs at least one output")

    @classmethod
    def coerce(cls, value: Any) -> ModelApi:
        """Accept a ModelApi, a dict from ``to_dict``, or an ``(inputs, outputs)`` pair."""
        if isinstance(value, ModelApi):
            return value
        if isinstance(value, dict):
            return cls(inputs=value["inputs"], outputs=value["outputs"])
        if isinstance(value, tuple) and len(value) == 2:
            ins, outs = value
            return cls(inputs=_named(ins), outputs=_named(outs))
        raise TypeError("api() must return a ModelApi or an (inputs, outputs) pair")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready; the decimal/array details appear only on the types they belong to."""
        def clean(port: dict[str, Any]) -> dict[str, Any]:
            out = {k: v for k, v in port.items()
                   if not (k in ("precision", "scale", "items") and v is None)}
            if "columns" in out:
                out["columns"] = [clean(c) for c in out["columns"]]
            return out

        doc = asdict(self)
        return {"inputs": [clean(p) for p in doc["inputs"]],
                "outputs": [clean(p) for p in doc["outputs"]]}

    @property
    def tabular_inputs(self) -> list[Tabular]:
        return [p for p in self.inputs if isinstance(p, Tabular)]

    @property
    def parameters(self) -> list[Parameter]:
        return [p for p in self.inputs if isinstance(p, Parameter)]

    @property
    def single_tabular(self) -> bool:
        """True when the v1 ``transform`` shape applies: one tabular input and one output."""
        return (len(self.tabular_inputs) == 1 and len(self.outputs) == 1
                and isinstance(self.outputs[0], Tabular))

    # --- request decoding -------------------------------------------------------------------
    def decode_v1(self, body: Any, max_columns: int = MAX_COLUMNS) -> dict[str, Any]:
        """``{"requestData": [rows], "requestParams": {...}}`` -> model keyword arguments."""
        if not self.single_tabular:
            raise invalid_input(
                "invalidTabularFormat",
                "this model has several inputs or outputs: query it through the /v2 endpoint",
                inputs=[p.name for p in self.inputs])
        if not isinstance(body, dict) or "requestData" not in body:
            raise invalid_input("invalidTabularFormat",
                                'the body must be {"requestData": [rows], "requestParams": {}}')
        unknown = set(body) - {"requestData", "requestParams"}
        if unknown:
            raise invalid_input("unknownInputName", f"unknown keys {sorted(unknown)}",
                                input=sorted(unknown)[0])
        params = body.get("requestParams") or {}
        if not isinstance(params, dict):
            raise invalid_input("invalidTabularFormat", "requestParams must be an object",
                                input="requestParams")
        table = self.tabular_inputs[0]
        decoded = self._params(params)  # the few parameters first, then the rows
        return {table.name: check_rows(table, body["requestData"], max_columns), **decoded}

    def decode_v2(self, body: Any, max_columns: int = MAX_COLUMNS) -> dict[str, Any]:
        """``{input_name: rows or value, ...}`` -> model keyword arguments."""
        if not isinstance(body, dict):
            raise invalid_input("invalidTabularFormat",
                                "the body must be an object with one key per named input",
                                inputs=[p.name for p in self.inputs])
        names = {p.name for p in self.inputs}
        for key in body:
            if key not in names:
                raise invalid_input("unknownInputName",
                                    f"unknown input {key!r}; the model takes {sorted(names)}",
                                    input=key)
        params = self._params({p.name: body[p.name] for p in self.parameters if p.name in body})
        out: dict[str, Any] = {}
        for table in self.tabular_inputs:
            if table.name not in body:
                raise invalid_input("requiredValueMissing", f"input {table.name!r} is missing",
                                    input=table.name)
            out[table.name] = check_rows(table, body[table.name], max_columns)
        out.update(params)
        return out

    def _params(self, given: dict[str, Any]) -> dict[str, Any]:
        declared = {p.name: p for p in self.parameters}
        for key in given:
            if key not in declared:
                raise invalid_input("unknownInputName", f"unknown parameter {key!r}", input=key)
        for key, value in given.items():
            if value is None:
                default = declared[key].default
                raise invalid_input(
                    "typeMismatch", f"parameter {key!r} is null; leave it out to take its "
                    f"default ({default!r}), or give a {declared[key].spec} value",
                    input=key, expected=declared[key].type, actual="null")
        out = {}
        for p in self.parameters:
            if p.name in given and not is_missing(given[p.name]):
                value = given[p.name]
                hint = CHECKS[p.type](value, p)
                if hint is not None:
                    raise invalid_input(
                        "typeMismatch",
                        f"parameter {p.name!r} must be {p.spec} ({hint}), got "
                        f"{json_kind(value)} {_shown(value)}",
                        input=p.name, expected=p.type, actual=json_kind(value))
                out[p.name] = decode_value(p, value)
            elif p.required:
                raise invalid_input("requiredValueMissing", f"parameter {p.name!r} is missing",
                                    input=p.name)
            else:
                out[p.name] = p.default
        return out


def _named(ports: Any) -> list[Port]:
    """``{"name": Tabular(...)}`` or a list of ports -> a list of named ports."""
    if isinstance(ports, dict):
        result = []
        for name, port in ports.items():
            port = _port(port) if not isinstance(port, (Tabular, Parameter)) else port
            port.name = name
            result.append(port)
        return result
    return [_port(p) for p in ports]


def check_rows(table: Tabular, rows: Any, max_columns: int = MAX_COLUMNS) -> list[dict[str, Any]]:
    """Check a list of rows against a table's columns, naming the first offending value.

    The rows must not be empty, and carry at most ``max(max_columns, 2 * declared)`` distinct
    keys (``tooManyColumns``): each key becomes a column of the model's frame, as long as the
    table, so many sparse keys would make the frame quadratic in the body. For the same reason
    the undeclared columns may hold at most ``CELLS_PER_VALUE`` cells per value sent (beyond
    100,000 cells; ``sparseRows``), which keeps the frame linear in the body.

    A required column must hold a non-null value in every row (``requiredValueMissing``); a
    nullable one accepts null or no key. Every non-null value must fit its column's type
    (``typeMismatch``, with ``expected`` the type and ``actual`` the JSON kind of the value).
    Keys the table does not declare pass through unchecked.
    """
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise invalid_input("invalidTabularFormat",
                            f"input {table.name!r} must be a list of row objects",
                            input=table.name)
    if not rows:
        raise invalid_input("emptyRows", f"input {table.name!r} has no rows; send at least one row",
                            input=table.name)
    limit = max(max_columns, 2 * len(table.columns))
    keys = row_keys(rows)
    count = len(keys)
    if count > limit:
        raise invalid_input(
            "tooManyColumns",
            f"the rows of input {table.name!r} carry {count} distinct keys, more than the limit "
            f"of {limit} columns per request; send only the model's columns "
            f"({len(table.columns)} declared) or split the request",
            input=table.name, columns=count, maxColumns=limit)
    if count > len(table.columns) and len(rows) * count > 100_000:  # maybe sparse undeclared
        names = {c.name for c in table.columns}
        undeclared = sum(key not in names for key in keys)
        values = sum(map(len, rows))
        if len(rows) * undeclared > max(CELLS_PER_VALUE * values, 100_000):
            raise invalid_input(
                "sparseRows",
                f"the rows of input {table.name!r} carry {undeclared} undeclared keys, each in "
                f"few of its {len(rows)} rows: their columns would hold "
                f"{len(rows) * undeclared} cells for {values} values sent; give the rows the "
                "same keys, or split the request",
                input=table.name, rows=len(rows), undeclaredColumns=undeclared, values=values)
    checks = [(col, CHECKS[col.type]) for col in table.columns if col.type != "any" or col.required]
    for i, row in enumerate(rows):
        for col, check in checks:
            value = row.get(col.name)
            if value is None or (value.__class__ is float and math.isnan(value)):
                if col.required:
                    raise invalid_input(
                        "requiredValueMissing",
                        f"row {i}: column {col.name!r} of input {table.name!r} is missing; it "
                        "is required (declare it nullable, required=False, to accept nulls)",
                        input=table.name, column=col.name, row=i)
                continue
            hint = check(value, col)
            if hint is not None:
                raise invalid_input(
                    "typeMismatch",
                    f"row {i}: column {col.name!r} of input {table.name!r} must be {col.spec} "
                    f"({hint}), got {json_kind(value)} {_shown(value)}",
                    input=table.name, column=col.name, row=i, expected=col.type,
                    actual=json_kind(value))
    return rows


def row_keys(rows: list[dict[str, Any]]) -> dict[str, None]:
    """The distinct keys of some rows, in the order they first appear (one pass, in C)."""
    return dict.fromkeys(itertools.chain.from_iterable(rows))


def decode_body(body: bytes) -> Any:
    """A request body -> its JSON document, refusing what orjson alone would let through:
    nesting deeper than ``MAX_DEPTH`` (the answer could not be written) and repeated keys.

    Both checks ride on one ``orjson.dumps`` of the document: it fails past the depth, and it
    writes one ``:`` per member and the strings' own colons, so it holds fewer colons than the
    body exactly when the body repeated a key (the parser kept one member of each; a colon
    escaped as ``\\u003a`` is the one way to write a colon the count would miss, and takes the
    exact check)."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise MalformedRequestBody(f"the body is not valid JSON: {exc}") from exc
    try:
        written = orjson.dumps(doc)
    except orjson.JSONEncodeError:
        raise invalid_input(
            "tooDeep", f"the body nests deeper than {MAX_DEPTH} levels of arrays and objects; "
            "flatten the values (e.g. send them as a JSON string)", maxDepth=MAX_DEPTH) from None
    key = repeated_key(body, written)
    if key is not None:
        raise invalid_input("duplicateKey", f"the key {key!r} appears twice in one object of the "
                            "body; send each key once", key=key)
    return doc


class _Repeated(Exception):
    def __init__(self, key: str) -> None:
        self.key = key


def repeated_key(body: bytes, written: bytes | None = None) -> str | None:
    """The first key that one JSON object of ``body`` gives twice, or None (also for a body the
    standard parser refuses: orjson read it, and that is no repeated key).

    With ``written``, orjson's dump of the parsed body, most bodies are cleared by counting
    colons (see ``decode_body``); the others take the exact check, the standard parser's hook
    that sees each object's pairs."""
    if written is not None and body.count(b":") == written.count(b":") and \
            b"\\u003" not in body:
        return None

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        seen: dict[str, Any] = {}
        for key, value in items:
            if key in seen:
                raise _Repeated(key)
            seen[key] = value
        return seen

    try:
        json.loads(body, object_pairs_hook=pairs)
    except _Repeated as found:
        return found.key
    except ValueError:
        return None
    return None


def decode_value(spec: Column | Parameter, value: Any) -> Any:
    """A checked, non-null JSON value -> its Python value: int, float, bool, str, an aware UTC
    ``datetime``, a ``date``, a ``Decimal``, or a list of decoded elements."""
    kind = spec.type
    if kind == "integer":
        return int(value)
    if kind == "double":
        return float(value)
    if kind == "datetime":
        return parse_datetime(value)
    if kind == "date":
        return parse_date(value)
    if kind == "decimal":
        return parse_decimal(value)
    if kind == "array" and spec.items not in (None, "any"):
        element = Column("element", spec.items)
        return [None if is_missing(v) else decode_value(element, v) for v in value]
    return value


def sample_value(kind: str) -> Any:
    """A harmless JSON value of a type, for self-test rows."""
    return {"string": "", "integer": 0, "double": 0.0, "boolean": False,
            "datetime": "1970-01-01T00:00:00Z", "date": "1970-01-01", "decimal": "0",
            "array": [], "any": 0}[kind]
