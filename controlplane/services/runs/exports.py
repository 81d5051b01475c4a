"""Run export and debug: signed, time-limited links, the run's debug record, and its zip archive.

Seed 004's ``POST …/runs/{runId}/actions/export`` answers ``{"url"}`` and ``GET …/runs/{runId}/debug`` a
URL string. Both URLs work without a bearer token (a browser, a ticket, a colleague) because they carry
``expires`` (Unix seconds) and ``signature`` = HMAC-SHA256(key, kind|automation id|run id|expires): a
changed id or a later expiry breaks the signature (403), a link past its expiry is 410. The key is
``CP_SIGNING_KEY`` or one generated once into DATA_DIR/signing-key (0600); changing it voids every link.

The archive is a zip streamed as it is built - run.json (the debug record plus a file list), stdout.log,
stderr.log, artifacts/<path>, response/body (the script's own answer, seed 002) - reading logs chunk by
chunk and artifacts slice by slice, compressing in a worker thread, so neither the server's memory nor its
event loop depends on how big a run's output is.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import io
import logging
import os
import secrets
import time
import zipfile
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from controlplane.core.auth import Permission, Principal
from controlplane.core.clock import SYSTEM_CLOCK, Clock
from controlplane.core.errors import LinkExpired, LinkInvalid, NotFound
from controlplane.core.schemas.runs import RunDebugPublic, RunPhasesPublic, TimelineEntryPublic
from controlplane.core.settings import Settings
from controlplane.core.states import TERMINAL, RunStatus
from controlplane.db.tables import Run, utcnow
from controlplane.services.runs.service import RunService
from controlplane.store import exports as store
from controlplane.store import responses as response_store
from controlplane.store import runs as run_store

log = logging.getLogger("controlplane.exports")
KEY_FILE = "signing-key"
EXPORT, DEBUG = "export", "debug"
SLICE = 256 * 1024  # artifact bytes read at a time
LOG_BATCH = 2  # stored log chunks (<= 256 KiB each) read at a time
_EVENT = {
    RunStatus.QUEUED: "queued",
    RunStatus.STARTING: "claimed",
    RunStatus.RUNNING: "started",
    RunStatus.MUST_STOP: "stopping",
}


def load_signing_key(settings: Settings) -> bytes:
    """CP_SIGNING_KEY, else DATA_DIR/signing-key, created (0600, exclusively: replicas sharing the
    directory agree on one key) on first use."""
    if settings.signing_key:
        return settings.signing_key.encode()
    path = Path(settings.data_dir) / KEY_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        for _ in range(50):  # another process may be writing it right now
            key = path.read_text().strip()
            if key:
                return key.encode()
            time.sleep(0.02)
        raise
    key = secrets.token_hex(32)
    with os.fdopen(fd, "w") as fh:
        fh.write(key + "\n")
    log.info("generated the URL signing key in %s (set CP_SIGNING_KEY to share one across hosts)", path)
    return key.encode()


class _Sink(io.RawIOBase):
    """A write-only, unseekable file collecting what zipfile writes until the stream takes it."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._pos = 0

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        data = bytes(b)
        self._parts.append(data)
        self._pos += len(data)
        return len(data)

    def tell(self) -> int:
        return self._pos

    def take(self) -> bytes:
        out = self._parts[0] if len(self._parts) == 1 else b"".join(self._parts)
        self._parts.clear()
        return out


def _archive_name(path: str) -> str | None:
    """artifacts/<path> for a relative path without '..'; None for anything else (left out, listed)."""
    parts = PurePosixPath(path).parts
    if not parts or path.startswith("/") or any(p in ("..", ".", "") for p in parts):
        return None
    return "artifacts/" + "/".join(parts)


