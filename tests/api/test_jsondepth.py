"""The nesting check that keeps recursive parsers from a body built to overflow them."""

from __future__ import annotations

from controlplane.api.jsondepth import MAX_DEPTH, depth, is_json, too_deep


def test_depth_counts_brackets_outside_strings_only() -> None:
    assert depth(b'{"a": [1, {"b": []}]}') == 4
    assert depth(b'{"text": "[[[[{{{{"}') == 1
    assert depth(b'["escaped \\" [[[", []]') == 2
    assert depth(b"42") == 0


def test_too_deep_is_past_the_limit_only() -> None:
    assert not too_deep(b"[" * MAX_DEPTH + b"]" * MAX_DEPTH)
    assert too_deep(b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1))
    assert too_deep(b"[" * 100_000)  # unclosed still counts
    many = b"[" + b",".join([b"{}"] * 10_000) + b"]"  # wide, not deep
    assert not too_deep(many)
    assert not too_deep(b'["' + b"[" * 10_000 + b'"]')  # brackets inside a string


def test_json_content_types() -> None:
    assert is_json("") and is_json("application/json; charset=utf-8") and is_json("application/merge-patch+json")
    assert not is_json("text/plain") and not is_json("application/octet-stream")
