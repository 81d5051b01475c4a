"""One run's container after launch: its frames, then its outcome, then its removal.

Split from ``docker.py`` because this is where the run's facts are decided: which exit code wins (the
runner's Exited frame while the container lingers, otherwise the engine's State), whether it was OOM
killed (either says so), where usage comes from (one-shot engine stats, falling back to the runner's own
numbers), and that the container is removed on every path out of ``finish()``.

Paths out of ``finish()``:

* Exited frame seen: the runner lingers a few seconds, so stats are still readable; then remove.
* stream ended without one (runner or container died): wait for the engine's exit status; then remove.
* frames abandoned early (the caller's deadline) and nobody called ``stop()``: kill, wait, inspect, remove.
* container already gone (``stop()`` removed it): 137 if we stopped it, else unknown; nothing to remove.
* container never started (found by ``attach`` after a crash between create and start): unknown; remove.

The removal sits in a ``finally``: an engine error while collecting still removes the container, and a
failed removal is logged and noted in ``Outcome.detail`` (the reconciler sweeps labelled leftovers).
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any, Protocol

from controlplane.backends.base import Outcome, RunHandle, SingleUseExecution, Usage
from controlplane.backends.docker.stream import STDERR, STDOUT, ChunkPump, Demuxer
from controlplane.backends.docker.usage import host_usage
from controlplane.backends.protocol import Exited, Frame, FrameParser

log = logging.getLogger(__name__)

DIAG_TAIL = 4096  # bytes of the runner's own stderr kept for error messages
KILLED_EXIT = 137


class Engine(Protocol):
    """What an execution needs from the engine (``docker_client.DockerEngine`` provides it)."""

    async def inspect(self, ref: str) -> dict[str, Any] | None: ...
    async def one_shot_stats(self, ref: str) -> dict[str, Any] | None: ...
    async def wait_exit(self, ref: str) -> bool: ...
    async def kill(self, ref: str) -> None: ...
    async def remove(self, ref: str) -> None: ...


class DockerExecution(SingleUseExecution):
    def __init__(
        self,
        engine: Engine,
        handle: RunHandle,
        pump: ChunkPump,
        *,
        multiplexed: bool,
        on_finish: Callable[[DockerExecution], None] = lambda _: None,
    ) -> None:
        self.handle = handle
        self._on_finish = on_finish
        self.stopped = False  # set by DockerBackend.stop(): a missing container then means "killed"
        self._engine = engine
        self._pump = pump
        self._demux = Demuxer() if multiplexed else None
        self._parser = FrameParser()
        self._exited: Exited | None = None
        self._diag = bytearray()

    @property
    def diagnostics(self) -> str:
        """The tail of the runner's own stderr (attach path only; the logs path reads stdout only)."""
        return self._diag.decode(errors="replace")

    @property
    def bad_lines(self) -> int:
        return self._parser.bad_lines

    def close_stream(self) -> None:
        """Stop reading (the backend is closing); finish() still collects and removes."""
        self._pump.close()

    async def frames(self) -> AsyncIterator[Frame]:
        try:
            async for chunk in self._pump.chunks():
                parts = self._demux.feed(chunk) if self._demux else iter(((STDOUT, chunk),))
                for stream, data in parts:
                    if stream == STDERR:
                        self._diag += data
                        del self._diag[:-DIAG_TAIL]
                        continue
                    if stream != STDOUT:
                        continue
                    for frame in self._parser.feed(data):
                        if isinstance(frame, Exited):
                            self._exited = frame
                        yield frame
                        if self._exited is not None:
                            return  # the runner now only lingers so finish() can read its counters
        finally:
            self._pump.close()  # on cancel too: the socket is shut down and the reader thread ends

    def _before_collect(self) -> None:
        self._pump.close()

    async def _remove_sandbox(self) -> str | None:
        try:
            await self._engine.remove(self.handle.ref)
        except Exception as exc:  # the reconciler sweeps labelled leftovers; keep the run's facts
            log.warning("could not remove %s: %s", self.handle.ref, exc)
            return f"the sandbox could not be removed: {exc}"
        finally:
            self._on_finish(self)
        return None

    async def _collect(self) -> Outcome:
        ref = self.handle.ref
        exited = self._exited
        info = await self._engine.inspect(ref)
        if info is None:
            return self._gone()
        state: dict[str, Any] = info.get("State") or {}
        if exited is not None:  # the runner lingers: the container still runs and its counters are live
            usage = host_usage(info)
            if usage is not None:
                usage = _with_runner_numbers(usage, exited)
            elif (info.get("HostConfig") or {}).get("NetworkMode") == "none":
                usage = usage_from(None, exited)  # no network to count; the engine's stats would only add delay
            else:
                usage = usage_from(await self._engine.one_shot_stats(ref), exited)
            return Outcome(
                exit_code=exited.exit_code,
                oom_killed=exited.oom_killed or bool(state.get("OOMKilled")),
                usage=usage,
                finished_at=datetime.now(UTC),
            )
        if state.get("Status") == "created":
            return Outcome(exit_code=None, oom_killed=False, usage=Usage(), detail="the sandbox never started")
        abandoned = False
        if state.get("Running"):
            if not self._pump.reached_end:  # frames were abandoned (deadline) while it still runs
                abandoned = True
                await self._engine.kill(ref)
            if not await self._engine.wait_exit(ref):
                await self._engine.kill(ref)
                await self._engine.wait_exit(ref)
            info = await self._engine.inspect(ref)
            if info is None:
                return self._gone()
            state = info.get("State") or {}
        code = state.get("ExitCode")
        if self.stopped:
            detail = "stopped by the control plane"
        elif abandoned:
            detail = "killed: its output was abandoned before the runner reported an exit status"
        else:
            detail = "the runner ended without reporting its exit status"
            if self._pump.error is not None:
                detail += f" (stream error: {self._pump.error})"
            if self._diag:
                detail += "; runner said: " + self.diagnostics[-1000:].strip()
        return Outcome(
            exit_code=int(code) if code is not None else None,
            oom_killed=bool(state.get("OOMKilled")),
            usage=Usage(),
            finished_at=parse_time(state.get("FinishedAt")),
            detail=detail,
        )

    def _gone(self) -> Outcome:
        now = datetime.now(UTC)
        if self._exited is not None:
            ex = self._exited
            return Outcome(ex.exit_code, ex.oom_killed, usage_from(None, ex), finished_at=now)
        if self.stopped:
            return Outcome(KILLED_EXIT, False, Usage(), finished_at=now, detail="stopped by the control plane")
        return Outcome(None, False, Usage(), detail="the sandbox vanished before it reported an exit status")


