"""The wire protocol between the runner inside a sandbox and the control plane.

Both engines carry it the same way, so one parser serves both: Kubernetes merges a container's stdout and
stderr in its logs API, hence the runner (``sandbox-images/python/runner.py``) frames the script's streams
itself and writes only frames to its own stdout.

Control plane -> runner, on the runner's stdin, one JSON object then EOF (or a file given by --bundle)::

    {"v": 1, "runtime": "python" | "shell", "entrypoint": "main.py",
     "files": {"main.py": "<base64>", ...}, "args": ["..."], "env": {"NAME": "value"},
     "input": "<base64>", "outputs": {"max_files": 100, "max_bytes": 20971520}, "linger_seconds": 5}

Runner -> control plane, on the runner's stdout: ASCII lines ``<tag> <base64 payload>\\n``, each at most
~11 KB so no engine splits them:

    s  started        JSON {"pid": n}
    o  stdout bytes   raw chunk of the script's stdout
    e  stderr bytes   raw chunk of the script's stderr
    f  artifact head  JSON {"path": "rel/path", "size": n}; followed by its ``d`` lines
    d  artifact data  raw chunk of the file opened by the last ``f``
    k  skipped        JSON [{"path": "...", "reason": "..."}] outputs that were not collected
    r  response head  JSON {"status": str | null, "contentType": str | null, "size": n, "error": str | null}:
                      what the script wrote into outputs/.response/ (its own HTTP answer, raw text as
                      written); followed by ``size`` bytes of body in ``d`` lines. Sent before any ``f``.
    x  exit           JSON {"exitCode": n, "signal": n | null, "oomKilled": bool, "cpuSeconds": f,
                            "maxRssBytes": n}

Everything arriving here comes from inside the sandbox and is untrusted: lines are bounded, unknown tags
and bad base64 are counted and dropped, and facts that matter for accounting (exit status, OOM, network
and CPU counters) are taken from the engine where it knows them.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

PROTOCOL_VERSION = 1
MAX_LINE = 64 * 1024  # a frame line longer than this is garbage (the runner writes at most ~11 KB)
RAW_CHUNK = 8192  # bytes of payload per frame the runner writes


@dataclass(frozen=True)
class Started:
    pid: int


@dataclass(frozen=True)
class Output:
    stream: str  # "stdout" | "stderr"
    data: bytes


@dataclass(frozen=True)
class ArtifactHead:
    path: str
    size: int


@dataclass(frozen=True)
class ArtifactData:
    data: bytes


@dataclass(frozen=True)
class Skipped:
    entries: tuple[tuple[str, str], ...]  # (path, reason)


@dataclass(frozen=True)
class ResponseHead:
    """The script's own HTTP answer as the runner found it (unvalidated text; see services/execution/capture.py)."""

    status: str | None
    content_type: str | None
    size: int
    error: str | None


@dataclass(frozen=True)
class Exited:
    exit_code: int
    signal: int | None
    oom_killed: bool
    cpu_seconds: float
    max_rss_bytes: int


Frame = Started | Output | ArtifactHead | ArtifactData | Skipped | ResponseHead | Exited


def encode_bundle(
    *,
    runtime: str,
    entrypoint: str,
    files: dict[str, bytes],
    args: list[str],
    env: dict[str, str],
    input_data: bytes,
    max_files: int,
    max_bytes: int,
    linger_seconds: float = 5.0,
) -> bytes:
    doc = {
        "v": PROTOCOL_VERSION,
        "runtime": runtime,
        "entrypoint": entrypoint,
        "files": {p: base64.b64encode(c).decode() for p, c in files.items()},
        "args": list(args),
        "env": dict(env),
        "input": base64.b64encode(input_data).decode(),
        "outputs": {"max_files": max_files, "max_bytes": max_bytes},
        "linger_seconds": linger_seconds,
    }
    return json.dumps(doc, separators=(",", ":")).encode()


def encode_frame(tag: str, payload: bytes) -> bytes:
    """Used by tests and the fake backend; the runner has its own stdlib copy of this one line."""
    return tag.encode() + b" " + base64.b64encode(payload) + b"\n"


class FrameParser:
    """Incremental parser: feed bytes as they arrive, iterate the frames they complete."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._discarding = False
        self.bad_lines = 0

    def feed(self, data: bytes) -> Iterator[Frame]:
        self._buf += data
        while True:
            nl = self._buf.find(b"\n")
            if nl < 0:
                if len(self._buf) > MAX_LINE:  # an endless line: drop it, resync at the next newline
                    self._buf.clear()
                    self._discarding = True
                    self.bad_lines += 1
                return
            line = bytes(self._buf[:nl])
            del self._buf[: nl + 1]
            if self._discarding:
                self._discarding = False
                continue
            frame = self._decode(line)
            if frame is not None:
                yield frame

    def _decode(self, line: bytes) -> Frame | None:
        if len(line) < 2 or line[1:2] != b" ":
            self.bad_lines += 1 if line.strip() else 0
            return None
        tag = line[:1]
        try:
            payload = base64.b64decode(line[2:], validate=True)
        except (binascii.Error, ValueError):
            self.bad_lines += 1
            return None
        try:
            return self._frame(tag, payload)
        except (ValueError, TypeError, KeyError, AttributeError):
            self.bad_lines += 1
            return None

    @staticmethod
    def _frame(tag: bytes, payload: bytes) -> Frame | None:
        if tag == b"o":
            return Output("stdout", payload)
        if tag == b"e":
            return Output("stderr", payload)
        if tag == b"d":
            return ArtifactData(payload)
        doc: Any = json.loads(payload)
        if tag == b"s":
            return Started(int(doc.get("pid", 0)))
        if tag == b"f":
            path = str(doc["path"])
            return ArtifactHead(path, int(doc["size"]))
        if tag == b"k":
            return Skipped(tuple((str(e["path"])[:1024], str(e["reason"])[:200]) for e in doc[:1000]))
        if tag == b"r":
            return ResponseHead(
                status=_text(doc.get("status"), 1024),
                content_type=_text(doc.get("contentType"), 1024),
                size=max(0, int(doc.get("size", 0))),
                error=_text(doc.get("error"), 1024),
            )
        if tag == b"x":
            sig = doc.get("signal")
            return Exited(
                exit_code=int(doc["exitCode"]),
                signal=int(sig) if sig is not None else None,
                oom_killed=bool(doc.get("oomKilled", False)),
                cpu_seconds=float(doc.get("cpuSeconds", 0.0)),
                max_rss_bytes=int(doc.get("maxRssBytes", 0)),
            )
        raise ValueError(f"unknown frame tag {tag!r}")


def _text(value: Any, limit: int) -> str | None:
    return None if value is None else str(value)[:limit]
