"""Page cursors and keyset pagination against a real SQLite file; filters to SQL against a Python reference."""

from __future__ import annotations

import base64
import json
import random
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import Float, Integer, String, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from controlplane.core.errors import BadRequest
from controlplane.core.filters import And, Cond, Node, Not, Or, PageQuery, parse_filter
from controlplane.db.tables import UTCDateTime
from controlplane.store.query import EPOCH, Cursor, PageResult, paginate, to_sql

# --- a throwaway table -------------------------------------------------------------------------------


class Base(DeclarativeBase):
    pass


class Item(Base):
    __tablename__ = "items"
    id: Mapped[str] = mapped_column(String(16), primary_key=True)
    name: Mapped[str | None] = mapped_column(String(40), nullable=True)
    score: Mapped[int | None] = mapped_column(Integer, nullable=True)
    ratio: Mapped[float | None] = mapped_column(Float, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    start_time: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


C = Item.__table__.c
COLUMNS = {
    "id": C.id,
    "name": C.name,
    "score": C.score,
    "ratio": C.ratio,
    "createdAt": C.created_at,
    "startTime": C.start_time,
}
ATTR = {
    "id": "id",
    "name": "name",
    "score": "score",
    "ratio": "ratio",
    "createdAt": "created_at",
    "startTime": "start_time",
}
SENTINEL: dict[str, Any] = {"id": "", "name": "", "score": -1, "ratio": -1, "createdAt": EPOCH, "startTime": EPOCH}

BASE = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
# duplicates on purpose; "" and -1 equal the NULL sentinels; LIKE wildcards and a backslash in the data
NAMES = ["alpha", "Alpha", "beta", "beta", "", None, None, "50%off", "a_b", "axb", "back\\slash", "gamma ray", "åsa"]
SCORES = [-1, 0, 1, 5, 5, 5, 42, 7, 100, None, None]
RATIOS = [0.5, 1.0, 2.25, -3.5, 0.5, None]
N_ROWS = 57


def make_rows() -> list[dict[str, Any]]:
    rng = random.Random(20261120)
    ids = rng.sample(range(16**6), N_ROWS)
    rows = []
    for i in ids:
        rows.append(
            {
                "id": f"{i:06x}",
                "name": rng.choice(NAMES),
                "score": rng.choice(SCORES),
                "ratio": rng.choice(RATIOS),
                "created_at": BASE + timedelta(minutes=rng.choice(range(0, 40, 3))),
                "start_time": rng.choice([None, None, BASE - timedelta(hours=rng.randint(0, 5))]),
            }
        )
    return rows


ROWS = make_rows()


@pytest.fixture
async def sessions(tmp_path: Any) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'query.db'}")
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    maker = async_sessionmaker(engine, expire_on_commit=False)
    async with maker() as session, session.begin():
        session.add_all(Item(**row) for row in ROWS)
    yield maker
    await engine.dispose()


def test_the_data_has_duplicates_and_nulls() -> None:
    for attr in ("name", "score", "ratio", "created_at", "start_time"):
        values = [r[attr] for r in ROWS]
        assert len(set(values)) < len(values), attr
    for attr in ("name", "score", "ratio", "start_time"):
        assert any(r[attr] is None for r in ROWS), attr
    assert any(r["name"] == "" for r in ROWS) and any(r["score"] == -1 for r in ROWS)
    assert len({r["id"] for r in ROWS}) == N_ROWS


