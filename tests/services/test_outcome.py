"""decide(): what a supervisor learned, mapped to a final status, exit code and error entries (pure)."""

from __future__ import annotations

import pytest

from controlplane.backends import protocol as p
from controlplane.backends.base import Outcome, Usage
from controlplane.core.errors import BackendUnavailable
from controlplane.core.states import RunStatus
from controlplane.services.execution.outcome import Supervision, decide, err, lost


def outcome(exit_code: int | None, *, oom: bool = False, detail: str | None = None) -> Outcome:
    return Outcome(exit_code=exit_code, oom_killed=oom, usage=Usage(), detail=detail)


def codes(entries: list[dict[str, object]]) -> list[object]:
    return [e["code"] for e in entries]


@pytest.mark.parametrize(
    ("stderr", "status"), [(0, RunStatus.FINISHED), (1, RunStatus.FINISHED_WITH_WARNINGS)], ids=["quiet", "stderr"]
)
def test_exit_zero_is_finished_with_warnings_only_when_stderr_has_bytes(stderr: int, status: RunStatus) -> None:
    assert decide(Supervision(outcome=outcome(0)), stderr_bytes=stderr, timeout=5) == (status, 0, [])


def test_non_zero_exit_is_failed_with_its_code() -> None:
    status, code, errors = decide(Supervision(outcome=outcome(3)), stderr_bytes=0, timeout=5)
    assert (status, code, codes(errors)) == (RunStatus.FAILED, 3, ["NON_ZERO_EXIT"])
    assert errors[0]["detail"] == "exit code 3"


def test_a_signal_says_so() -> None:
    exited = p.Exited(exit_code=137, signal=9, oom_killed=False, cpu_seconds=0.0, max_rss_bytes=0)
    status, code, errors = decide(Supervision(exited=exited, outcome=outcome(137)), stderr_bytes=0, timeout=5)
    assert (status, code, codes(errors)) == (RunStatus.FAILED, 137, ["KILLED_BY_SIGNAL"])
    assert errors[0]["detail"] == "signal 9"


def test_oom_is_exceeded_limit_137_whatever_the_exit_code() -> None:
    status, code, errors = decide(Supervision(outcome=outcome(1, oom=True)), stderr_bytes=9, timeout=5)
    assert (status, code, codes(errors)) == (RunStatus.EXCEEDED_LIMIT, 137, ["OUT_OF_MEMORY"])


def test_the_deadline_wins_over_everything_else() -> None:
    sup = Supervision(outcome=outcome(0), timed_out=True, stop_reason="user", failure=BackendUnavailable("x"))
    status, code, errors = decide(sup, stderr_bytes=0, timeout=7)
    assert (status, code, codes(errors)) == (RunStatus.EXCEEDED_LIMIT, None, ["RUN_TIMEOUT"])
    assert errors[0]["detail"] == "stopped after 7 s"


@pytest.mark.parametrize(("reason", "code"), [("user", "STOPPED_BY_USER"), ("shutdown", "SERVER_SHUTDOWN")])
def test_a_stop_is_stopped_with_its_reason(reason: str, code: str) -> None:
    status, exit_code, errors = decide(Supervision(stop_reason=reason), stderr_bytes=0, timeout=5)
    assert (status, exit_code, codes(errors)) == (RunStatus.STOPPED, None, [code])


def test_an_engine_failure_is_failed_with_the_engine_error() -> None:
    sup = Supervision(failure=BackendUnavailable("docker went away"))
    status, code, errors = decide(sup, stderr_bytes=0, timeout=5)
    assert (status, code, codes(errors)) == (RunStatus.FAILED, None, ["BACKEND_UNAVAILABLE"])
    assert errors[0]["detail"] == "docker went away"


@pytest.mark.parametrize("sup", [Supervision(), Supervision(outcome=outcome(None, detail="vanished"))])
def test_no_exit_code_is_run_lost_with_the_engine_detail(sup: Supervision) -> None:
    status, code, errors = decide(sup, stderr_bytes=0, timeout=5)
    assert (status, code, codes(errors)) == (RunStatus.FAILED, None, ["RUN_LOST"])
    assert errors[0].get("detail") == (sup.outcome.detail if sup.outcome else None)


def test_notes_follow_the_cause() -> None:
    note = err("ARTIFACTS_SKIPPED", "Some outputs were not collected", "x (symlink)")
    sup = Supervision(outcome=outcome(2), notes=[note])
    assert codes(decide(sup, stderr_bytes=0, timeout=5)[2]) == ["NON_ZERO_EXIT", "ARTIFACTS_SKIPPED"]
    assert decide(Supervision(outcome=outcome(0), notes=[note]), stderr_bytes=0, timeout=5)[2] == [note]


def test_lost_is_a_run_lost_failure() -> None:
    status, _, errors = decide(Supervision(failure=lost("gone")), stderr_bytes=0, timeout=5)
    assert status == RunStatus.FAILED and errors[0] == {
        "code": "RUN_LOST",
        "title": "The run was lost",
        "detail": "gone",
    }


@pytest.mark.parametrize("exit_code", [137, 143])
def test_a_sandbox_killed_from_outside_is_not_the_scripts_failure(exit_code: int) -> None:
    """No Exited frame from the runner and the engine says SIGKILL/SIGTERM: someone killed the sandbox
    (another installation's sweep once did), which must not read as the script's NON_ZERO_EXIT."""
    status, code, errors = decide(Supervision(outcome=outcome(exit_code)), stderr_bytes=0, timeout=5)
    assert (status, code, codes(errors)) == (RunStatus.FAILED, exit_code, ["SANDBOX_KILLED"])


def test_a_script_that_exits_137_itself_is_its_own_failure() -> None:
    exited = p.Exited(exit_code=137, signal=None, oom_killed=False, cpu_seconds=0.0, max_rss_bytes=0)
    status, code, errors = decide(Supervision(exited=exited, outcome=outcome(137)), stderr_bytes=0, timeout=5)
    assert (status, code, codes(errors)) == (RunStatus.FAILED, 137, ["NON_ZERO_EXIT"])
