"""Seed 003's answers (/api/v1/app_offering_automation_rules): a rule and what it did lately.

A list answers only the fields ``?fields=`` chose (``id`` always), so every field but ``id`` may be absent
from a list's items."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from controlplane.dialects.schemas import SeedModel


class AppOfferingPublic(SeedModel):
    reference: str = Field(description="The automation's name.")
    id: str = Field(description="The automation's id.")


class RulePublic(SeedModel):
    id: int
    app_offering: AppOfferingPublic | None = None
    rulable_type: str | None = Field(None, description="runs or automations.")
    name: str | None = None
    trigger: str | None = None
    position: int | None = None
    description: str | None = None
    description_html: str | None = Field(None, description="The description as Markdown rendered (no raw HTML).")
    expressions: str | None = Field(None, description="CEL: named values the condition and actions may use.")
    condition: str | None = Field(None, description="CEL: the rule fires when it is true.")
    actions: str | None = Field(None, description="What the rule does when it fires, a line each.")
    actions_html: str | None = None
    created_at: str | None = None
    updated_at: str | None = None
    last_fired_at: str | None = None
    last_error: str | None = None
    last_error_at: str | None = None


class RuleEvaluationPublic(SeedModel):
    id: int
    rule_id: int
    event: str
    run_id: str | None
    automation_id: str
    outcome: str = Field(description="fired, failed or cut.")
    error: str | None
    depth: int = Field(description="How many rule firings led to this event.")
    actions: list[Any] = Field(description="Each action's result.")
    notifications: list[Any]
    created_at: str | None
