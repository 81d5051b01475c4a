"""Capturing a run's output with bounded memory.

Each stream keeps its first half-cap bytes (written to the database as they arrive, so logs can be
followed live) and a ring of its last half-cap bytes (written when the run ends, after a marker line).
Whatever the script writes, this process holds at most one cap per stream plus one pending chunk.
Artifacts are spooled to temporary files, never held whole in memory.
"""

from __future__ import annotations

import hashlib
import mimetypes
import tempfile
from collections import deque
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
    done: list[CollectedArtifact] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    _current: CollectedArtifact | None = None
    _hash: object = None
    _left: int = 0
    _total: int = 0

    def begin(self, path: str, size: int) -> None:
        self._close_current()
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
        return self.done

    def close(self) -> None:
        self._close_current()
        for art in self.done:
            art.file.close()
