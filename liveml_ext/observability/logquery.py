"""The log search language, parsed by recursive descent and compiled to a SQLite WHERE clause.

Grammar (``NOT`` binds tighter than ``AND``, ``AND`` tighter than ``OR``; adjacency means AND)::

    query   := [or]
    or      := and ("OR" and)*
    and     := unary (["AND"] unary)*
    unary   := ("NOT" | "-") unary | primary
    primary := "(" or ")" | term
    term    := FIELD (":" | ">" | ">=" | "<" | "<=") VALUE | WORD | "quoted phrase"

* ``level:error``, ``logger:"model-logger"``, ``tags.node_id:n1``, ``fields.port:43757``: a field's
  value (see :func:`resolve_field` for the names). ``level`` matches case-insensitively, other
  fields exactly; a JSON number or boolean also matches its text (``fields.ok:true``). A trailing
  ``*`` outside quotes is a prefix match (``logger:liveml.*``); ``field:*`` means the field is
  present.
* ``fields.seconds>1.5``, ``level>=warning`` (by severity), ``time>=2026-11-26T10:00:00Z``:
  comparisons.
* ``ready``, ``"self-test"``, ``read*``: full text on the message (whole words, case-insensitive,
  SQLite FTS5); ``message:...`` is the same. Without FTS5 it is a case-insensitive substring match.
* ``AND``, ``OR``, ``NOT`` (upper case; ``-term`` is NOT) and parentheses.

A malformed query raises :data:`InvalidLogQuery` with the 0-based ``position`` of the problem.
The SQL refers to the columns of :class:`~liveml_ext.observability.logstore.LogStore`'s tables
(``logs``, ``logs_fts``, ``deployments``); every user value is a bound parameter.
"""
from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from typing import Any

from liveml_ext.core.errors import LiveMLError, error_class

InvalidLogQuery = error_class("InvalidLogQuery", 400, "INVALID_ARGUMENT")

LOG_TABLE = "logs"
FTS_TABLE = "logs_fts"
DEPLOYMENT_TABLE = "deployments"

#: Names stored in their own column of the log table (``deployment_rid`` via ``deployments``).
COLUMNS = ("time", "level", "logger", "message", "node_id", "release", "deployment_rid")
#: Tags that have their own column.
TAG_COLUMNS = {"tags.node_id": "node_id", "tags.release": "release",
               "tags.deployment_rid": "deployment_rid"}
#: Top-level record keys kept in the JSON column ``extra`` (with ``tags.<key>`` and other paths).
JSON_NAMES = ("traceback", "fields")
LEVELS = {"DEBUG": 10, "INFO": 20, "WARN": 30, "WARNING": 30, "ERROR": 40, "CRITICAL": 50,
          "FATAL": 50}
_WORD_PUNCTUATION = frozenset("_.-*/@+#%&,'$?!~")
FIELD_HINT = ("level, logger, message, node_id, release, deployment_rid, traceback, fields, "
              "or a dotted path such as tags.<key> or fields.<name>")


# --- syntax tree --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Term:
    """One condition: full text on the message (``field`` None) or ``field op value``."""

    field: str | None
    value: str
    op: str = ":"
    prefix: bool = False
    position: int = 0


@dataclass(frozen=True)
class Not:
    operand: Node


@dataclass(frozen=True)
class And:
    operands: tuple[Node, ...]


@dataclass(frozen=True)
class Or:
    operands: tuple[Node, ...]


Node = Term | Not | And | Or


@dataclass(frozen=True)
class FieldRef:
    """Where a field or column lives: a stored ``column`` or a ``json_path`` into ``extra``."""

    name: str
    column: str | None = None
    json_path: str | None = None


def valid_field_name(name: str) -> bool:
    """Dot-separated segments of letters, digits, ``_`` and ``-``."""
    return all(seg and all(ch.isalnum() or ch in "_-" for ch in seg) for seg in name.split("."))