# --- Cursor ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "plain",
        "",
        'with "quotes" and ünïcødé and \\ and \n',
        0,
        -1,
        2**53,
        0.5,
        None,
        True,
        datetime(2026, 11, 20, 17, 0, tzinfo=UTC),
        datetime(2026, 11, 20, 17, 0, 0, 123456, tzinfo=UTC),
        datetime(2026, 3, 29, 3, 30, tzinfo=timezone(timedelta(hours=2))),
        datetime(1970, 1, 1, tzinfo=UTC),
    ],
)
@pytest.mark.parametrize("direction", ["next", "prev"])
def test_cursor_round_trip(value: Any, direction: str) -> None:
    cursor = Cursor(value, "row-id-1", direction)
    text = cursor.encode()
    assert "=" not in text and "+" not in text and "/" not in text  # safe in a query string as is
    back = Cursor.decode(text)
    assert back == cursor
    assert type(back.value) is type(value)
    if isinstance(value, datetime):
        assert back.value.utcoffset() == value.utcoffset()


def encode_doc(doc: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(doc).encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "text",
    [
        "",
        "garbage",
        "!!!!",
        "ü",
        "%%%",
        base64.urlsafe_b64encode(b"\xff\xfe\x00").decode(),
        base64.urlsafe_b64encode(b"[" * 100_000).decode(),
        encode_doc("a string"),
        encode_doc(5),
        encode_doc(None),
        encode_doc([1, 2]),
        encode_doc({}),
        encode_doc({"v": 1, "i": "x"}),
        encode_doc({"v": 1, "d": "next"}),
        encode_doc({"i": "x", "d": "next"}),
        encode_doc({"v": 1, "i": "x", "d": "sideways"}),
        encode_doc({"v": 1, "i": "x", "d": ["next"]}),
        encode_doc({"v": [1, 2], "i": "x", "d": "next"}),
        encode_doc({"v": {"a": 1}, "i": "x", "d": "next"}),
        encode_doc({"v": 1, "i": None, "d": "next"}),
        encode_doc({"v": 1, "i": {"x": 1}, "d": "next"}),
        encode_doc({"v": 5, "i": "x", "d": "next", "t": True}),
        encode_doc({"v": "not a date", "i": "x", "d": "next", "t": True}),
    ],
)
def test_garbage_cursor_is_a_bad_request(text: str) -> None:
    with pytest.raises(BadRequest) as info:
        Cursor.decode(text)
    assert info.value.code == "INVALID_CURSOR"


