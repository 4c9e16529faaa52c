"""A model's API: named inputs and outputs, and the codecs that check and decode requests.

A tabular input or output is a list of rows (JSON objects) with typed columns; a parameter is a
single typed value with a default. The codecs turn a request body into the keyword arguments of
the model, naming the offending input or column when the body does not match.
"""
from __future__ import annotations

import datetime as _dt
import math
from dataclasses import asdict, dataclass, field
from typing import Any

from .errors import invalid_input

TYPES = ("string", "integer", "double", "boolean", "datetime", "date", "decimal", "array", "any")
_PY_TYPES = {str: "string", int: "integer", float: "double", bool: "boolean", object: "any"}


def type_name(kind: Any) -> str:
    """Normalize a column or parameter type given as a Python type or a name."""
    if isinstance(kind, str):
        aliases = {"str": "string", "int": "integer", "float": "double", "bool": "boolean",
                   "long": "integer", "number": "double", "timestamp": "datetime"}
        kind = aliases.get(kind.lower(), kind.lower())
        if kind in TYPES:
            return kind
    elif kind in _PY_TYPES:
        return _PY_TYPES[kind]
    elif kind in (_dt.datetime, _dt.date):
        return "datetime"
    raise ValueError(f"unknown type {kind!r}; use one of {', '.join(TYPES)}")


def _matches(kind: str, value: Any) -> bool:
    if kind == "any":
        return True
    if kind == "string":
        return isinstance(value, str)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "double":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind in ("date", "decimal", "array"):  # stand-in for the schemas helper's codecs
        return _matches_more(kind, value)
    if kind == "datetime":
        if isinstance(value, str):
            try:
                _dt.datetime.fromisoformat(value)
                return True
            except ValueError:
                return False
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return False


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _json_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "double"
    if isinstance(value, str):
        return "string"
    return type(value).__name__


@dataclass
class Column:
    name: str
    type: str = "any"
    required: bool = True
    precision: int | None = None  # decimal
    scale: int | None = None      # decimal
    items: str = "any"            # array: the element type

    def __post_init__(self) -> None:
        self.type = type_name(self.type)


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
    name: str
    type: str = "any"
    default: Any = None
    required: bool = False
    kind: str = "parameter"

    def __post_init__(self) -> None:
        self.type = type_name(self.type)


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
        return asdict(self)

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
    def decode_v1(self, body: Any) -> dict[str, Any]:
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
        return {table.name: check_rows(table, body["requestData"]), **self._params(params)}

    def decode_v2(self, body: Any) -> dict[str, Any]:
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
        out: dict[str, Any] = {}
        for table in self.tabular_inputs:
            if table.name not in body:
                raise invalid_input("requiredValueMissing", f"input {table.name!r} is missing",
                                    input=table.name)
            out[table.name] = check_rows(table, body[table.name])
        out.update(self._params({p.name: body[p.name] for p in self.parameters if p.name in body}))
        return out

    def _params(self, given: dict[str, Any]) -> dict[str, Any]:
        declared = {p.name: p for p in self.parameters}
        for key in given:
            if key not in declared:
                raise invalid_input("unknownInputName", f"unknown parameter {key!r}", input=key)
        out = {}
        for p in self.parameters:
            if p.name in given and not _missing(given[p.name]):
                value = given[p.name]
                if not _matches(p.type, value):
                    raise invalid_input(
                        "typeMismatch",
                        f"parameter {p.name!r} must be {p.type}, got {_json_kind(value)}",
                        input=p.name, expected=p.type, actual=_json_kind(value))
                out[p.name] = float(value) if p.type == "double" else value
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


def check_rows(table: Tabular, rows: Any) -> list[dict[str, Any]]:
    """Check a list of rows against a table's columns, naming the first offending value."""
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise invalid_input("invalidTabularFormat",
                            f"input {table.name!r} must be a list of row objects",
                            input=table.name)
    for i, row in enumerate(rows):
        for col in table.columns:
            value = row.get(col.name)
            if _missing(value):
                if col.required:
                    raise invalid_input(
                        "requiredValueMissing",
                        f"row {i}: column {col.name!r} of input {table.name!r} is missing",
                        input=table.name, column=col.name, row=i)
            elif not _matches(col.type, value):
                raise invalid_input(
                    "typeMismatch",
                    f"row {i}: column {col.name!r} must be {col.type}, got {_json_kind(value)}",
                    input=table.name, column=col.name, row=i, expected=col.type,
                    actual=_json_kind(value))
    return rows


def sample_value(kind: str) -> Any:
    """A harmless value of a type, for self-test rows."""
    return {"string": "", "integer": 0, "double": 0.0, "boolean": False,
            "datetime": "1970-01-01T00:00:00", "date": "1970-01-01", "decimal": "0",
            "array": [], "any": 0}[kind]


def _matches_more(kind: str, value: Any) -> bool:
    """date, decimal and array values (a stand-in until the schemas helper's codecs land)."""
    if kind == "date":
        if not isinstance(value, str):
            return False
        try:
            _dt.date.fromisoformat(value)
            return True
        except ValueError:
            return False
    if kind == "decimal":
        if isinstance(value, bool):
            return False
        if isinstance(value, (int, float)):
            return math.isfinite(value)
        if isinstance(value, str):
            import decimal

            try:
                return decimal.Decimal(value).is_finite()
            except decimal.InvalidOperation:
                return False
        return False
    return isinstance(value, list)
