"""Masking tenant secrets in everything a run leaves behind and in the server's own log.

A run receives its tenant's secrets as environment variables and may print them (on purpose or in a
traceback). Whatever a script writes passes through a ``Masker`` before it is stored, served or followed
live, and every record of the server's log passes through ``LogRedactor``: each place a secret's value
appears is replaced with ``***``.

What is matched for a secret value ``v`` (its UTF-8 bytes, when at least ``MIN_MASKED_LENGTH`` long):

* ``v`` itself;
* its whole base64 encoding, standard and URL-safe alphabets, with and without ``=`` padding
  (``echo -n $SECRET | base64``, HTTP basic auth of the value alone, ...);
* when those are at least ``MIN_CORE_LENGTH`` characters: the base64 characters that depend only on ``v``
  when ``v`` sits at any of the three byte alignments inside longer encoded data (``echo $SECRET | base64``
  with its newline, ``user:secret`` in a basic-auth header). The one or two characters at each edge mix in
  the neighbouring bytes and cannot be predicted, so they may stay visible; they carry at most 4 bits of
  the secret each.

Where matches overlap or touch, their union becomes one ``***``, so no piece of any secret survives
between two masked ones. Streams are masked incrementally: the last ``longest pattern - 1`` bytes are held
back until the next chunk (or the end) decides them, so a secret split across two writes, two frames or
two flushes is still caught, and the result does not depend on how the stream was chunked.
"""

from __future__ import annotations

import base64
import logging
import threading
from collections.abc import Iterable
from typing import Any

MASK = b"***"
MIN_MASKED_LENGTH = 4  # shorter values would mask ordinary words and numbers everywhere
MIN_CORE_LENGTH = 6  # base64 fragments shorter than this are too common to mask
RUNAWAY_HOLD = 16 * 1024  # a masked region chained longer than this is flushed (see Masker.feed)


