"""In-process event publication: what happened (a run ended, an automation changed, a webhook arrived),
delivered to plain async callbacks other services subscribe (automation rules, process job notifications).

Publishers call ``publish(event)`` after the change is committed (the engine: only the replica whose
compare-and-set finalized the run, so each run end is published once across replicas). Subscribers are
called as background tasks, one per subscriber: they never delay or break the publisher; one that raises is
logged and the others still run. Delivery is in-process and at most once.

Several platforms may share one process (tests start replicas side by side), so every event carries
``sessions``, the publishing platform's session factory: a subscriber handles only its own platform's
events. ``depth`` counts how many rule actions led to the event (a run a rule started, an automation a rule
disabled): the rules engine cuts loops with it; what is published inside ``rule_depth(n)`` carries depth n.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import enum
import logging
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from controlplane.db.tables import utcnow

log = logging.getLogger("controlplane.hooks")


class EventKind(enum.StrEnum):
    RUN_FINISHED = "run.finished"  # finished, finished with warnings
    RUN_FAILED = "run.failed"
    RUN_EXCEEDED_LIMIT = "run.exceeded_limit"
    RUN_STOPPED = "run.stopped"
    RUN_NOT_STARTED = "run.not_started"  # expired or cancelled while queued without a stop request
    AUTOMATION_CREATED = "automation.created"
    AUTOMATION_UPDATED = "automation.updated"
    AUTOMATION_ENABLED = "automation.enabled"
    AUTOMATION_DISABLED = "automation.disabled"
    WEBHOOK_ARRIVED = "webhook.arrived"

    @property
    def is_run_end(self) -> bool:
        return self.value.startswith("run.")


RUN_END_KINDS = {
    "finished": EventKind.RUN_FINISHED,
    "finished with warnings": EventKind.RUN_FINISHED,
    "failed": EventKind.RUN_FAILED,
    "not started": EventKind.RUN_NOT_STARTED,
    "exceeded limit": EventKind.RUN_EXCEEDED_LIMIT,
    "stopped": EventKind.RUN_STOPPED,
}


@dataclass(frozen=True)
class Event:
    kind: EventKind
    tenant_id: str
    automation_id: str
    sessions: async_sessionmaker[AsyncSession]  # the publishing platform's (see the module docstring)
    run_id: str | None = None
    data: dict[str, Any] = field(default_factory=dict)  # kind-specific: a run's status, a webhook's body
    depth: int = 0
    at: datetime = field(default_factory=utcnow)

    @property
    def status(self) -> str | None:
        value = self.data.get("status")
        return value if isinstance(value, str) else None


Subscriber = Callable[[Event], Coroutine[Any, Any, None]]
_subscribers: list[Subscriber] = []
_tasks: set[asyncio.Task[None]] = set()
_depth: contextvars.ContextVar[int] = contextvars.ContextVar("rule_depth", default=0)


def run_event(
    sessions: async_sessionmaker[AsyncSession], *, tenant_id: str, automation_id: str, run_id: str, status: str
) -> Event:
    """The event of a run that ended with ``status``."""
    kind = RUN_END_KINDS.get(status, EventKind.RUN_FAILED)
    return Event(kind, tenant_id, automation_id, sessions, run_id, data={"status": status})


def subscribe(callback: Subscriber) -> None:
    if callback not in _subscribers:
        _subscribers.append(callback)


def unsubscribe(callback: Subscriber) -> None:
    if callback in _subscribers:
        _subscribers.remove(callback)


@contextlib.contextmanager
def rule_depth(depth: int) -> Iterator[None]:
    """Events published inside this block (by a rule's actions) carry ``depth``."""
    token = _depth.set(depth)
    try:
        yield
    finally:
        _depth.reset(token)


def publish(event: Event) -> None:
    """Hand ``event`` to every subscriber as a background task (no-op without a running event loop)."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return
    if event.depth == 0 and _depth.get():
        event = replace(event, depth=_depth.get())
    for callback in list(_subscribers):
        task = loop.create_task(_guard(callback, event), name=f"event-{event.kind.value}")
        _tasks.add(task)
        task.add_done_callback(_tasks.discard)


async def _guard(callback: Subscriber, event: Event) -> None:
    try:
        await callback(event)
    except Exception:
        log.exception("event %s (run %s): subscriber %s failed", event.kind.value, event.run_id, callback)


async def drain(timeout: float = 10.0) -> None:
    """Wait (bounded) for the subscribers in flight, and for what they publish: on shutdown, and in tests."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while _tasks and loop.time() < end:
        await asyncio.wait(set(_tasks), timeout=max(0.01, end - loop.time()))
