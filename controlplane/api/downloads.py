"""Content-Disposition for downloads whose names a script chose: any Unicode name survives (RFC 6266 with
RFC 5987's ``filename*``), and nothing in it can spoof what a person reads.

A name may hold characters latin-1 cannot encode (``raport-żółć.csv``), quotes, backslashes, control
characters, or bidirectional controls that reorder what is shown (``\\u202egnp.exe`` reads "exe.png").
``filename*`` carries the name as UTF-8, percent-encoded; ``filename`` is an ASCII stand-in for old
clients. Bidi and other format/control characters are dropped from both."""

from __future__ import annotations

import unicodedata
from urllib.parse import quote

FALLBACK = "download"


def shown_name(name: str) -> str:
    """``name`` without control (Cc) and format (Cf: bidi overrides, zero-width joiners) characters."""
    return "".join(c for c in name if unicodedata.category(c) not in ("Cc", "Cf")).strip() or FALLBACK


def _ascii(name: str) -> str:
    folded = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    kept = "".join(c if c.isprintable() and c not in '"\\' else "_" for c in folded).strip()
    return kept or FALLBACK


def content_disposition(name: str) -> str:
    """``attachment; filename="<ascii>"; filename*=UTF-8''<utf-8, percent-encoded>``."""
    shown = shown_name(name)
    return f"attachment; filename=\"{_ascii(shown)}\"; filename*=UTF-8''{quote(shown, safe='')}"
