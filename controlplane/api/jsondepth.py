"""How deeply a JSON body nests, found without parsing it: the parsers recurse, so a body of 100,000 ``[``
would end in RecursionError (a 500) in whichever of them reads it first. The middleware refuses such a body
(400) before any route sees it.

Only brackets outside strings count. The scan is cheap for ordinary bodies: the bytes are reduced to their
brackets and quotes with one ``translate`` call, and only those are walked."""

from __future__ import annotations

import re

MAX_DEPTH = 256  # far beyond any body of ours; the stdlib parser overflows near 1000
_STRINGS = re.compile(rb'"(?:[^"\\]|\\.)*"', re.S)
_KEEP = b"[]{}"
_DROP = bytes(b for b in range(256) if b not in _KEEP)


def too_deep(body: bytes, limit: int = MAX_DEPTH) -> bool:
    """Whether arrays and objects in ``body`` nest more than ``limit`` deep (invalid JSON is not judged)."""
    if body.count(b"[") + body.count(b"{") <= limit:
        return False  # it cannot nest deeper than it has brackets
    return depth(body) > limit


def depth(body: bytes) -> int:
    """The deepest nesting of arrays and objects in ``body``, brackets inside strings aside."""
    brackets = _STRINGS.sub(b"", body).translate(None, _DROP)
    level = deepest = 0
    for b in brackets:
        if b in (0x5B, 0x7B):  # [ {
            level += 1
            deepest = max(deepest, level)
        else:
            level -= 1
    return deepest


def is_json(content_type: str) -> bool:
    """Whether a request's body is parsed as JSON: application/json, a +json type, or none given."""
    kind = content_type.split(";", 1)[0].strip().lower()
    return kind in ("", "application/json") or kind.endswith("+json")
