"""Capturing a run's output with bounded memory.

Each stream keeps its first half-cap bytes (written to the database as they arrive, so logs can be
followed live) and a ring of its last half-cap bytes (written when the run ends, after a marker line).
Whatever the script writes, this process holds at most one cap per stream plus one pending chunk.
Artifacts are spooled to temporary files, never held whole in memory. A script's own HTTP answer (the
runner's ``r`` frame: outputs/.response/{status,content-type,body}) is collected apart from the artifacts,
bounded by CP_SCRIPT_RESPONSE_MAX_BYTES, and validated here: the runner is untrusted.
"""

from __future__ import annotations

import hashlib
import mimetypes
import re
import tempfile
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO

CHUNK = 256 * 1024
COALESCE = 4096  # tiny writes are merged into the previous tail piece, so a byte-at-a-time script costs no more


class StreamCapture:
    def __init__(self, cap: int) -> None:
        self.head_limit = cap // 2
        self.tail_limit = cap - self.head_limit
        self.total = 0
        self.head_len = 0
        self.pending = bytearray()
        self._tail: deque[bytearray] = deque()
        self._tail_len = 0

    def add(self, data: bytes) -> None:
        self.total += len(data)
        if self.head_len < self.head_limit:
            take = min(len(data), self.head_limit - self.head_len)
            self.pending += data[:take]
            self.head_len += take
            data = data[take:]
        if data and self.tail_limit > 0:
            if self._tail and len(self._tail[-1]) < COALESCE:
                self._tail[-1] += data
            else:
                self._tail.append(bytearray(data))
            self._tail_len += len(data)
            # drop whole chunks while what stays still covers the tail (amortised O(1) per byte)
            while self._tail and self._tail_len - len(self._tail[0]) >= self.tail_limit:
                self._tail_len -= len(self._tail.popleft())

    def take_pending(self) -> list[bytes]:
        out = [bytes(self.pending[i : i + CHUNK]) for i in range(0, len(self.pending), CHUNK)]
        self.pending.clear()
        return out

    def _tail_bytes(self) -> bytes:
        joined = b"".join(self._tail)
        return joined[-self.tail_limit :] if self.tail_limit else b""

    @property
    def kept(self) -> int:
        return self.head_len + min(self._tail_len, self.tail_limit)

    @property
    def dropped(self) -> int:
        return self.total - self.kept

    def finish(self) -> list[bytes]:
        """What is left to store once the stream has ended: pending head, marker if bytes were dropped, tail."""
        out = self.take_pending()
        if self.dropped > 0:
            out.append(f"\n[... {self.dropped} bytes truncated ...]\n".encode())
        tail = self._tail_bytes()
        out += [tail[i : i + CHUNK] for i in range(0, len(tail), CHUNK)]
        return out


def safe_artifact_path(path: str) -> str | None:
    """A relative path with no '..', no empty parts and no NUL, or None (the runner is untrusted)."""
    if not path or len(path) > 1024 or "\x00" in path or path.startswith("/") or "\\" in path:
        return None
    parts = path.split("/")
    if any(p in ("", ".", "..") for p in parts):
        return None
    return path


RESPONSE_MAX_BYTES = 10 * 1024 * 1024
_TOKEN = r"[A-Za-z0-9!#$&^_.+-]+"
_MEDIA_TYPE = re.compile(rf"{_TOKEN}/{_TOKEN}(\s*;[\x20-\x7e]*)?")
NO_BODY_STATUSES = frozenset({204, 304})


def parse_status(text: str | None) -> int:
    """The script's ``status`` file: a number from 200 to 599 (surrounding blanks ignored); absent is 200."""
    if text is None or not text.strip():
        return 200
    value = text.strip()
    if not (value.isascii() and value.isdigit() and len(value) == 3) or not 200 <= int(value) <= 599:
        raise ValueError(f"status must be a number from 200 to 599, not {value[:40]!r}")
    return int(value)


def parse_content_type(text: str | None, *, has_body: bool) -> str:
    """The script's ``content-type`` file: one printable media type (``text/csv; charset=utf-8``) of at most
    255 characters; absent is application/octet-stream with a body, text/plain without one."""
    if text is None or not text.strip():
        return "application/octet-stream" if has_body else "text/plain; charset=utf-8"
    value = text.strip()
    if len(value) > 255 or not _MEDIA_TYPE.fullmatch(value):
        raise ValueError(f"content-type must be one media type such as text/csv, not {value[:60]!r}")
    return value