def _with_runner_numbers(usage: Usage, exited: Exited) -> Usage:
    return Usage(
        cpu_seconds=usage.cpu_seconds or exited.cpu_seconds,
        memory_peak_bytes=usage.memory_peak_bytes or exited.max_rss_bytes,
        net_rx_bytes=usage.net_rx_bytes,
        net_tx_bytes=usage.net_tx_bytes,
    )


def usage_from(stats: dict[str, Any] | None, exited: Exited | None) -> Usage:
    """Engine counters where present (cgroup v1 has max_usage; v2 on docker 20.10 has no peak), else the
    runner's own numbers (untrusted, but the best there is)."""
    cpu = 0.0
    mem = rx = tx = 0
    if stats:
        cpu = float((stats.get("cpu_stats") or {}).get("cpu_usage", {}).get("total_usage") or 0) / 1e9
        mem = int((stats.get("memory_stats") or {}).get("max_usage") or 0)
        for net in (stats.get("networks") or {}).values():
            rx += int(net.get("rx_bytes") or 0)
            tx += int(net.get("tx_bytes") or 0)
    if exited is not None:
        cpu = cpu or exited.cpu_seconds
        mem = mem or exited.max_rss_bytes
    return Usage(cpu_seconds=cpu, memory_peak_bytes=mem, net_rx_bytes=rx, net_tx_bytes=tx)


_TIME = re.compile(r"^(?P<base>[^.]+?)(?:\.(?P<frac>\d+))?(?P<tz>Z|[+-]\d\d:\d\d)$")


def parse_time(value: str | None) -> datetime | None:
    """Docker's RFC 3339 with nanoseconds -> aware datetime; the zero time (never) -> None."""
    if not value or value.startswith("0001-"):
        return None
    m = _TIME.match(value)
    if not m:
        return None
    frac = (m["frac"] or "0")[:6].ljust(6, "0")
    tz = "+00:00" if m["tz"] == "Z" else m["tz"]
    try:
        return datetime.fromisoformat(f"{m['base']}.{frac}{tz}")
    except ValueError:
        return None