def resolve_field(name: str) -> FieldRef | None:
    """The column or JSON path behind a field name; None if the name means nothing.

    The stored columns by name (``tags.node_id``, ``tags.release``, ``tags.deployment_rid`` too),
    ``traceback`` and ``fields``, and any dotted path whose first segment starts with a letter or
    ``_`` (``tags.zone``, ``fields.port``, ``fields.a.b``: object keys, no array indexes) in the
    record's JSON. Anything else (``node``, ``127.0.0.1``, ``level.x``) is unknown.
    """
    if not valid_field_name(name):
        return None
    if name in COLUMNS:
        return FieldRef(name, column=name)
    if name in TAG_COLUMNS:
        return FieldRef(name, column=TAG_COLUMNS[name])
    first = name.split(".", 1)[0]
    dotted = "." in name and (first[0].isalpha() or first[0] == "_")
    if name in JSON_NAMES or (dotted and first not in COLUMNS and first != "traceback"):
        return FieldRef(name, json_path="$" + "".join(f'."{seg}"' for seg in name.split(".")))
    return None


def _fail(query: str, position: int, message: str) -> LiveMLError:
    return InvalidLogQuery(message, query=query, position=position)


# --- lexer --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Token:
    kind: str  # TERM, LPAREN, RPAREN, AND, OR, NOT, MINUS, EOF
    text: str
    pos: int
    term: Term | None = None


def _word_char(ch: str) -> bool:
    return ch.isalnum() or ch in _WORD_PUNCTUATION


def _value_char(ch: str) -> bool:
    return _word_char(ch) or ch == ":"


class _Lexer:
    def __init__(self, query: str) -> None:
        self.q = query
        self.i = 0

    def tokens(self) -> list[_Token]:
        q, out = self.q, []
        while True:
            while self.i < len(q) and q[self.i].isspace():
                self.i += 1
            if self.i >= len(q):
                out.append(_Token("EOF", "", len(q)))
                return out
            start, ch = self.i, q[self.i]
            if ch in "()":
                self.i += 1
                out.append(_Token("LPAREN" if ch == "(" else "RPAREN", ch, start))
            elif ch == '"':
                value, prefix = self._quoted()
                if not value:
                    raise _fail(q, start, f"empty quotes at position {start}")
                out.append(_Token("TERM", q[start:self.i], start, Term(None, value, ":", prefix, start)))
            elif ch == "-":
                nxt = q[start + 1] if start + 1 < len(q) else ""
                if not nxt or not (nxt in '("' or _word_char(nxt)) or nxt == "-":
                    raise _fail(q, start, f"nothing follows '-' at position {start}")
                self.i += 1
                out.append(_Token("MINUS", "-", start))
            elif _word_char(ch):
                out.append(self._word())
            elif ch in ":<>":
                raise _fail(q, start, f"missing field name before '{ch}' at position {start}")
            else:
                raise _fail(q, start, f"unexpected character {ch!r} at position {start}")

    def _quoted(self) -> tuple[str, bool]:
        """A double-quoted string (``\\"`` and ``\\\\`` escape) and whether ``*`` follows it."""
        q, start = self.q, self.i
        chars: list[str] = []
        i = start + 1
        while i < len(q):
            ch = q[i]
            if ch == "\\" and i + 1 < len(q) and q[i + 1] in '"\\':
                chars.append(q[i + 1])
                i += 2
            elif ch == '"':
                self.i = i + 1
                prefix = self.i < len(q) and q[self.i] == "*"
                self.i += prefix
                return "".join(chars), prefix
            else:
                chars.append(ch)
                i += 1
        raise _fail(q, start, f"unclosed '\"' at position {start}")

    def _star(self, value: str, at: int) -> tuple[str, bool]:
        """Strip a trailing ``*`` (prefix); a ``*`` anywhere else is an error."""
        star = value.find("*")
        if 0 <= star < len(value) - 1:
            raise _fail(self.q, at + star, f"'*' is only allowed at the end of a term, at position "
                                           f"{at + star}")
        return (value[:-1], True) if value.endswith("*") else (value, False)

    def _word(self) -> _Token:
        q, start = self.q, self.i
        while self.i < len(q) and _word_char(q[self.i]):
            self.i += 1
        word = q[start:self.i]
        if self.i < len(q) and q[self.i] in ":<>":
            return self._field_term(word, start)
        if word in ("AND", "OR", "NOT"):
            return _Token(word, word, start)
        value, prefix = self._star(word, start)
        if not value:
            raise _fail(q, start, f"'*' needs some text before it, at position {start}")
        return _Token("TERM", word, start, Term(None, value, ":", prefix, start))

    def _field_term(self, name: str, start: int) -> _Token:
        q = self.q
        if not valid_field_name(name):
            raise _fail(q, start, f"invalid field name {name!r} at position {start}")
        if resolve_field(name) is None:
            raise _fail(q, start, f"unknown field {name!r} at position {start}; use {FIELD_HINT} "
                                  "(quote text that contains ':')")
        op = q[self.i]
        self.i += 1
        if op in "<>" and self.i < len(q) and q[self.i] == "=":
            op += "="
            self.i += 1
        at = self.i
        if at < len(q) and q[at] == '"':
            value, prefix = self._quoted()
        elif at < len(q) and _value_char(q[at]):
            while self.i < len(q) and _value_char(q[self.i]):
                self.i += 1
            value, prefix = self._star(q[at:self.i], at)
        else:
            raise _fail(q, at, f"missing value after '{name}{op}' at position {at}")
        if prefix and op != ":":
            raise _fail(q, at, f"a prefix '*' cannot follow '{op}', at position {at}")
        return _Token("TERM", q[start:self.i], start, Term(name, value, op, prefix, start))