def _cores(value: bytes) -> set[bytes]:
    """The base64 characters determined by ``value`` alone, for each of the three byte alignments."""
    out: set[bytes] = set()
    n = len(value)
    for k in range(3):
        encoded = base64.b64encode(b"\0" * k + value + b"\0\0")
        first = -(-8 * k // 6)  # ceil: the first character whose 6 bits all come from value
        last = 8 * (k + n) // 6  # floor: one past the last such character
        core = encoded[first:last]
        if len(core) >= MIN_CORE_LENGTH:
            out.add(core)
            out.add(core.translate(_URLSAFE))
    return out


_URLSAFE = bytes.maketrans(b"+/", b"-_")


def patterns_for(values: Iterable[str]) -> list[bytes]:
    """Byte patterns to mask for these secret values (short values are skipped, see the module doc)."""
    found: set[bytes] = set()
    for value in values:
        raw = value.encode()
        if len(raw) < MIN_MASKED_LENGTH:
            continue
        found.add(raw)
        for enc in (base64.b64encode(raw), base64.urlsafe_b64encode(raw)):
            found.add(enc)
            found.add(enc.rstrip(b"="))
        found |= _cores(raw)
    return sorted(found, key=lambda p: (-len(p), p))


def _intervals(data: bytes, patterns: list[bytes]) -> list[tuple[int, int]]:
    """Every occurrence of every pattern in ``data``, merged where they overlap or touch, in order."""
    spans: list[tuple[int, int]] = []
    for pat in patterns:
        at = data.find(pat)
        while at != -1:
            spans.append((at, at + len(pat)))
            at = data.find(pat, at + 1)
    if not spans:
        return []
    spans.sort()
    merged = [spans[0]]
    for start, end in spans[1:]:
        last_start, last_end = merged[-1]
        if start <= last_end:
            if end > last_end:
                merged[-1] = (last_start, end)
        else:
            merged.append((start, end))
    return merged


def _apply(data: bytes, spans: list[tuple[int, int]]) -> bytes:
    out = bytearray()
    pos = 0
    for start, end in spans:
        out += data[pos:start]
        out += MASK
        pos = end
    out += data[pos:]
    return bytes(out)


def mask_bytes(data: bytes, patterns: list[bytes]) -> bytes:
    """Mask a whole buffer at once (what feeding it in any chunks and finishing returns)."""
    return _apply(data, _intervals(data, patterns)) if patterns else data


class Masker:
    """Masks one stream fed in chunks of any size. ``feed`` returns what is decided; ``finish`` the rest.

    At most ``hold`` bytes (longest pattern - 1) wait for the next chunk, plus a masked region while it may
    still grow (secrets printed back to back); past RUNAWAY_HOLD such a region is emitted as it stands and
    the bytes just before the cut are kept as context, so an occurrence straddling the cut is still masked.
    """

    def __init__(self, patterns: list[bytes]) -> None:
        self.patterns = patterns
        self.hold = max((len(p) for p in patterns), default=1) - 1
        self._buf = b""  # undecided bytes, not emitted yet
        self._ctx = b""  # emitted bytes kept for matching only (after a runaway flush)
        self.held_max = 0  # the most bytes ever held back (tests check the bound)

    def _spans(self, full: bytes, base: int) -> list[tuple[int, int]]:
        return [(max(s, base), e) for s, e in _intervals(full, self.patterns) if e > base]

    def feed(self, data: bytes) -> bytes:
        if not self.patterns:
            return data
        pending = self._buf + data
        full = self._ctx + pending
        base = len(self._ctx)
        safe = len(full) - self.hold  # any pattern starting before this lies wholly inside ``full``
        if safe <= base:
            self._buf = pending
            self.held_max = max(self.held_max, len(pending))
            return b""
        spans = self._spans(full, base)
        cut, done = safe, spans
        for i, (start, end) in enumerate(spans):
            if end >= safe:  # an occurrence not seen yet may still touch this region: decide it later
                cut, done = min(start, safe), spans[:i]
                break
        ctx = b""
        if len(full) - cut > RUNAWAY_HOLD:
            cut = safe
            done = [(s, min(e, safe)) for s, e in spans if s < safe]
            ctx = full[max(0, safe - self.hold) : safe]
        out = _apply(full[base:cut], [(s - base, e - base) for s, e in done])
        self._buf, self._ctx = full[cut:], ctx
        self.held_max = max(self.held_max, len(self._buf))
        return out

    def finish(self) -> bytes:
        full = self._ctx + self._buf
        base = len(self._ctx)
        self._buf = self._ctx = b""
        if not self.patterns:
            return full
        return _apply(full[base:], [(s - base, e - base) for s, e in self._spans(full, base)])

    def mask_text(self, text: str) -> str:
        """Mask one complete string (an artifact's name, an error message)."""
        if not self.patterns or not text:
            return text
        return mask_bytes(text.encode(errors="surrogateescape"), self.patterns).decode(errors="surrogateescape")


class LogRedactor:
    """Masks known secret values in every log record this process creates (any logger, any handler).

    Installed as the logging record factory the first time a secret becomes known: the message is
    rendered, masked and frozen into the record, and a traceback is rendered and masked into
    ``exc_text`` (which formatters use as it is).
    """

    def __init__(self) -> None:
        self._values: set[str] = set()
        self._patterns: list[bytes] = []
        self._lock = threading.Lock()
        self._installed = False
        self._previous: Any = None

    def add(self, values: Iterable[str]) -> None:
        fresh = {v for v in values if len(v.encode()) >= MIN_MASKED_LENGTH} - self._values
        if not fresh:
            return
        with self._lock:
            self._values |= fresh
            self._patterns = patterns_for(self._values)
            if not self._installed:
                self._previous = logging.getLogRecordFactory()
                logging.setLogRecordFactory(self._make_record)
                self._installed = True

    def redact(self, text: str) -> str:
        patterns = self._patterns
        if not patterns or not text:
            return text
        return mask_bytes(text.encode(errors="surrogateescape"), patterns).decode(errors="surrogateescape")

    def _make_record(self, *args: Any, **kwargs: Any) -> logging.LogRecord:
        record: logging.LogRecord = self._previous(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: let the handler report it as usual
            return record
        masked = self.redact(message)
        if masked != message:
            record.msg, record.args = masked, None
        if record.exc_info and record.exc_info[0] is not None:
            record.exc_text = self.redact(logging.Formatter().formatException(record.exc_info))
        return record


REDACTOR = LogRedactor()
