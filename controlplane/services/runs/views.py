"""How a run reads: its public record (seed 004's run), and its logs followed live while it runs."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from controlplane.core.schemas.runs import ArtifactPublic, RunPublic
from controlplane.core.settings import Settings
from controlplane.core.states import TERMINAL, RunStatus
from controlplane.db.tables import Run
from controlplane.services.automations.service import duration_seconds, run_metrics
from controlplane.store import runs as store

STREAMS = ("stdout", "stderr")
FOLLOW_POLL = 0.25


async def public(s: AsyncSession, settings: Settings, run: Run, *, base_url: str, inline: bool = True) -> RunPublic:
    """A run as seed 004 shows it; ``inline`` adds the head of stdout and stderr (CP_INLINE_OUTPUT_BYTES)."""
    limit = settings.inline_output_bytes
    texts: dict[str, str] = {}
    cut: dict[str, bool] = {}
    for stream in STREAMS:
        if inline:
            data, _ = await store.read_log(s, run.id, stream, max_bytes=limit + 1)
        else:
            data = b""
        cut[stream] = len(data) > limit
        texts[stream] = data[:limit].decode("utf-8", errors="replace")
    arts = await store.artifact_meta(s, run.id)
    prefix = f"{base_url}/api/v1/automations/{run.automation_id}/runs/{run.id}/artifacts/"
    duration_ms = (
        int((run.stop_time - run.start_time).total_seconds() * 1000) if run.start_time and run.stop_time else None
    )
    return RunPublic(
        id=run.id,
        automation_id=run.automation_id,
        automation_version=run.automation_version,
        title=run.title,
        status=RunStatus(run.status),
        context=run.context,
        args=list(run.args or []),
        exit_code=run.exit_code,
        stdout=texts["stdout"],
        stderr=texts["stderr"],
        stdout_bytes=run.stdout_bytes,
        stderr_bytes=run.stderr_bytes,
        truncated=run.stdout_truncated or run.stderr_truncated,
        stdout_inline_truncated=cut["stdout"],
        stderr_inline_truncated=cut["stderr"],
        error=run.errors or [],
        metrics=run_metrics(run),
        artifacts=[ArtifactPublic(path=p, size=n, sha256=h, content_type=ct, href=prefix + p) for p, n, h, ct in arts],
        created_at=run.created_at,
        updated_at=run.updated_at,
        start_time=run.start_time,
        stop_time=run.stop_time,
        duration=duration_seconds(run),
        duration_ms=duration_ms,
        timeout_seconds=run.timeout_seconds,
        scheduled_start_time=run.scheduled_start_time,
        executed_by_id=run.executed_by_id,
        owner_id=run.owner_id,
        space_id=run.space_id,
        retry_of=run.retry_of,
        test_run=run.is_test_run,
        is_test_run=run.is_test_run,
        archived=run.archived,
        is_archived=run.archived,
        billable=run.start_time is not None,
    )


async def follow(sessions: async_sessionmaker[AsyncSession], run_id: str, stream: str) -> AsyncIterator[bytes]:
    """A stream's chunks as they are stored, polling every FOLLOW_POLL seconds, until the run is final and
    every chunk committed with its final status has been read."""
    seq = -1
    while True:
        async with sessions() as s:
            run = await store.get_any(s, run_id)
            final = run is None or RunStatus(run.status) in TERMINAL
            chunks = await store.stream_log(s, run_id, stream, seq)
        for n, data in chunks:
            seq = n
            yield data
        if len(chunks) == 64:
            continue
        if final:
            async with sessions() as s:  # chunks committed with the final status
                rest = await store.stream_log(s, run_id, stream, seq)
            for n, data in rest:
                seq = n
                yield data
            if len(rest) < 64:
                return
            continue
        await asyncio.sleep(FOLLOW_POLL)
