"""Seed 004's usage API (``GET /automations/usage``) and the per-run API call counter.

The usage filter is the seed's SCIM style, parsed by ``core.filters`` and then narrowed to what the seed
describes: ``name`` (eq, ne, several eq joined by ``or``) picks metrics, ``date`` (eq, ge, gt, le, lt on
``YYYY-MM-DD``) picks days, clauses joined by ``and``. Anything else (another attribute, ``not``, an ``or``
across attributes, a bad date) is a 400 that says what is allowed. Values are the daily aggregates the
engine records from each finished run's measurements (container network counters, run durations).
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from controlplane.core.auth import Permission, Principal
from controlplane.core.errors import BadRequest, Code
from controlplane.core.filters import And, Cond, Node, Or, parse_filter
from controlplane.db.session import transaction
from controlplane.store import usage as store

FILTER_ATTRS = frozenset({"name", "date"})
BREAKDOWNS = frozenset({"automation"})
_DATE_OPS = frozenset({"eq", "ge", "gt", "le", "lt"})


@dataclass(frozen=True)
class UsageFilter:
    names: frozenset[str]  # canonical metric names; empty: all of them
    date_from: str | None
    date_to: str | None


@dataclass(frozen=True)
class UsagePage:
    data: list[dict[str, Any]]
    next_offset: int | None
    prev_offset: int | None


def _bad(detail: str) -> BadRequest:
    return BadRequest(detail, code=Code.INVALID_FILTER)


def _metric(value: Any) -> str:
    name = store.ALIASES.get(str(value), str(value))
    if not isinstance(value, str) or name not in store.METRICS:
        raise _bad(f"unknown usage metric {value!r}; one of {', '.join(store.METRICS)}")
    return name


def _day(value: Any) -> date:
    try:
        if not isinstance(value, str):
            raise ValueError
        return date.fromisoformat(value)
    except ValueError:
        raise _bad(f'date must be compared with a date "YYYY-MM-DD", not {value!r}') from None


def _names_of(node: Node) -> set[str]:
    if isinstance(node, Cond) and node.attr == "name" and node.op == "eq":
        return {_metric(node.value)}
    if isinstance(node, Or) and all(isinstance(i, Cond | Or) for i in node.items):
        return set().union(*(_names_of(i) for i in node.items))
    raise _bad(
        'metrics are chosen with name eq "runs", or several joined by or: (name eq "runs" or name eq "duration")'
    )


def parse_usage_filter(text: str | None) -> UsageFilter:
    """The seed's usage filter as metric names and an inclusive date range; BadRequest when it is not one."""
    if text is None or not text.strip():
        raise BadRequest(
            'filter is required, e.g. name eq "runs" and date ge "2025-08-01" and date le "2025-08-31"',
            code=Code.FILTER_REQUIRED,
        )
    node = parse_filter(text, FILTER_ATTRS)
    assert node is not None
    clauses = node.items if isinstance(node, And) else (node,)
    names: set[str] | None = None
    first: date | None = None
    last: date | None = None
    for clause in clauses:
        if isinstance(clause, Cond) and clause.attr == "date":
            if clause.op not in _DATE_OPS:
                raise _bad(f"date takes eq, ge, gt, le or lt, not {clause.op}")
            day = _day(clause.value)
            low = {"eq": day, "ge": day, "gt": day + timedelta(days=1)}.get(clause.op)
            high = {"eq": day, "le": day, "lt": day - timedelta(days=1)}.get(clause.op)
            first = max(first, low) if first and low else first or low
            last = min(last, high) if last and high else last or high
            continue
        if isinstance(clause, Cond) and clause.attr == "name" and clause.op == "ne":
            chosen = set(store.METRICS) - {_metric(clause.value)}
        else:
            chosen = _names_of(clause)
        names = chosen if names is None else names & chosen
    if names is not None and not names:
        raise _bad("the filter's name clauses exclude every metric")
    return UsageFilter(
        names=frozenset(names or ()),
        date_from=first.isoformat() if first else None,
        date_to=last.isoformat() if last else None,
    )


def encode_offset(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"o": offset}).encode()).decode().rstrip("=")


def decode_offset(cursor: str | None) -> int:
    if not cursor:
        return 0
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        offset = json.loads(raw)["o"]
    except (binascii.Error, ValueError, KeyError, TypeError):
        raise BadRequest("page is not a cursor this API handed out", code=Code.INVALID_CURSOR) from None
    if not isinstance(offset, int) or offset < 0:
        raise BadRequest("page is not a cursor this API handed out", code=Code.INVALID_CURSOR)
    return offset


async def query_usage(
    sessions: async_sessionmaker[AsyncSession],
    principal: Principal,
    *,
    filter_text: str | None,
    breakdown_by: str | None,
    limit: int,
    cursor: str | None,
) -> UsagePage:
    """Seed 004's usage rows for the principal's tenant (admins only), ``limit`` entries from ``cursor``."""
    principal.require(Permission.ADMIN)
    wanted = parse_usage_filter(filter_text)
    if breakdown_by is not None and breakdown_by not in BREAKDOWNS:
        raise BadRequest(f"breakdownBy must be one of {', '.join(sorted(BREAKDOWNS))}", code=Code.INVALID_BREAKDOWN)
    if wanted.date_from and wanted.date_to and wanted.date_from > wanted.date_to:
        return UsagePage([], None, None)
    offset = decode_offset(cursor)
    per_group = len(store.metric_names(wanted.names))
    first_group, skip = divmod(offset, per_group)
    groups = math.ceil((skip + limit) / per_group) + 1  # one more to know whether a next page exists
    async with sessions() as s:
        rows = await store.query(
            s,
            principal.tenant_id,
            names=set(wanted.names),
            date_from=wanted.date_from,
            date_to=wanted.date_to,
            by_automation=breakdown_by == "automation",
            limit=groups,
            offset=first_group,
        )
    page = rows[skip : skip + limit]
    more = len(rows) > skip + limit
    return UsagePage(
        data=page,
        next_offset=offset + limit if more else None,
        prev_offset=max(0, offset - limit) if offset > 0 else None,
    )


async def count_api_call(sessions: async_sessionmaker[AsyncSession], run_id: str) -> None:
    """A request authenticated by a run's own token: one more in that run's metrics.totalApiCalls."""
    async with transaction(sessions) as s:
        await store.add_api_call(s, run_id)