@dataclass
class ScriptResponse:
    """What the script answered, validated: ``error`` says why it cannot be used (then the other fields
    are whatever could be read)."""

    status_code: int | None
    content_type: str | None
    body: bytes
    error: str | None = None

    @property
    def usable(self) -> bool:
        return self.error is None and self.status_code is not None


@dataclass
class _ResponseIn:
    status: str | None
    content_type: str | None
    expected: int
    error: str | None
    body: bytearray = field(default_factory=bytearray)

    def settle(self, limit: int) -> ScriptResponse:
        error = self.error
        if error is None and self.expected > limit:
            error = f"the response body is {self.expected} bytes, above CP_SCRIPT_RESPONSE_MAX_BYTES ({limit})"
        elif error is None and len(self.body) < self.expected:
            error = f"the response body was cut short ({len(self.body)} of {self.expected} bytes)"
        status = content_type = None
        if error is None:
            try:
                status = parse_status(self.status)
                content_type = parse_content_type(self.content_type, has_body=self.expected > 0)
            except ValueError as exc:
                error = str(exc)
        body = b"" if error is not None or status in NO_BODY_STATUSES else bytes(self.body)
        return ScriptResponse(status, content_type, body, error)


@dataclass
class CollectedArtifact:
    path: str
    size: int
    sha256: str
    content_type: str
    file: IO[bytes]


@dataclass
class ArtifactCollector:
    max_files: int
    max_bytes: int
    response_max_bytes: int = RESPONSE_MAX_BYTES
    mask: Callable[[str], str] | None = None  # hides the run's secrets in artifact names (execution/masking.py)
    done: list[CollectedArtifact] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    _current: CollectedArtifact | None = None
    _hash: object = None
    _left: int = 0
    _total: int = 0
    _response: _ResponseIn | None = None
    _receiving_response: bool = False

    def begin_response(self, *, status: str | None, content_type: str | None, size: int, error: str | None) -> None:
        """The runner's ``r`` frame: the body follows in ``d`` frames (kept only up to the limit)."""
        self._close_current()
        self._receiving_response = False
        if self._response is not None:  # one answer per run; a second head is ignored with its data
            return
        self._response = _ResponseIn(status, content_type, max(0, size), error)
        if error is None and 0 < size <= self.response_max_bytes:
            self._receiving_response = True
            self._left = size

    @property
    def response(self) -> ScriptResponse | None:
        """The script's answer once the frames ended; None when it wrote none."""
        return self._response.settle(self.response_max_bytes) if self._response is not None else None

    def begin(self, path: str, size: int) -> None:
        self._close_current()
        self._receiving_response = False
        if self.mask is not None:
            path = self.mask(path)
        clean = safe_artifact_path(path)
        if clean is None:
            self.skipped.append((path[:200], "unsafe path"))
            return
        if len(self.done) >= self.max_files or any(a.path == clean for a in self.done):
            self.skipped.append((clean, "too many files" if len(self.done) >= self.max_files else "duplicate"))
            return
        if size < 0 or self._total + size > self.max_bytes:
            self.skipped.append((clean, "too large"))
            return
        ctype = mimetypes.guess_type(clean)[0] or "application/octet-stream"
        spool = tempfile.SpooledTemporaryFile(max_size=1024 * 1024)
        self._current = CollectedArtifact(clean, 0, "", ctype, spool)
        self._hash = hashlib.sha256()
        self._left = size

    def data(self, chunk: bytes) -> None:
        if self._receiving_response and self._response is not None:
            part = chunk[: self._left]
            self._response.body += part
            self._left -= len(part)
            self._receiving_response = self._left > 0
            return
        cur = self._current
        if cur is None or self._left <= 0:
            return
        chunk = chunk[: self._left]
        cur.file.write(chunk)
        cur.size += len(chunk)
        self._left -= len(chunk)
        self._total += len(chunk)
        self._hash.update(chunk)  # type: ignore[attr-defined]

    def _close_current(self) -> None:
        cur = self._current
        if cur is None:
            return
        self._current = None
        cur.sha256 = self._hash.hexdigest()  # type: ignore[attr-defined]
        cur.file.seek(0)
        self.done.append(cur)

    def finish(self) -> list[CollectedArtifact]:
        self._close_current()
        if self.mask is not None:  # the runner's own skipped-entries frame names paths too
            mask = self.mask
            self.skipped = [(mask(path), mask(reason)) for path, reason in self.skipped]
        return self.done

    def close(self) -> None:
        self._close_current()
        for art in self.done:
            art.file.close()
