"""The run state machine: every legal move passes, every other one raises, terminal states are final."""

from __future__ import annotations

import itertools

import pytest

from controlplane.core.states import (
    ACTIVE,
    ALLOWED,
    TERMINAL,
    InvalidTransition,
    Role,
    RunStatus,
    can_transition,
    transition,
)

ALL_PAIRS = list(itertools.product(RunStatus, RunStatus))
LEGAL = [(a, b) for a, b in ALL_PAIRS if b in ALLOWED.get(a, frozenset())]
ILLEGAL = [(a, b) for a, b in ALL_PAIRS if b not in ALLOWED.get(a, frozenset())]

# The state machine written out by hand, so a change to the table has to be made twice on purpose.
_ENDINGS = {"finished", "finished with warnings", "failed", "exceeded limit"}
EXPECTED: dict[str, set[str]] = {
    "queued": {"starting", "stopped", "not started", "failed"},
    "starting": {"running", "must stop", "stopped"} | _ENDINGS,
    "running": {"must stop", "stopped"} | _ENDINGS,
    "must stop": {"stopped"} | _ENDINGS,
}


def test_table_matches_the_documented_machine() -> None:
    actual = {str(k): {str(v) for v in vs} for k, vs in ALLOWED.items() if vs}
    assert actual == EXPECTED


@pytest.mark.parametrize(("current", "target"), LEGAL, ids=[f"{a}->{b}" for a, b in LEGAL])
def test_every_allowed_move_passes(current: RunStatus, target: RunStatus) -> None:
    assert can_transition(current, target)
    assert transition(current, target) is target
    # the stored value (a plain string) is accepted too
    assert transition(current.value, target) is target


@pytest.mark.parametrize(("current", "target"), ILLEGAL, ids=[f"{a}->{b}" for a, b in ILLEGAL])
def test_every_other_move_raises(current: RunStatus, target: RunStatus) -> None:
    assert not can_transition(current, target)
    with pytest.raises(InvalidTransition) as info:
        transition(current, target)
    assert info.value.current is current
    assert info.value.target is target
    assert current.value in str(info.value) and target.value in str(info.value)


def test_no_status_moves_to_itself() -> None:
    for status in RunStatus:
        assert not can_transition(status, status)


@pytest.mark.parametrize("status", sorted(TERMINAL))
def test_terminal_states_have_no_way_out(status: RunStatus) -> None:
    assert not ALLOWED.get(status)
    for target in RunStatus:
        with pytest.raises(InvalidTransition):
            transition(status, target)


def test_every_non_terminal_state_can_end() -> None:
    for status in set(RunStatus) - TERMINAL:
        assert ALLOWED[status] & TERMINAL, status


def test_terminal_and_active_are_disjoint_and_queued_is_neither() -> None:
    assert not TERMINAL & ACTIVE
    assert RunStatus.QUEUED not in TERMINAL | ACTIVE
    assert TERMINAL | ACTIVE | {RunStatus.QUEUED} == set(RunStatus)


def test_every_status_is_reachable_from_queued() -> None:
    seen = {RunStatus.QUEUED}
    frontier = [RunStatus.QUEUED]
    while frontier:
        for nxt in ALLOWED.get(frontier.pop(), frozenset()):
            if nxt not in seen:
                seen.add(nxt)
                frontier.append(nxt)
    assert seen == set(RunStatus)


def test_unknown_current_status_is_rejected() -> None:
    with pytest.raises(ValueError):
        transition("exploded", RunStatus.RUNNING)


@pytest.mark.parametrize(
    ("raw", "role"),
    [
        ("admin", Role.ADMIN),
        ("ADMIN", Role.ADMIN),
        ("sys_administrator", Role.ADMIN),
        ("SYS_ADMINISTRATOR", Role.ADMIN),
        ("TenantAdmin", Role.ADMIN),
        ("tenantadmin", Role.ADMIN),
        ("tenant_admin", Role.ADMIN),
        (" TenantAdmin ", Role.ADMIN),
        ("developer", Role.DEVELOPER),
        ("Operator", Role.OPERATOR),
        ("viewer", Role.VIEWER),
    ],
)
def test_role_parse_accepts_our_names_and_the_seed_admin_names(raw: str, role: Role) -> None:
    assert Role.parse(raw) is role


@pytest.mark.parametrize("raw", ["", "root", "superuser", "sys_admin", "tenant admin", "admins", "owner"])
def test_role_parse_rejects_unknown_names(raw: str) -> None:
    with pytest.raises(ValueError):
        Role.parse(raw)