# --- parser -------------------------------------------------------------------------------------
_STARTS = ("TERM", "LPAREN", "NOT", "MINUS")


class _Parser:
    def __init__(self, query: str) -> None:
        self.q = query
        self.toks = _Lexer(query).tokens()
        self.i = 0

    def peek(self) -> _Token:
        return self.toks[self.i]

    def take(self) -> _Token:
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def parse(self) -> Node | None:
        if self.peek().kind == "EOF":
            return None
        node = self.or_()
        tok = self.peek()
        if tok.kind != "EOF":  # only a ')' without its '(' stops the descent early
            raise self.unexpected(tok)
        return node

    def unexpected(self, tok: _Token) -> LiveMLError:
        if tok.kind == "EOF":
            return _fail(self.q, tok.pos, f"unexpected end of query at position {tok.pos}")
        return _fail(self.q, tok.pos, f"unexpected '{tok.text}' at position {tok.pos}")

    def operand(self, op: _Token) -> None:
        """An operator must be followed by something it can apply to."""
        nxt = self.peek()
        if nxt.kind == "EOF":
            raise _fail(self.q, op.pos, f"nothing follows '{op.text}' at position {op.pos}")
        if nxt.kind not in _STARTS:
            raise self.unexpected(nxt)

    def or_(self) -> Node:
        nodes = [self.and_()]
        while self.peek().kind == "OR":
            self.operand(self.take())
            nodes.append(self.and_())
        return nodes[0] if len(nodes) == 1 else Or(tuple(nodes))

    def and_(self) -> Node:
        nodes = [self.unary()]
        while True:
            kind = self.peek().kind
            if kind == "AND":
                self.operand(self.take())
            elif kind not in _STARTS:
                break
            nodes.append(self.unary())
        return nodes[0] if len(nodes) == 1 else And(tuple(nodes))

    def unary(self) -> Node:
        if self.peek().kind in ("NOT", "MINUS"):
            self.operand(self.take())
            return Not(self.unary())
        return self.primary()

    def primary(self) -> Node:
        tok = self.take()
        if tok.kind == "TERM":
            assert tok.term is not None
            return tok.term
        if tok.kind == "LPAREN":
            if self.peek().kind == "RPAREN":
                raise _fail(self.q, tok.pos, f"empty parentheses at position {tok.pos}")
            node = self.or_()
            if self.peek().kind != "RPAREN":
                raise _fail(self.q, tok.pos, f"unclosed '(' at position {tok.pos}")
            self.take()
            return node
        raise self.unexpected(tok)


