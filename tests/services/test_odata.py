"""The processes dialect's $filter parser (dialects/processes/odata.py): the OData subset, precedence, 400s."""

from __future__ import annotations

import pytest

from controlplane.core.errors import BadRequest
from controlplane.dialects.processes import odata

FIELDS = {"name", "value", "description"}
ROWS = [
    {"name": "A020-report-demo", "value": "a020-report-demo", "description": "Reports in four formats"},
    {"name": "Jobs", "value": "jobs", "description": "A process called jobs"},
    {"name": "O'Brien import", "value": "o-brien-import", "description": ""},
]


def names(text: str | None) -> list[str]:
    predicate = odata.parse(text, FIELDS)
    return [r["name"] for r in ROWS if predicate(r)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (None, ["A020-report-demo", "Jobs", "O'Brien import"]),
        ("  ", ["A020-report-demo", "Jobs", "O'Brien import"]),
        ("Name eq 'Jobs'", ["Jobs"]),
        ("name eq 'jobs'", ["Jobs"]),  # comparisons ignore case
        ("Value ne 'jobs'", ["A020-report-demo", "O'Brien import"]),
        ("contains(Description,'FORMATS')", ["A020-report-demo"]),
        ("startswith(value,'a0')", ["A020-report-demo"]),
        ("endswith(Name,'import')", ["O'Brien import"]),
        ("name eq 'O''Brien import'", ["O'Brien import"]),  # '' is a quote
        ("name eq 'Jobs' or startswith(name,'A0')", ["A020-report-demo", "Jobs"]),
        ("name eq 'Jobs' or name eq 'A020-report-demo' and description eq ''", ["Jobs"]),  # and binds tighter
        ("(name eq 'Jobs' or name eq 'A020-report-demo') and contains(description,'process')", ["Jobs"]),
        ("not contains(name,'b') and value ne 'x'", ["A020-report-demo"]),
        ("NAME EQ 'Jobs' AND VALUE EQ 'jobs'", ["Jobs"]),
        ("contains(name, 'e') and (value eq 'jobs' or (value eq 'o-brien-import'))", ["O'Brien import"]),
    ],
)
def test_filters(text: str | None, expected: list[str]) -> None:
    assert names(text) == expected


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("name eq", "expected a quoted string"),
        ("name eq 'x", "unterminated string"),
        ("name gt 'x'", "unsupported operator 'gt'"),
        ("owner eq 'x'", "unknown field 'owner'"),
        ("name eq 'x' and", "expected a field"),
        ("(name eq 'x'", "expected ')'"),
        ("name eq 'x')", "unexpected ')'"),
        ("contains(name 'x')", "expected ','"),
        ("name eq 'x' xor name eq 'y'", "unexpected 'xor'"),
        ("name eq 1", "unexpected character '1'"),
        ("name eq 'x'; drop table", "unexpected character ';'"),
        ("__import__('os')", "unknown field '__import__'"),
        ("(" * 40 + "name eq 'x'" + ")" * 40, "too deeply nested"),
        ("name eq '" + "x" * 3000 + "'", "longer than"),
    ],
)
def test_bad_filters_say_what_is_wrong(text: str, says: str) -> None:
    with pytest.raises(BadRequest) as info:
        odata.parse(text, FIELDS)
    assert info.value.code == "INVALID_FILTER" and says in (info.value.detail or ""), info.value.detail
