"""The wire's building blocks: the camelCase base model, list pages with their links, the error envelope."""

from __future__ import annotations

import re
from typing import Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

NAME_MAX = 128


ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")


class Wire(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


class Href(Wire):
    href: str


class Links(Wire):
    next: Href | None = None
    prev: Href | None = None


T = TypeVar("T")


class Page(Wire, Generic[T]):
    data: list[T]
    links: Links = Field(default_factory=Links)


class ErrorEntry(Wire):
    code: str
    title: str
    detail: str | None = None


class ErrorBody(Wire):
    errors: list[ErrorEntry]
    trace_id: str
