"""A run's output on its way to the database: both streams masked, capped and flushed in chunks.

While a run runs, its output is flushed every FLUSH_SECONDS, and only when there is something to write
(an idle run costs no writes). A resumed supervisor skips what an earlier one already stored.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from controlplane.core import metrics
from controlplane.db.session import transaction
from controlplane.services.execution import masking
from controlplane.services.execution.capture import StreamCapture
from controlplane.store import runs as run_store

log = logging.getLogger("controlplane.engine")
FLUSH_SECONDS = 0.25


class RunOutput:
    """Both streams of one run, flushed to the database every FLUSH_SECONDS while it runs.

    A flush is never cancelled half-way (that would lose the bytes it took); a failed flush keeps its
    chunks and the next one writes them first, so stored logs have no holes. The tenant's ``secrets`` are
    masked before anything is kept (services/execution/masking.py), so neither stored nor followed logs show them.
    """

    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], run_id: str, cap: int, secrets: Sequence[str] = ()
    ) -> None:
        self.sessions = sessions
        self.run_id = run_id
        patterns = masking.patterns_for(secrets)
        self.maskers = {"stdout": masking.Masker(patterns), "stderr": masking.Masker(patterns)}
        self.mask_text = masking.Masker(patterns).mask_text
        self.streams = {"stdout": StreamCapture(cap), "stderr": StreamCapture(cap)}
        self.seq = {"stdout": 0, "stderr": 0}
        self._unwritten: list[tuple[str, bytes]] = []
        self._skip = {"stdout": 0, "stderr": 0}
        self._lock = asyncio.Lock()
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._flusher())

    async def resume(self) -> None:
        """A re-attached sandbox replays its output from the start: skip the bytes an earlier supervisor
        already stored and append after its chunks, so stored (and followed) logs hold each byte once."""
        async with self.sessions() as s:
            positions = await run_store.log_positions(s, self.run_id)
        for stream, (last_seq, stored) in positions.items():
            if stream in self.seq:
                self.seq[stream] = last_seq + 1
                self._skip[stream] = stored

    def add(self, stream: str, data: bytes) -> None:
        self._keep(stream, self.maskers[stream].feed(data))

    def _keep(self, stream: str, data: bytes) -> None:
        skip = self._skip[stream]
        if skip:  # stored before a restart: counted as the stream's head, not stored again
            n = min(skip, len(data))
            self._skip[stream] -= n
            cap = self.streams[stream]
            cap.total += n
            cap.head_len += n
            data = data[n:]
            if not data:
                return
        self.streams[stream].add(data)
        metrics.OUTPUT_BYTES.labels(stream).inc(len(data))

    async def _flusher(self) -> None:
        while not self._stop.is_set():
            try:
                await asyncio.wait_for(self._stop.wait(), timeout=FLUSH_SECONDS)
            except TimeoutError:
                pass
            if self._stop.is_set():
                return
            try:
                await asyncio.shield(self._flush(final=False))
            except Exception:  # retried with the next flush, never kills the run
                log.warning("run %s: flushing logs failed; will retry", self.run_id, exc_info=True)

    async def _flush(self, *, final: bool) -> None:
        async with self._lock:
            for name, cap in self.streams.items():
                self._unwritten += [(name, part) for part in (cap.finish() if final else cap.take_pending()) if part]
            if not self._unwritten:
                return
            async with transaction(self.sessions) as s:
                seq = dict(self.seq)
                for stream, part in self._unwritten:
                    await run_store.append_log(s, self.run_id, stream, seq[stream], part)
                    seq[stream] += 1
            self.seq = seq
            self._unwritten = []

    async def close(self) -> None:
        for stream, masker in self.maskers.items():  # what the maskers still held back
            self._keep(stream, masker.finish())
        self._stop.set()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
        for attempt in range(5):
            try:
                await self._flush(final=attempt == 0)
                return
            except Exception:
                log.warning("run %s: final log flush failed (attempt %d)", self.run_id, attempt + 1, exc_info=True)
                await asyncio.sleep(0.2 * (attempt + 1))
        raise RuntimeError(f"run {self.run_id}: logs could not be stored")