def test_tampered_cursor_is_a_bad_request() -> None:
    good = Cursor(datetime(2026, 11, 20, tzinfo=UTC), "abc", "next").encode()
    for i in range(len(good)):
        for replacement in ("A", "_", "-", "z"):
            tampered = good[:i] + replacement + good[i + 1 :]
            try:
                Cursor.decode(tampered)
            except BadRequest as err:
                assert err.code == "INVALID_CURSOR"
    with pytest.raises(BadRequest):
        Cursor.decode(good[: len(good) // 2])


# --- paginate ----------------------------------------------------------------------------------------


def ref_order(sort: str, *, descending: bool, rows: list[dict[str, Any]] | None = None) -> list[str]:
    attr = ATTR[sort]

    def key(row: dict[str, Any]) -> tuple[Any, str]:
        value = row[attr]
        return (SENTINEL[sort] if value is None else value, row["id"])

    ordered = sorted(ROWS if rows is None else rows, key=key)
    return [r["id"] for r in (reversed(ordered) if descending else ordered)]


Pager = Callable[[str | None], Any]


def pager(
    maker: async_sessionmaker[AsyncSession], sort: str, *, descending: bool, limit: int, where: Node | None = None
) -> Callable[[str | None], Any]:
    async def page(cursor: str | None) -> PageResult:
        stmt = select(Item)
        if where is not None:
            stmt = stmt.where(to_sql(where, COLUMNS))
        async with maker() as session:
            return await paginate(session, stmt, COLUMNS[sort], C.id, PageQuery(None, sort, descending, limit, cursor))

    return page


async def walk_forward(page: Pager) -> list[PageResult]:
    pages = [await page(None)]
    while pages[-1].next is not None:
        pages.append(await page(pages[-1].next.encode()))
        assert len(pages) <= N_ROWS + 2, "pagination does not end"
    return pages


def ids(result: PageResult) -> list[str]:
    return [row.id for row in result.rows]


@pytest.mark.parametrize("sort", list(COLUMNS))
@pytest.mark.parametrize("descending", [False, True], ids=["asc", "desc"])
async def test_next_links_visit_every_row_once_in_order(
    sessions: async_sessionmaker[AsyncSession], sort: str, descending: bool
) -> None:
    expected = ref_order(sort, descending=descending)
    for limit in (1, 2, 5, 7, 19, 56, 57, 58, 100):
        pages = await walk_forward(pager(sessions, sort, descending=descending, limit=limit))
        seen = [i for p in pages for i in ids(p)]
        assert seen == expected, (sort, descending, limit)
        assert all(len(ids(p)) == limit for p in pages[:-1])
        assert 1 <= len(ids(pages[-1])) <= limit
        assert pages[0].prev is None
        assert all(p.prev is not None for p in pages[1:])
        assert pages[-1].next is None


@pytest.mark.parametrize("sort", list(COLUMNS))
@pytest.mark.parametrize("descending", [False, True], ids=["asc", "desc"])
async def test_prev_links_from_the_last_page_return_the_same_pages(
    sessions: async_sessionmaker[AsyncSession], sort: str, descending: bool
) -> None:
    for limit in (1, 4, 7, 19, 56):
        page = pager(sessions, sort, descending=descending, limit=limit)
        forward = await walk_forward(page)
        backward = [forward[-1]]
        while backward[-1].prev is not None:
            backward.append(await page(backward[-1].prev.encode()))
            assert len(backward) <= len(forward), "prev links go past the first page"
        assert [ids(p) for p in reversed(backward)] == [ids(p) for p in forward], (sort, descending, limit)
        # a page reached backwards links forward to the page after it
        for earlier, later in zip(backward[1:], backward, strict=False):
            assert earlier.next is not None
            assert ids(await page(earlier.next.encode())) == ids(later)


async def test_back_and_forth_in_the_middle(sessions: async_sessionmaker[AsyncSession]) -> None:
    page = pager(sessions, "score", descending=True, limit=6)
    p1 = await page(None)
    assert p1.next is not None
    p2 = await page(p1.next.encode())
    assert p2.next is not None
    p3 = await page(p2.next.encode())
    assert p3.prev is not None
    back2 = await page(p3.prev.encode())
    assert ids(back2) == ids(p2)
    assert back2.prev is not None
    back1 = await page(back2.prev.encode())
    assert ids(back1) == ids(p1)
    assert back1.prev is None
    assert back1.next is not None
    assert ids(await page(back1.next.encode())) == ids(p2)


async def test_pagination_with_a_filter(sessions: async_sessionmaker[AsyncSession]) -> None:
    where = parse_filter('score ge 5 or name co "a"', set(COLUMNS))
    assert where is not None
    rows = [r for r in ROWS if (r["score"] is not None and r["score"] >= 5) or "a" in (r["name"] or "").lower()]
    assert 5 < len(rows) < N_ROWS
    for sort in ("name", "startTime"):
        pages = await walk_forward(pager(sessions, sort, descending=False, limit=4, where=where))
        assert [i for p in pages for i in ids(p)] == ref_order(sort, descending=False, rows=rows)


async def test_empty_result(sessions: async_sessionmaker[AsyncSession]) -> None:
    where = parse_filter('name eq "nobody"', set(COLUMNS))
    result = await pager(sessions, "name", descending=False, limit=5, where=where)(None)
    assert result == PageResult([], None, None)


async def test_a_bad_cursor_is_refused_before_querying(sessions: async_sessionmaker[AsyncSession]) -> None:
    with pytest.raises(BadRequest):
        await pager(sessions, "name", descending=False, limit=5)("not-a-cursor")


# --- to_sql against a Python reference ---------------------------------------------------------------


def _parse_dt(value: str) -> datetime:
    dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def ref_match(node: Node, row: dict[str, Any]) -> bool:
    """Two-valued logic: a condition on a missing (NULL) value is false, except 'ne' and 'eq null'."""
    if isinstance(node, And):
        return all(ref_match(n, row) for n in node.items)
    if isinstance(node, Or):
        return any(ref_match(n, row) for n in node.items)
    if isinstance(node, Not):
        return not ref_match(node.item, row)
    assert isinstance(node, Cond)
    v = row[ATTR[node.attr]]
    value = node.value
    if node.attr in ("createdAt", "startTime") and isinstance(value, str):
        value = _parse_dt(value)
    op = node.op
    if op == "pr":
        return v is not None
    if value is None:
        return (v is None) if op == "eq" else (v is not None) if op == "ne" else False
    if v is None:
        return op == "ne"
    if op in ("co", "sw", "ew"):
        text, needle = str(v).lower(), str(value).lower()
        return {"co": needle in text, "sw": text.startswith(needle), "ew": text.endswith(needle)}[op]
    compare: dict[str, Callable[[Any, Any], bool]] = {
        "eq": lambda a, b: a == b,
        "ne": lambda a, b: a != b,
        "gt": lambda a, b: a > b,
        "ge": lambda a, b: a >= b,
        "lt": lambda a, b: a < b,
        "le": lambda a, b: a <= b,
    }
    return compare[op](v, value)


def literal(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, datetime):
        value = value.isoformat()
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


CMP = ["eq", "ne", "gt", "ge", "lt", "le"]
# per attribute: the operators that make sense for its type, and values to try (from the data and beyond)
CASES: dict[str, tuple[list[str], list[Any]]] = {
    "name": (
        [*CMP, "co", "sw", "ew"],
        [
            "alpha",
            "ALPHA",
            "a",
            "beta",
            "",
            "%",
            "_",
            "50%",
            "a_b",
            "\\",
            "back\\slash",
            "ray",
            "å",
            "zzz",
            "nobody",
            None,
        ],
    ),
    "score": (CMP, [-1, 0, 1, 5, 6, 42, 100, 1000, -50, 2.5, None]),
    "ratio": (CMP, [0.5, 1, 1.0, 2.25, -3.5, 0, None]),
    "createdAt": (
        CMP,
        [
            BASE.isoformat(),
            (BASE + timedelta(minutes=9)).isoformat(),
            "2026-11-20T12:09:00Z",
            "2026-11-20T14:09:00+02:00",  # the same instant as the previous one
            "2026-11-20 12:30:00",  # naive means UTC
            None,
        ],
    ),
    "startTime": (CMP, [(BASE - timedelta(hours=2)).isoformat(), "2026-11-20T10:00:00Z", BASE.isoformat(), None]),
    "id": (["eq", "ne", "gt", "lt", "sw", "co"], [ROWS[0]["id"], ROWS[10]["id"][:2], "8", "zzz", ""]),
}


def conditions() -> list[Cond]:
    out = []
    for attr, (ops, values) in CASES.items():
        out.append(Cond(attr, "pr"))
        out.extend(Cond(attr, op, value) for op in ops for value in values)
    return out


async def matching(maker: async_sessionmaker[AsyncSession], node: Node) -> set[str]:
    async with maker() as session:
        result = await session.execute(select(C.id).where(to_sql(node, COLUMNS)))
        return {row[0] for row in result}


def expected(node: Node) -> set[str]:
    return {r["id"] for r in ROWS if ref_match(node, r)}


async def test_every_operator_matches_the_reference(sessions: async_sessionmaker[AsyncSession]) -> None:
    conds = conditions()
    assert {c.op for c in conds} == {"eq", "ne", "gt", "ge", "lt", "le", "co", "sw", "ew", "pr"}
    nonempty = 0
    for cond in conds:
        want = expected(cond)
        assert await matching(sessions, cond) == want, cond
        # through the parser too: the text form means the same thing
        text = f"{cond.attr} pr" if cond.op == "pr" else f"{cond.attr} {cond.op} {literal(cond.value)}"
        parsed = parse_filter(text, set(COLUMNS))
        assert parsed is not None
        assert await matching(sessions, parsed) == want, text
        nonempty += bool(want) and len(want) < N_ROWS
    assert nonempty > len(conds) // 3  # the cases actually separate rows


async def test_like_wildcards_in_values_are_literal(sessions: async_sessionmaker[AsyncSession]) -> None:
    percent = {r["id"] for r in ROWS if r["name"] == "50%off"}
    underscore = {r["id"] for r in ROWS if r["name"] == "a_b"}
    backslash = {r["id"] for r in ROWS if r["name"] == "back\\slash"}
    assert percent and underscore and backslash
    assert await matching(sessions, Cond("name", "co", "%")) == percent
    assert await matching(sessions, Cond("name", "co", "_")) == underscore  # not "axb"
    assert await matching(sessions, Cond("name", "co", "\\")) == backslash
    assert await matching(sessions, Cond("name", "sw", "a_")) == underscore


async def test_not_is_the_complement_even_for_null_values(sessions: async_sessionmaker[AsyncSession]) -> None:
    every_id = {r["id"] for r in ROWS}
    for cond in conditions():
        inside = await matching(sessions, cond)
        outside = await matching(sessions, Not(cond))
        assert inside | outside == every_id, cond
        assert not inside & outside, cond
    for attr, value in (("name", "beta"), ("score", 5), ("startTime", BASE.isoformat())):
        assert await matching(sessions, Not(Cond(attr, "eq", value))) == await matching(
            sessions, Cond(attr, "ne", value)
        )


async def test_random_trees_match_the_reference(sessions: async_sessionmaker[AsyncSession]) -> None:
    rng = random.Random(57)
    leaves = conditions()

    def tree(depth: int) -> Node:
        roll = rng.random()
        if depth == 0 or roll < 0.35:
            return rng.choice(leaves)
        if roll < 0.5:
            return Not(tree(depth - 1))
        items = tuple(tree(depth - 1) for _ in range(rng.randint(2, 3)))
        return And(items) if roll < 0.75 else Or(items)

    for _ in range(300):
        node = tree(4)
        assert await matching(sessions, node) == expected(node), node


async def test_bad_datetime_in_a_filter_is_a_bad_request(sessions: async_sessionmaker[AsyncSession]) -> None:
    with pytest.raises(BadRequest):
        await matching(sessions, Cond("createdAt", "gt", "yesterday"))


@pytest.mark.parametrize(
    "cond",
    [
        Cond("score", "eq", "5"),  # text against a number: a database error on PostgreSQL
        Cond("score", "gt", "abc"),
        Cond("score", "eq", True),
        Cond("ratio", "lt", "0.5"),
        Cond("name", "eq", 5),
        Cond("name", "gt", 1.5),
        Cond("id", "eq", 7),
        Cond("createdAt", "gt", 5),
        Cond("score", "co", "5"),  # LIKE only on text columns
        Cond("ratio", "sw", "0"),
        Cond("createdAt", "co", "2026-11-20T12:00:00Z"),
    ],
)
def test_type_mismatch_is_a_bad_request(cond: Cond) -> None:
    with pytest.raises(BadRequest) as info:
        to_sql(cond, COLUMNS)
    assert info.value.code == "INVALID_FILTER"
    with pytest.raises(BadRequest):
        to_sql(Not(And((Cond("score", "pr"), cond))), COLUMNS)


@pytest.mark.parametrize(
    "cond",
    [Cond("score", "eq", 2.5), Cond("ratio", "eq", 1), Cond("score", "eq", None), Cond("name", "ne", None)],
)
def test_compatible_types_are_accepted(cond: Cond) -> None:
    to_sql(cond, COLUMNS)