class ExportService:
    def __init__(
        self,
        settings: Settings,
        sessions: async_sessionmaker[AsyncSession],
        runs: RunService,
        *,
        key: bytes,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.runs = runs
        self.key = key
        self.clock = clock

    # --- signed links -------------------------------------------------------------------------------

    def signature(self, kind: str, automation_id: str, run_id: str, expires: int) -> str:
        message = f"{kind}\n{automation_id}\n{run_id}\n{expires}".encode()
        digest = hmac.new(self.key, message, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    async def link(self, principal: Principal, kind: str, automation_id: str, run_id: str, *, prefix: str) -> str:
        """A signed URL for a run the principal may read (the same check as reading the run); an export, a
        POST like stop and retry, also needs the run permission (seed 004: editor or operator)."""
        await self.runs.require(principal, automation_id, run_id, Permission.RUN if kind == EXPORT else Permission.READ)
        expires = int(self.clock.time()) + self.settings.export_url_ttl_seconds
        sig = self.signature(kind, automation_id, run_id, expires)
        tail = "export" if kind == EXPORT else "debug/log"
        return f"{prefix}/{automation_id}/runs/{run_id}/{tail}?expires={expires}&signature={sig}"

    def verify(self, kind: str, automation_id: str, run_id: str, expires: str | None, signature: str | None) -> None:
        """Signature first (403: forged, altered, extended or missing), then expiry (410)."""
        if not expires or not signature or not expires.isdigit() or len(expires) > 12:
            raise LinkInvalid("this URL needs its expires and signature parameters; ask for a new one")
        wanted = self.signature(kind, automation_id, run_id, int(expires))
        if not hmac.compare_digest(wanted.encode(), signature.encode()):
            raise LinkInvalid("the link's signature does not match; ask for a new one")
        if int(expires) <= self.clock.time():
            raise LinkExpired("the link has expired; ask for a new one")

    # --- the debug record ---------------------------------------------------------------------------

    async def _load(self, s: AsyncSession, automation_id: str, run_id: str) -> Run:
        run = await run_store.get_any(s, run_id)
        if run is None or run.automation_id != automation_id:
            raise NotFound(f"run {run_id} does not exist")
        return run

    async def record(self, automation_id: str, run_id: str, *, base_url: str, inline: bool = True) -> RunDebugPublic:
        """The run as GET …/runs/{runId} shows it, its automation and its timeline (signed link checked).
        ``inline=False`` leaves stdout/stderr out of it (an export carries them as files)."""
        async with self.sessions() as s:
            run = await self._load(s, automation_id, run_id)
            public = await self.runs.public(s, run, base_url=base_url, inline=inline)
            events = await store.events(s, run_id)
            about: dict[str, Any] = {"id": automation_id, "version": run.automation_version}
            about.update(await store.automation_summary(s, automation_id) or {})
        entries = timeline(run, events)
        return RunDebugPublic(run=public, automation=about, timeline=entries, phases=phases(run, entries))

    # --- the archive --------------------------------------------------------------------------------

    async def archive(self, automation_id: str, run_id: str, *, base_url: str) -> AsyncIterator[bytes]:
        """Check the run exists (so a 404 is a proper response), then stream its zip."""
        record = await self.record(automation_id, run_id, base_url=base_url, inline=False)
        return self._zip(record)

    async def _zip(self, record: RunDebugPublic) -> AsyncIterator[bytes]:
        run_id = record.run.id
        sink = _Sink()
        zf = zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6)
        stamp = utcnow().timetuple()[:6]
        files: list[dict[str, Any]] = []
        sizes: dict[str, int] = {}
        async with self.sessions() as s:
            for stream in ("stdout", "stderr"):
                sizes[stream] = await store.log_size(s, run_id, stream)
            artifacts = await run_store.artifact_meta(s, run_id)
            answer = await response_store.get(s, run_id)
        plan: list[tuple[str, int, Callable[[], AsyncIterator[bytes]]]] = []
        for stream in ("stdout", "stderr"):
            files.append({"path": f"{stream}.log", "size": sizes[stream]})
            plan.append((f"{stream}.log", sizes[stream], lambda st=stream: self._log(run_id, st)))  # type: ignore[misc]
        for path, size, sha, ctype in artifacts:
            name = _archive_name(path)
            if name is None:
                files.append({"path": path, "size": size, "skipped": "not a safe relative path"})
                continue
            files.append({"path": name, "size": size, "sha256": sha, "contentType": ctype})
            plan.append((name, size, lambda p=path, n=size: self._artifact(run_id, p, n)))  # type: ignore[misc]
        if answer is not None:  # the script's own HTTP answer (seed 002), with what made it unusable if anything
            body = bytes(answer.body)
            files.append(
                {
                    "path": "response/body",
                    "size": len(body),
                    "statusCode": answer.status_code,
                    "contentType": answer.content_type,
                    "error": answer.error,
                }
            )
            plan.append(("response/body", len(body), lambda b=body: _once(b)))  # type: ignore[misc]
        head = record.model_copy(update={"files": files}).model_dump_json(by_alias=True, indent=2).encode()
        async for part in _entry(zf, sink, "run.json", len(head), _once(head), stamp):
            yield part
        for name, size, source in plan:
            async for part in _entry(zf, sink, name, size, source(), stamp):
                yield part
        zf.close()
        yield sink.take()

    async def _log(self, run_id: str, stream: str) -> AsyncIterator[bytes]:
        seq = -1
        while True:
            async with self.sessions() as s:
                chunks = await store.log_chunks(s, run_id, stream, seq, limit=LOG_BATCH)
            for n, data in chunks:
                seq = n
                yield data
            if len(chunks) < LOG_BATCH:
                return

    async def _artifact(self, run_id: str, path: str, size: int) -> AsyncIterator[bytes]:
        offset = 0
        while offset < size:
            async with self.sessions() as s:
                piece = await store.artifact_slice(s, run_id, path, offset, SLICE)
            if not piece:
                return
            offset += len(piece)
            yield piece


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def _entry(
    zf: zipfile.ZipFile,
    sink: _Sink,
    name: str,
    size: int,
    chunks: AsyncIterator[bytes],
    stamp: tuple[int, ...],
) -> AsyncIterator[bytes]:
    info = zipfile.ZipInfo(name, date_time=stamp)  # type: ignore[arg-type]
    info.compress_type = zipfile.ZIP_DEFLATED
    info.file_size = size  # decides zip64 before the data is known
    writer = zf.open(info, "w")
    async for chunk in chunks:
        await asyncio.to_thread(writer.write, chunk)
        out = sink.take()
        if out:
            yield out
    await asyncio.to_thread(writer.close)
    out = sink.take()
    if out:
        yield out


def timeline(run: Run, events: list[tuple[str, datetime, str | None]]) -> list[TimelineEntryPublic]:
    """created and queued (the row is committed queued), then one entry per recorded status change; the
    run's own start and stop times fill in for changes recorded before events were (and are preferred)."""
    out = [
        TimelineEntryPublic(event="created", status=RunStatus.QUEUED, at=run.created_at),
        TimelineEntryPublic(event="queued", status=RunStatus.QUEUED, at=run.created_at),
    ]
    for raw, at, replica in events:
        status = RunStatus(raw)
        event = "ended" if status in TERMINAL else _EVENT[status]
        if event == "started" and run.start_time is not None:
            at = run.start_time
        if event == "ended" and run.stop_time is not None:
            at = run.stop_time
        out.append(TimelineEntryPublic(event=event, status=status, at=at, replica=replica))
    seen = {e.event for e in out}
    if "started" not in seen and run.start_time is not None:
        out.append(TimelineEntryPublic(event="started", status=RunStatus.RUNNING, at=run.start_time))
    if "ended" not in seen and run.stop_time is not None and RunStatus(run.status) in TERMINAL:
        out.append(TimelineEntryPublic(event="ended", status=RunStatus(run.status), at=run.stop_time))
    return sorted(out, key=lambda e: e.at)  # stable: created before queued


def phases(run: Run, entries: list[TimelineEntryPublic]) -> RunPhasesPublic:
    def first(event: str) -> datetime | None:
        return next((e.at for e in entries if e.event == event), None)

    def span(a: datetime | None, b: datetime | None) -> float | None:
        return round((b - a).total_seconds(), 3) if a is not None and b is not None else None

    claimed, started, ended = first("claimed"), run.start_time, run.stop_time
    return RunPhasesPublic(
        queued_seconds=span(run.created_at, claimed or started or ended),
        starting_seconds=span(claimed, started),
        running_seconds=span(started, ended),
        total_seconds=span(run.created_at, ended),
    )
