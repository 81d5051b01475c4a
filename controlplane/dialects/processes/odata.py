"""The OData ``$filter`` subset the processes dialect (seed 001) accepts, parsed by hand (never eval'd).

Grammar (keywords and field names are case-insensitive; strings are single-quoted, ``''`` is a quote)::

    expr    := term ("or" term)*
    term    := factor ("and" factor)*
    factor  := "not" factor | "(" expr ")" | compare | call
    compare := FIELD ("eq" | "ne") STRING
    call    := ("contains" | "startswith" | "endswith") "(" FIELD "," STRING ")"

``and`` binds tighter than ``or``. Comparisons ignore case. The fields are the caller's (here: name, value,
description). Anything else is a ``BadRequest`` (400, code ``INVALID_FILTER``) saying what was expected where.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from controlplane.core.errors import BadRequest, Code

Predicate = Callable[[Mapping[str, str]], bool]
FUNCTIONS = ("contains", "startswith", "endswith")
MAX_LENGTH = 2000
MAX_DEPTH = 32
TOKEN = re.compile(
    r"\s*(?:(?P<str>'(?:[^']|'')*')|(?P<open>\()|(?P<close>\))|(?P<comma>,)|(?P<word>[A-Za-z_][A-Za-z0-9_-]*)|(?P<bad>\S))"
)


@dataclass(frozen=True)
class Token:
    kind: str  # str, open, close, comma, word, end
    text: str
    pos: int


def tokenize(text: str) -> list[Token]:
    out: list[Token] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = TOKEN.match(text, pos)
        if m is None or m.lastgroup is None:
            raise _error(f"cannot read position {pos + 1}")
        kind = m.lastgroup
        start = m.start(kind)
        if kind == "bad" and m.group(kind) == "'":
            raise _error(f"unterminated string at position {start + 1}")
        if kind == "bad":
            raise _error(f"unexpected character {m.group(kind)!r} at position {start + 1}")
        value = m.group(kind)
        if kind == "str":
            value = value[1:-1].replace("''", "'")
        out.append(Token(kind, value, start))
        pos = m.end()
    out.append(Token("end", "", len(text)))
    return out


def _error(detail: str) -> BadRequest:
    return BadRequest(f"$filter: {detail}", code=Code.INVALID_FILTER)


class _Parser:
    def __init__(self, tokens: list[Token], fields: frozenset[str]) -> None:
        self.tokens = tokens
        self.i = 0
        self.fields = fields
        self.depth = 0

    def peek(self) -> Token:
        return self.tokens[self.i]

    def take(self) -> Token:
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def keyword(self, word: str) -> bool:
        tok = self.peek()
        if tok.kind == "word" and tok.text.lower() == word:
            self.i += 1
            return True
        return False

    def expect(self, kind: str, what: str) -> Token:
        tok = self.take()
        if tok.kind != kind:
            found = "the end" if tok.kind == "end" else repr(tok.text)
            raise _error(f"expected {what} at position {tok.pos + 1}, found {found}")
        return tok

    def field(self) -> str:
        tok = self.expect("word", f"a field ({', '.join(sorted(self.fields))})")
        name = tok.text.lower()
        if name not in self.fields:
            raise _error(
                f"unknown field {tok.text!r} at position {tok.pos + 1} (known: {', '.join(sorted(self.fields))})"
            )
        return name

    def expr(self) -> Predicate:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise _error("too deeply nested")
        parts = [self.term()]
        while self.keyword("or"):
            parts.append(self.term())
        self.depth -= 1
        return parts[0] if len(parts) == 1 else (lambda row: any(p(row) for p in parts))

    def term(self) -> Predicate:
        parts = [self.factor()]
        while self.keyword("and"):
            parts.append(self.factor())
        return parts[0] if len(parts) == 1 else (lambda row: all(p(row) for p in parts))

    def factor(self) -> Predicate:
        if self.keyword("not"):
            inner = self.factor()
            return lambda row: not inner(row)
        tok = self.peek()
        if tok.kind == "open":
            self.take()
            inner = self.expr()
            self.expect("close", "')'")
            return inner
        if tok.kind == "word" and tok.text.lower() in FUNCTIONS and self.tokens[self.i + 1].kind == "open":
            func = self.take().text.lower()
            self.take()
            name = self.field()
            self.expect("comma", "','")
            needle = self.expect("str", "a quoted string").text.lower()
            self.expect("close", "')'")
            if func == "contains":
                return lambda row: needle in row.get(name, "").lower()
            if func == "startswith":
                return lambda row: row.get(name, "").lower().startswith(needle)
            return lambda row: row.get(name, "").lower().endswith(needle)
        name = self.field()
        op = self.expect("word", "'eq' or 'ne'").text.lower()
        if op not in ("eq", "ne"):
            raise _error(f"unsupported operator {op!r} (eq, ne, contains(), startswith(), endswith())")
        value = self.expect("str", "a quoted string").text.lower()
        if op == "eq":
            return lambda row: row.get(name, "").lower() == value
        return lambda row: row.get(name, "").lower() != value


def parse(text: str | None, fields: set[str] | frozenset[str]) -> Predicate:
    """A predicate over rows {field: text}; every row passes when ``text`` is empty."""
    if text is None or not text.strip():
        return lambda row: True
    if len(text) > MAX_LENGTH:
        raise _error(f"longer than {MAX_LENGTH} characters")
    parser = _Parser(tokenize(text), frozenset(f.lower() for f in fields))
    predicate = parser.expr()
    tok = parser.peek()
    if tok.kind != "end":
        raise _error(f"unexpected {tok.text!r} at position {tok.pos + 1} (expected 'and', 'or' or the end)")
    return predicate
