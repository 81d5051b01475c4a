"""A SCIM-style filter language (``name eq "x" and runMode ne "manual"``), parsed without eval.

Seed 004 names its list filters and describes the usage filter as SCIM-style; one small recursive-descent
parser serves both. Grammar::

    expr   := term ("or" term)*
    term   := factor ("and" factor)*
    factor := "not"? ( "(" expr ")" | ATTR OP VALUE | ATTR "pr" )
    OP     := eq | ne | co | sw | ew | gt | ge | lt | le
    VALUE  := "string" | number | true | false | null
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from controlplane.core.errors import BadRequest, Code

OPS = frozenset({"eq", "ne", "co", "sw", "ew", "gt", "ge", "lt", "le", "pr"})
MAX_DEPTH = 32  # nested "not"/parentheses; deeper input would exhaust Python's recursion limit
_TOKEN = re.compile(
    r"""\s*(?:(?P<lp>\()|(?P<rp>\))|"(?P<str>(?:[^"\\]|\\.)*)"|(?P<num>-?[0-9]+(?:\.[0-9]+)?)(?![\w.])"""
    r"""|(?P<word>[A-Za-z_][A-Za-z0-9_.\-]*))"""
)


INT64 = 2**63 - 1


def _number(raw: str) -> int | float:
    """A filter's number; an integer no column can hold is a bad filter, not a database error."""
    if "." in raw:
        return float(raw)
    value = int(raw)
    if abs(value) > INT64:
        raise BadRequest(f"{raw} is out of range (at most {INT64})", code=Code.INVALID_FILTER)
    return value


@dataclass(frozen=True)
class Cond:
    attr: str
    op: str
    value: Any = None


@dataclass(frozen=True)
class And:
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Or:
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Not:
    item: Node


Node = Cond | And | Or | Not


class _Parser:
    def __init__(self, text: str, allowed: frozenset[str]) -> None:
        self.tokens = self._lex(text)
        self.pos = 0
        self.depth = 0
        self.allowed = allowed

    @staticmethod
    def _lex(text: str) -> list[tuple[str, Any]]:
        out: list[tuple[str, Any]] = []
        pos = 0
        text = text.strip()
        while pos < len(text):
            m = _TOKEN.match(text, pos)
            if not m or m.end() == pos:
                raise BadRequest(f"cannot parse filter near {text[pos : pos + 20]!r}", code=Code.INVALID_FILTER)
            pos = m.end()
            kind = m.lastgroup or ""
            raw = m.group(kind)
            if kind == "str":
                out.append(("value", re.sub(r"\\(.)", r"\1", raw)))
            elif kind == "num":
                out.append(("value", _number(raw)))
            elif kind == "word":
                low = raw.lower()
                if low in ("true", "false"):
                    out.append(("value", low == "true"))
                elif low == "null":
                    out.append(("value", None))
                elif low in ("and", "or", "not") or low in OPS:
                    out.append((low, low))
                else:
                    out.append(("attr", raw))
            else:
                out.append((kind, raw))
        return out

    def peek(self) -> str | None:
        return self.tokens[self.pos][0] if self.pos < len(self.tokens) else None

    def take(self, kind: str | None = None) -> tuple[str, Any]:
        if self.pos >= len(self.tokens):
            raise BadRequest("filter ends too early", code=Code.INVALID_FILTER)
        tok = self.tokens[self.pos]
        if kind and tok[0] != kind:
            raise BadRequest(f"filter: expected {kind}, found {tok[1]!r}", code=Code.INVALID_FILTER)
        self.pos += 1
        return tok

    def parse(self) -> Node:
        node = self.expr()
        if self.pos != len(self.tokens):
            raise BadRequest(f"filter: unexpected {self.tokens[self.pos][1]!r}", code=Code.INVALID_FILTER)
        return node

    def expr(self) -> Node:
        items = [self.term()]
        while self.peek() == "or":
            self.take()
            items.append(self.term())
        return items[0] if len(items) == 1 else Or(tuple(items))

    def term(self) -> Node:
        items = [self.factor()]
        while self.peek() == "and":
            self.take()
            items.append(self.factor())
        return items[0] if len(items) == 1 else And(tuple(items))

    def factor(self) -> Node:
        if self.peek() in ("not", "lp"):
            self.depth += 1
            if self.depth > MAX_DEPTH:
                raise BadRequest(f"filter nests deeper than {MAX_DEPTH} levels", code=Code.INVALID_FILTER)
            try:
                if self.take()[0] == "not":
                    return Not(self.factor())
                node = self.expr()
                self.take("rp")
                return node
            finally:
                self.depth -= 1
        _, attr = self.take("attr")
        if attr not in self.allowed:
            raise BadRequest(
                f"cannot filter on {attr!r}; allowed: {', '.join(sorted(self.allowed))}", code=Code.INVALID_FILTER
            )
        kind = self.peek()
        if kind not in OPS:
            raise BadRequest(f"filter: expected an operator after {attr!r}", code=Code.INVALID_FILTER)
        self.take()
        if kind == "pr":
            return Cond(attr, "pr")
        _, value = self.take("value")
        return Cond(attr, kind, value)


def parse_filter(text: str | None, allowed: frozenset[str] | set[str]) -> Node | None:
    if text is None or not text.strip():
        return None
    if len(text) > 4096:
        raise BadRequest("filter is too long", code=Code.INVALID_FILTER)
    return _Parser(text, frozenset(allowed)).parse()


def parse_sort(text: str | None, allowed: set[str] | frozenset[str], default: str) -> tuple[str, bool]:
    """'-name' -> ('name', descending=True). Raises BadRequest naming the allowed fields."""
    raw = (text or default).strip()
    desc = raw.startswith("-")
    field = raw.lstrip("+-")
    if field not in allowed:
        raise BadRequest(f"cannot sort on {field!r}; allowed: {', '.join(sorted(allowed))}", code=Code.INVALID_SORT)
    return field, desc


@dataclass(frozen=True)
class ListQuery:
    """What a list request asks for, as the API takes it: filter text, sort (key with +/-), page size, and
    the cursor of links.next / links.prev."""

    filter: str | None = None
    sort: str | None = None
    limit: int = 20
    cursor: str | None = None

    def parse(self, filters: Iterable[str], sorts: Iterable[str], default_sort: str) -> PageQuery:
        """Checked against a list's filter and sort keys (400 INVALID_FILTER / INVALID_SORT otherwise)."""
        field, descending = parse_sort(self.sort, set(sorts), default_sort)
        return PageQuery(parse_filter(self.filter, set(filters)), field, descending, self.limit, self.cursor)


@dataclass(frozen=True)
class PageQuery:
    """A ListQuery parsed: the filter's tree, the sort key and its direction, page size and cursor."""

    where: Node | None
    sort: str
    descending: bool
    limit: int
    cursor: str | None
