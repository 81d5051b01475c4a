"""How a run ended, decided: what one supervisor learned (``Supervision``) mapped to a final status, an exit
code and the run's error entries (``decide``, design.md's mapping). Pure: no I/O, unit-tested on its own."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from controlplane.backends import protocol as p
from controlplane.backends.base import Outcome, RunHandle
from controlplane.core.errors import ControlPlaneError, RunLost
from controlplane.core.states import ErrorCode, RunStatus

KILLED_FROM_OUTSIDE = (137, 143)  # SIGKILL, SIGTERM of the sandbox's own process


def err(code: ErrorCode | str, title: str, detail: str | None = None) -> dict[str, Any]:
    """One entry of a run's ``error`` list."""
    entry: dict[str, Any] = {"code": str(code), "title": title}
    if detail:
        entry["detail"] = detail
    return entry


def lost(detail: str) -> ControlPlaneError:
    return RunLost(detail)


@dataclass
class Supervision:
    """What one supervisor learned about its run; turned into a final status by ``decide``."""

    exited: p.Exited | None = None
    outcome: Outcome | None = None
    timed_out: bool = False
    stop_reason: str | None = None
    failure: ControlPlaneError | None = None
    started_at: datetime | None = None
    handle: RunHandle | None = None
    notes: list[dict[str, Any]] = field(default_factory=list)


def decide(sup: Supervision, *, stderr_bytes: int, timeout: int) -> tuple[RunStatus, int | None, list[dict[str, Any]]]:
    """Final status, exit code and error entries of a run (design.md's mapping)."""
    notes = list(sup.notes)
    if sup.timed_out:
        return (
            RunStatus.EXCEEDED_LIMIT,
            None,
            [
                err(ErrorCode.RUN_TIMEOUT, "The run passed its deadline", f"stopped after {timeout} s"),
                *notes,
            ],
        )
    if sup.stop_reason is not None:
        code = ErrorCode.STOPPED_BY_USER if sup.stop_reason == "user" else "SERVER_SHUTDOWN"
        title = "The run was stopped" if sup.stop_reason == "user" else "The control plane shut down"
        return RunStatus.STOPPED, None, [err(code, title), *notes]
    if sup.failure is not None:
        return RunStatus.FAILED, None, [err(sup.failure.code, sup.failure.title, sup.failure.detail), *notes]
    out = sup.outcome
    if out is None or out.exit_code is None:
        detail = out.detail if out is not None else None
        return RunStatus.FAILED, None, [err(ErrorCode.RUN_LOST, "The sandbox ended without a result", detail), *notes]
    if out.oom_killed:
        return (
            RunStatus.EXCEEDED_LIMIT,
            137,
            [
                err(ErrorCode.OUT_OF_MEMORY, "The run ran out of memory", "killed by the kernel's OOM killer"),
                *notes,
            ],
        )
    exit_code = out.exit_code
    if exit_code == 0:
        return (RunStatus.FINISHED_WITH_WARNINGS if stderr_bytes > 0 else RunStatus.FINISHED), 0, notes
    if sup.exited is None and exit_code in KILLED_FROM_OUTSIDE:
        # the runner never reported: the sandbox as a whole was killed (docker kill, a sweep, the node)
        why = f"the sandbox ended with {exit_code} before the runner reported the script's exit"
        return RunStatus.FAILED, exit_code, [err(ErrorCode.SANDBOX_KILLED, "The sandbox was killed", why), *notes]
    if sup.exited is not None and sup.exited.signal:
        return (
            RunStatus.FAILED,
            exit_code,
            [
                err(ErrorCode.KILLED_BY_SIGNAL, "The script was killed by a signal", f"signal {sup.exited.signal}"),
                *notes,
            ],
        )
    return (
        RunStatus.FAILED,
        exit_code,
        [err(ErrorCode.NON_ZERO_EXIT, "The script failed", f"exit code {exit_code}"), *notes],
    )