def parse(query: str) -> Node | None:
    """The syntax tree of ``query``; None for an empty query (everything matches)."""
    return _Parser(query or "").parse()


def has_fulltext(node: Node | None) -> bool:
    """Whether the tree has a full-text term (to bound the FTS lookups by a rowid range)."""
    if node is None:
        return False
    if isinstance(node, Term):
        return node.field is None or node.field == "message"
    if isinstance(node, Not):
        return has_fulltext(node.operand)
    return any(has_fulltext(n) for n in node.operands)


# --- SQL ----------------------------------------------------------------------------------------
def _number(text: str) -> int | float | None:
    try:
        return int(text)
    except ValueError:
        pass
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


class _Compiler:
    def __init__(self, query: str, fts: bool, rowid_range: tuple[int, int] | None) -> None:
        self.query = query
        self.fts = fts
        self.rowid_range = rowid_range
        self.params: list[Any] = []

    def fail(self, term: Term, message: str) -> LiveMLError:
        return _fail(self.query, term.position, f"{message} at position {term.position}")

    def bind(self, *values: Any) -> str:
        self.params.extend(values)
        return ", ".join("?" * len(values))

    def node(self, node: Node) -> str:
        if isinstance(node, Term):
            return self.term(node)
        if isinstance(node, Not):
            return f"NOT coalesce({self.node(node.operand)}, 0)"  # a missing value is no match
        joiner = " AND " if isinstance(node, And) else " OR "
        # full-text words side by side become one FTS lookup: "a" AND "b"
        words = [n for n in node.operands if self.fts_match(n) is not None]
        parts, rest = [], list(node.operands)
        if len(words) >= 2:  # placeholders and parameters stay in the same order
            parts.append(self.fts_lookup(joiner.join(str(self.fts_match(n)) for n in words)))
            rest = [n for n in rest if all(n is not w for w in words)]
        parts += [self.node(n) for n in rest]
        return "(" + joiner.join(parts) + ")"

    def term(self, t: Term) -> str:
        if t.field is None:
            return self.fulltext(t)
        ref = resolve_field(t.field)
        assert ref is not None  # the lexer checked
        if ref.json_path is not None:
            return self.json(t, ref.json_path)
        col = ref.column
        if col == "message":
            if t.op != ":":
                raise self.fail(t, "message supports only ':' (full text)")
            return self.fulltext(t) if t.value or not t.prefix else "message IS NOT NULL"
        if col == "time":
            return self.time(t)
        if col == "level" and t.op != ":":
            return self.level_compare(t)
        if col == "deployment_rid":
            if t.op != ":":
                raise self.fail(t, "deployment_rid supports only ':'")
            return f"dep IN (SELECT id FROM {DEPLOYMENT_TABLE} WHERE {self.text('rid', t)})"
        return self.text(str(col), t)

    def text(self, col: str, t: Term) -> str:
        nocase = " COLLATE NOCASE" if col == "level" else ""
        if t.op != ":":
            return f"{col} {t.op} {self.bind(t.value)}"
        if t.prefix:
            if not t.value:
                return f"{col} IS NOT NULL"
            return f"substr({col}, 1, {self.bind(len(t.value))}) = {self.bind(t.value)}{nocase}"
        return f"{col} = {self.bind(t.value)}{nocase}"

    def level_compare(self, t: Term) -> str:
        severity = LEVELS.get(t.value.upper())
        if severity is None:
            raise self.fail(t, f"unknown level {t.value!r} (use one of {', '.join(LEVELS)})")
        ops = {">": severity.__lt__, ">=": severity.__le__, "<": severity.__gt__, "<=": severity.__ge__}
        names = [name for name, value in LEVELS.items() if ops[t.op](value)]
        if not names:
            return "0"
        return f"level COLLATE NOCASE IN ({self.bind(*names)})"

    def time(self, t: Term) -> str:
        if t.op == ":":
            raise self.fail(t, "time supports only comparisons such as time>=2026-11-26T10:00:00Z")
        try:
            when = dt.datetime.fromisoformat(t.value.replace("Z", "+00:00"))
        except ValueError:
            raise self.fail(t, f"{t.value!r} is not an ISO 8601 time") from None
        when = when if when.tzinfo else when.replace(tzinfo=dt.UTC)
        return f"time {t.op} {self.bind(when.timestamp())}"

    def json(self, t: Term, path: str) -> str:
        # placeholders are bound in the order the f-strings evaluate, which is their SQL order
        def value() -> str:
            return f"json_extract(extra, {self.bind(path)})"

        def kind() -> str:
            return f"json_type(extra, {self.bind(path)})"

        number = _number(t.value)
        if t.op != ":":
            if number is not None:
                return f"({kind()} IN ('integer', 'real') AND {value()} {t.op} {self.bind(number)})"
            return f"({kind()} = 'text' AND {value()} {t.op} {self.bind(t.value)})"
        if t.prefix:
            if not t.value:
                return f"{kind()} IS NOT NULL"
            return f"substr({value()}, 1, {self.bind(len(t.value))}) = {self.bind(t.value)}"
        options = [f"{value()} = {self.bind(t.value)}"]
        if number is not None:
            options.append(f"{value()} = {self.bind(number)}")
        if t.value in ("true", "false", "null"):
            options.append(f"{kind()} = {self.bind(t.value)}")
        return options[0] if len(options) == 1 else "(" + " OR ".join(options) + ")"

    def fts_match(self, node: Node) -> str | None:
        """The FTS5 expression of a full-text term, if FTS can answer it."""
        if not (self.fts and isinstance(node, Term) and node.op == ":" and node.value
                and node.field in (None, "message") and any(ch.isalnum() for ch in node.value)):
            return None
        return '"' + node.value.replace('"', '""') + '"' + (" *" if node.prefix else "")

    def fts_lookup(self, match: str) -> str:
        sql = f"id IN (SELECT rowid FROM {FTS_TABLE} WHERE {FTS_TABLE} MATCH {self.bind(match)}"
        if self.rowid_range is not None:
            low, high = self.rowid_range
            sql += f" AND rowid BETWEEN {self.bind(low)} AND {self.bind(high)}"
        return sql + ")"

    def fulltext(self, t: Term) -> str:
        match = self.fts_match(t)
        if match is not None:
            return self.fts_lookup(match)
        return f"message LIKE {self.bind('%' + _like_escape(t.value) + '%')} ESCAPE '\\'"


def to_sql(node: Node | None, query: str = "", *, fts: bool = True,
           rowid_range: tuple[int, int] | None = None) -> tuple[str, list[Any]]:
    """A WHERE condition over the ``logs`` table and its parameters (``"1"`` for no query).

    ``fts`` false matches free text with LIKE. ``rowid_range`` bounds each FTS lookup to the rows
    that can match anyway (the deployment's rows in the time window), to keep it small.
    """
    if node is None:
        return "1", []
    compiler = _Compiler(query, fts, rowid_range)
    return compiler.node(node), compiler.params


def compile_query(query: str, *, fts: bool = True) -> tuple[str, list[Any]]:
    """Parse and compile in one go (raises :data:`InvalidLogQuery`)."""
    return to_sql(parse(query), query, fts=fts)
