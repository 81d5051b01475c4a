"""Usage (seed 004's /usage): runs per day and automation."""

from __future__ import annotations

from pydantic import Field

from controlplane.core.schemas.wire import Links, Wire


class UsageAutomationPublic(Wire):
    guid: str
    name: str
    owner_id: str


class UsageEntryPublic(Wire):
    date: str
    name: str
    value: int
    automation: UsageAutomationPublic | None = None


class UsagePublic(Wire):
    data: list[UsageEntryPublic]
    links: Links = Field(default_factory=Links)
