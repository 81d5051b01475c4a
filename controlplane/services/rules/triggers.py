"""What a rule can listen to: its rulable types, their triggers, and which triggers each event fires."""

from __future__ import annotations

from controlplane.services.events.hooks import EventKind

RULABLE_TYPES = ("runs", "automations")
TRIGGERS: dict[str, tuple[str, ...]] = {
    "runs": ("on run finished", "on run failed", "on run exceeded limit", "on run stopped", "on run ended"),
    "automations": (
        "on automation created",
        "on automation updated",
        "on automation enabled",
        "on automation disabled",
        "on webhook arrived",
    ),
}
# which (rulable_type, triggers) an event fires
EVENT_TRIGGERS: dict[EventKind, tuple[str, tuple[str, ...]]] = {
    EventKind.RUN_FINISHED: ("runs", ("on run finished", "on run ended")),
    EventKind.RUN_FAILED: ("runs", ("on run failed", "on run ended")),
    EventKind.RUN_EXCEEDED_LIMIT: ("runs", ("on run exceeded limit", "on run ended")),
    EventKind.RUN_STOPPED: ("runs", ("on run stopped", "on run ended")),
    EventKind.RUN_NOT_STARTED: ("runs", ("on run ended",)),
    EventKind.AUTOMATION_CREATED: ("automations", ("on automation created",)),
    EventKind.AUTOMATION_UPDATED: ("automations", ("on automation updated",)),
    EventKind.AUTOMATION_ENABLED: ("automations", ("on automation enabled",)),
    EventKind.AUTOMATION_DISABLED: ("automations", ("on automation disabled",)),
    EventKind.WEBHOOK_ARRIVED: ("automations", ("on webhook arrived",)),
}
