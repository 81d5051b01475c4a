"""The SCIM-style filter parser and the sort parameter: what parses to what, and what is refused (always 400)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controlplane.core.errors import BadRequest
from controlplane.core.filters import MAX_DEPTH, OPS, And, Cond, Not, Or, parse_filter, parse_sort

ALLOWED = frozenset({"name", "status", "exitCode", "startTime", "runMode", "a", "b", "c", "d"})


def p(text: str) -> object:
    return parse_filter(text, ALLOWED)


def bad(text: str) -> BadRequest:
    with pytest.raises(BadRequest) as info:
        p(text)
    assert info.value.code == "INVALID_FILTER"
    return info.value


# --- empty ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", [None, "", "   ", "\t\n"])
def test_no_filter_is_none(text: str | None) -> None:
    assert parse_filter(text, ALLOWED) is None


# --- precedence and grouping -------------------------------------------------------------------------


def test_single_condition() -> None:
    assert p('name eq "x"') == Cond("name", "eq", "x")


def test_and_binds_tighter_than_or() -> None:
    assert p("a eq 1 or b eq 2 and c eq 3") == Or((Cond("a", "eq", 1), And((Cond("b", "eq", 2), Cond("c", "eq", 3)))))
    assert p("a eq 1 and b eq 2 or c eq 3") == Or((And((Cond("a", "eq", 1), Cond("b", "eq", 2))), Cond("c", "eq", 3)))


def test_chains_are_flat() -> None:
    assert p("a pr and b pr and c pr") == And((Cond("a", "pr"), Cond("b", "pr"), Cond("c", "pr")))
    assert p("a pr or b pr or c pr") == Or((Cond("a", "pr"), Cond("b", "pr"), Cond("c", "pr")))


def test_parentheses_override_precedence() -> None:
    assert p("(a eq 1 or b eq 2) and c eq 3") == And((Or((Cond("a", "eq", 1), Cond("b", "eq", 2))), Cond("c", "eq", 3)))
    assert p("((a pr))") == Cond("a", "pr")
    assert p("a pr and (b pr or (c pr and d pr))") == And(
        (Cond("a", "pr"), Or((Cond("b", "pr"), And((Cond("c", "pr"), Cond("d", "pr"))))))
    )


def test_not_applies_to_the_next_factor_only() -> None:
    assert p("not a pr and b pr") == And((Not(Cond("a", "pr")), Cond("b", "pr")))
    assert p("not (a pr and b pr)") == Not(And((Cond("a", "pr"), Cond("b", "pr"))))
    assert p("not not a pr") == Not(Not(Cond("a", "pr")))


def test_keywords_and_operators_are_case_insensitive() -> None:
    assert p('a EQ "x" AND NOT b Pr OR c pR') == Or(
        (And((Cond("a", "eq", "x"), Not(Cond("b", "pr")))), Cond("c", "pr"))
    )


def test_whitespace_is_optional_around_parentheses_and_strings() -> None:
    assert p('(a eq"x")and(b eq 2)') == And((Cond("a", "eq", "x"), Cond("b", "eq", 2)))
    assert p('  \n a eq "x"\t ') == Cond("a", "eq", "x")


# --- values ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("literal", "value"),
    [
        ('"plain"', "plain"),
        ('""', ""),
        ('"with spaces and (parens) and and/or"', "with spaces and (parens) and and/or"),
        (r'"say \"hi\""', 'say "hi"'),
        (r'"back\\slash"', "back\\slash"),
        (r'"\\"', "\\"),
        (r'"a\\\"b"', 'a\\"b'),
        ('"ünïcødé ✓"', "ünïcødé ✓"),
        ('"true"', "true"),
        ('"null"', "null"),
        ('"42"', "42"),
        ("0", 0),
        ("42", 42),
        ("-7", -7),
        ("3.25", 3.25),
        ("-0.5", -0.5),
        ("true", True),
        ("false", False),
        ("TRUE", True),
        ("False", False),
        ("null", None),
        ("NULL", None),
    ],
)
def test_values(literal: str, value: object) -> None:
    node = p(f"a eq {literal}")
    assert isinstance(node, Cond)
    assert node.value == value
    assert type(node.value) is type(value)


@pytest.mark.parametrize("literal", ["1.", "1.2.3", "1e5", "12abc", "0x10", ".5", "--1", "'single'", '"open', r'"x\"'])
def test_malformed_values_are_refused(literal: str) -> None:
    bad(f"a eq {literal}")


# --- operators ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("op", sorted(OPS - {"pr"}))
def test_every_binary_operator(op: str) -> None:
    assert p(f'name {op} "v"') == Cond("name", op, "v")
    assert p(f"exitCode {op.upper()} 3") == Cond("exitCode", op, 3)


def test_present_operator_takes_no_value() -> None:
    assert p("name pr") == Cond("name", "pr", None)
    bad('name pr "x"')


def test_operator_set_is_the_scim_set() -> None:
    assert frozenset({"eq", "ne", "co", "sw", "ew", "gt", "ge", "lt", "le", "pr"}) == OPS


@pytest.mark.parametrize("op", sorted(OPS - {"pr"}))
def test_binary_operator_without_value_is_refused(op: str) -> None:
    bad(f"name {op}")
    bad(f"name {op} and b pr")


@pytest.mark.parametrize("text", ['name is "x"', 'name == "x"', 'name = "x"', "name", 'name "x"', 'name like "x"'])
def test_unknown_or_missing_operator_is_refused(text: str) -> None:
    bad(text)


# --- attributes --------------------------------------------------------------------------------------


def test_unknown_attribute_names_the_allowed_ones() -> None:
    err = bad('owner eq "x"')
    assert "owner" in str(err)
    for name in ALLOWED:
        assert name in str(err)
    # sorted, comma separated
    assert ", ".join(sorted(ALLOWED)) in str(err)


def test_attributes_are_case_sensitive() -> None:
    assert p("exitCode eq 0") == Cond("exitCode", "eq", 0)
    bad("exitcode eq 0")
    bad("EXITCODE eq 0")


def test_unknown_attribute_inside_a_larger_expression() -> None:
    err = bad('name eq "x" and (status eq "failed" or secret pr)')
    assert "secret" in str(err)


def test_dotted_and_dashed_attribute_names_are_single_words() -> None:
    parsed = parse_filter('meta.owner-id eq "x"', {"meta.owner-id"})
    assert parsed == Cond("meta.owner-id", "eq", "x")


def test_keywords_cannot_be_attributes() -> None:
    for word in ("and", "or", "not", "eq", "pr", "true", "null"):
        bad(f'{word} eq "x"')


# --- garbage -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "and",
        "or a pr",
        "a pr and",
        "a pr or",
        "a pr and or b pr",
        "not",
        "not not",
        "()",
        "(",
        ")",
        "(a pr",
        "a pr)",
        "((a pr)",
        "a pr b pr",
        'a eq "x" "y"',
        "a eq 1 2",
        '"x" eq a',
        "42",
        "a eq ;",
        "a eq 1; DROP TABLE runs",
        "a eq {}",
        "a eq [1]",
        "a eq $x",
        "1 = 1",
        "__import__('os')",
        "a eq \x00",
        "a\x00 pr",
        "😀 pr",
        "a eq 😀",
    ],
)
def test_garbage_is_a_bad_request(text: str) -> None:
    bad(text)


def test_error_message_shows_where_parsing_stopped() -> None:
    err = bad("a pr and b pr and §§§ trailing")
    assert "§§§" in str(err)


def test_overlong_input_is_refused() -> None:
    long_ok = " or ".join(["a pr"] * 500)  # 4,096 characters or fewer
    assert len(long_ok) <= 4096
    assert isinstance(p(long_ok), Or)
    too_long = " or ".join(["a pr"] * 600)
    assert len(too_long) > 4096
    err = bad(too_long)
    assert "too long" in str(err)
    bad('a eq "' + "x" * 5000 + '"')


def test_length_limit_is_4096_characters() -> None:
    text = 'a eq "' + "x" * (4096 - 7) + '"'
    assert len(text) == 4096
    assert p(text) == Cond("a", "eq", "x" * (4096 - 7))
    bad('a eq "' + "x" * (4096 - 6) + '"')


def test_nesting_up_to_the_limit_parses() -> None:
    assert p("(" * MAX_DEPTH + "a pr" + ")" * MAX_DEPTH) == Cond("a", "pr")
    node = p("not " * MAX_DEPTH + "a pr")
    for _ in range(MAX_DEPTH):
        assert isinstance(node, Not)
        node = node.item
    assert node == Cond("a", "pr")


@pytest.mark.parametrize(
    "text",
    [
        "(" * 2000,
        "(" * 1000 + "a pr" + ")" * 1000,
        "not " * 1000 + "a pr",
        "(not " * 400 + "a pr" + ")" * 400,
        "(" * (MAX_DEPTH + 1) + "a pr" + ")" * (MAX_DEPTH + 1),
    ],
)
def test_deep_nesting_is_a_bad_request_not_a_recursion_error(text: str) -> None:
    bad(text)


def test_many_sibling_groups_are_not_nesting() -> None:
    text = " and ".join(["(a pr)"] * (MAX_DEPTH * 3))
    assert isinstance(p(text), And)


# --- property: arbitrary text is either a tree or a BadRequest ---------------------------------------

_alphabet = st.sampled_from([*'()"\\ \t\n-.0123456789_abcnotrdeqpsw', "and", "or", "not", " eq ", " pr", "null"])
_tokenish = st.lists(_alphabet, max_size=60).map("".join)


def _check(text: str) -> None:
    try:
        result = parse_filter(text, ALLOWED)
    except BadRequest as err:
        assert err.code == "INVALID_FILTER"
    else:
        assert result is None or isinstance(result, Cond | And | Or | Not)


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=300))
def test_arbitrary_text_never_raises_anything_but_bad_request(text: str) -> None:
    _check(text)


@settings(max_examples=400, deadline=None)
@given(_tokenish)
def test_token_soup_never_raises_anything_but_bad_request(text: str) -> None:
    _check(text)


@settings(max_examples=50, deadline=None)
@given(st.integers(min_value=0, max_value=3000), st.sampled_from(["(", "not ", "(not ", "( ", "not("]))
def test_any_nesting_depth_is_handled(depth: int, opener: str) -> None:
    _check(opener * depth + "a pr" + ")" * depth)


# --- sort --------------------------------------------------------------------------------------------

SORTABLE = frozenset({"name", "createdAt", "status"})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("name", ("name", False)),
        ("+name", ("name", False)),
        ("-name", ("name", True)),
        ("  -status ", ("status", True)),
        ("createdAt", ("createdAt", False)),
    ],
)
def test_sort_prefixes(text: str, expected: tuple[str, bool]) -> None:
    assert parse_sort(text, SORTABLE, "-createdAt") == expected


@pytest.mark.parametrize("text", [None, ""])
def test_sort_default(text: str | None) -> None:
    assert parse_sort(text, SORTABLE, "-createdAt") == ("createdAt", True)
    assert parse_sort(text, SORTABLE, "name") == ("name", False)


@pytest.mark.parametrize("text", ["owner", "-owner", "+", "-", "Name", "name,status", "-name desc"])
def test_sort_on_unknown_field_names_the_allowed_ones(text: str) -> None:
    with pytest.raises(BadRequest) as info:
        parse_sort(text, SORTABLE, "-createdAt")
    assert info.value.code == "INVALID_SORT"
    assert ", ".join(sorted(SORTABLE)) in str(info.value)
