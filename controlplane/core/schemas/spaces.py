"""Spaces and their members on the wire."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from controlplane.core.schemas.wire import NAME_MAX, Wire

SpaceRole = Literal["viewer", "operator", "editor"]


class SpaceCreate(Wire):
    name: str = Field(min_length=1, max_length=NAME_MAX)
    description: str = Field("", max_length=64 * 1024)


class SpaceUpdate(Wire):
    """PUT: ``name`` is required; a description left out keeps its value."""

    name: str = Field(min_length=1, max_length=NAME_MAX)
    description: str | None = Field(None, max_length=64 * 1024)


class SpacePublic(Wire):
    id: str
    name: str
    description: str
    is_default: bool = Field(description="The tenant's default space: every user of the tenant belongs to it.")
    owner_id: str
    role: SpaceRole | None = Field(None, description="The caller's role in the space (none: not a member).")
    created_at: datetime
    updated_at: datetime


class SpaceMemberUpdate(Wire):
    role: SpaceRole = "editor"


class SpaceMemberPublic(Wire):
    user_id: str
    user_name: str
    role: SpaceRole
    created_at: datetime
