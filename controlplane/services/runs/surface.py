"""What every dialect's service stands on: the settings, the sessions, the automations it names and the
run service it starts and reads runs through (services/runs/service.py)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from controlplane.core.settings import Settings
from controlplane.services.automations.service import AutomationService
from controlplane.services.runs.service import RunService


class Surface:
    """A dialect's service: seed 000's jobs, 001's processes, 002's scripts each subclass it."""

    def __init__(
        self,
        settings: Settings,
        sessions: async_sessionmaker[AsyncSession],
        automations: AutomationService,
        runs: RunService,
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.automations = automations
        self.runs = runs
