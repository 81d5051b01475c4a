"""Filters (core.filters trees) to SQL, and keyset pagination with opaque next/prev cursors."""

from __future__ import annotations

import base64
import json
import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar, cast

from sqlalchemy import ColumnElement, Select, and_, false, func, not_, or_, true
from sqlalchemy.sql.elements import KeyedColumnElement

from controlplane.core.errors import BadRequest, Code
from controlplane.core.filters import And, Node, Not, Or, PageQuery

Row = TypeVar("Row")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _like_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def to_sql(node: Node, columns: Mapping[str, KeyedColumnElement[Any]]) -> ColumnElement[bool]:
    return cast(ColumnElement[bool], _to_sql(node, columns))


def _to_sql(node: Node, columns: Mapping[str, KeyedColumnElement[Any]]) -> Any:
    if isinstance(node, And):
        return and_(*(to_sql(n, columns) for n in node.items))
    if isinstance(node, Or):
        return or_(*(to_sql(n, columns) for n in node.items))
    if isinstance(node, Not):
        # a comparison with NULL is NULL and NOT NULL is NULL too; coalesce so "not" is the complement
        return not_(func.coalesce(to_sql(node.item, columns), false()))
    col = columns[node.attr]
    value = node.value
    if isinstance(value, str) and _py_type(col) is datetime:
        value = _parse_dt(value)
    op = node.op
    _check_type(node.attr, op, _py_type(col), value)
    if op == "pr":
        return col.is_not(None)
    if value is None:
        return col.is_(None) if op == "eq" else col.is_not(None) if op == "ne" else false()
    if op in ("co", "sw", "ew"):
        text = _like_escape(str(value))
        pattern = {"co": f"%{text}%", "sw": f"{text}%", "ew": f"%{text}"}[op]
        return func.lower(col).like(pattern.lower(), escape="\\")
    if op == "ne":
        return or_(col != value, col.is_(None))
    compare = _COMPARE.get(op)
    if compare is not None:
        return compare(col, value)
    return true()  # pragma: no cover - parser admits no other ops


_COMPARE: dict[str, Callable[[Any, Any], Any]] = {
    "eq": operator.eq,
    "gt": operator.gt,
    "ge": operator.ge,
    "lt": operator.lt,
    "le": operator.le,
}

# what a column of each Python type may be compared with; anything else is a database error on PostgreSQL
_COMPARABLE: dict[type, tuple[type, ...]] = {str: (str,), int: (int, float), float: (int, float), datetime: (datetime,)}


def _check_type(attr: str, op: str, py: type | None, value: Any) -> None:
    if op in ("co", "sw", "ew"):
        fits = py is str
    elif py is bool:  # flags (billable): eq/ne true or false only
        fits = op in ("eq", "ne", "pr") and (op == "pr" or isinstance(value, bool))
    elif op == "pr" or value is None or py not in _COMPARABLE:
        fits = True
    else:
        fits = isinstance(value, _COMPARABLE[py]) and not isinstance(value, bool)
    if not fits:
        raise BadRequest(f"{attr!r} cannot be compared with {value!r} using {op!r}", code=Code.INVALID_FILTER)


def _py_type(col: KeyedColumnElement[Any]) -> type | None:
    """The column's Python type, looking through a TypeDecorator (UTCDateTime) to the type it wraps."""
    try:
        return cast(type, getattr(col.type, "impl_instance", col.type).python_type)
    except NotImplementedError:
        return None


def _parse_dt(value: str) -> datetime:
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise BadRequest(f"not a date/time: {value!r}", code=Code.INVALID_FILTER) from None
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Cursor:
    value: Any
    id: str
    direction: str  # "next" | "prev"

    def encode(self) -> str:
        v = self.value.isoformat() if isinstance(self.value, datetime) else self.value
        raw = json.dumps({"v": v, "i": self.id, "d": self.direction, "t": isinstance(self.value, datetime)})
        return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> Cursor:
        try:
            doc = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
            value = _parse_dt(doc["v"]) if doc.get("t") else doc["v"]
            if doc["d"] not in ("next", "prev") or not isinstance(value, str | int | float | datetime | None):
                raise ValueError
            if not isinstance(doc["i"], str | int):
                raise ValueError
            return cls(value, str(doc["i"]), doc["d"])
        # AttributeError: JSON that is not an object, or "t" on a non-string; RecursionError: "[[[[…" JSON
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError, BadRequest):
            raise BadRequest("the page cursor is not valid", code=Code.INVALID_CURSOR) from None


@dataclass(frozen=True)
class PageResult:
    rows: list[Any]
    next: Cursor | None
    prev: Cursor | None


def _sentinel(col: KeyedColumnElement[Any]) -> Any:
    py = _py_type(col) or str
    if py is datetime:
        return EPOCH
    if py in (int, float):
        return -1
    return ""


def sort_key(col: KeyedColumnElement[Any]) -> ColumnElement[Any]:
    return func.coalesce(col, _sentinel(col)) if col.nullable else col


@dataclass(frozen=True)
class Listing:
    """A list's columns: what a filter may name, what it may be sorted on, and the tie-breaking id."""

    filters: Mapping[str, KeyedColumnElement[Any]]
    sorts: Mapping[str, KeyedColumnElement[Any]]
    id_col: KeyedColumnElement[Any]

    async def page(self, session: Any, stmt: Select[Any], query: PageQuery) -> PageResult:
        """One page of ``stmt`` narrowed by the query's filter, in its order."""
        if query.where is not None:
            stmt = stmt.where(to_sql(query.where, self.filters))
        sort_col = self.sorts[query.sort]
        return await paginate(session, stmt, sort_col, self.id_col, query)


async def paginate(
    session: Any,
    stmt: Select[Any],
    sort_col: KeyedColumnElement[Any],
    id_col: KeyedColumnElement[Any],
    query: PageQuery,
) -> PageResult:
    """Keyset pagination on (sort column, id); a row's sort value is its attribute of the column's name."""
    descending, limit, cursor = query.descending, query.limit, query.cursor
    cur: Cursor | None = Cursor.decode(cursor) if cursor else None
    key = sort_key(sort_col)
    backwards = cur is not None and cur.direction == "prev"
    forward_desc = descending != backwards
    if cur is not None:
        v = cur.value if cur.value is not None else _sentinel(sort_col)
        if isinstance(v, str) and _py_type(sort_col) is datetime:
            v = _parse_dt(v)
        after = (
            or_(key < v, and_(key == v, id_col < cur.id))
            if forward_desc
            else or_(key > v, and_(key == v, id_col > cur.id))
        )
        stmt = stmt.where(after)
    order = (key.desc(), id_col.desc()) if forward_desc else (key.asc(), id_col.asc())
    rows: Sequence[Any] = (await session.execute(stmt.order_by(*order).limit(limit + 1))).scalars().all()
    more = len(rows) > limit
    page = list(rows[:limit])
    if backwards:
        page.reverse()
    if not page:
        return PageResult([], None, None)
    first, last = page[0], page[-1]

    def mk(row: Any, direction: str) -> Cursor:
        return Cursor(getattr(row, sort_col.key), row.id, direction)

    nxt: Cursor | None
    prev: Cursor | None
    if backwards:
        nxt = mk(last, "next")
        prev = mk(first, "prev") if more else None
    else:
        nxt = mk(last, "next") if more else None
        prev = mk(first, "prev") if cur is not None else None
    return PageResult(page, nxt, prev)
