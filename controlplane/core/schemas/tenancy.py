"""A tenant's own things on the wire: API tokens, variables and secrets, notifications."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from controlplane.core.schemas.wire import Wire


class TokenCreate(Wire):
    user: str = Field(min_length=1, max_length=128)
    role: str = "developer"
    description: str = Field("", max_length=256)


class TokenPublic(Wire):
    id: str
    token: str
    user_id: str
    role: str
    tenant_id: str


class VariableUpdate(Wire):
    value: str = Field(description="The value (a secret's is never returned once written).")


class VariablePublic(Wire):
    name: str = Field(description="Without the sandbox prefix; runs see it as JETQUERY_<name>.")
    value: str
    version: int = Field(description="Writes of this name so far (1 when created).")
    created_at: datetime
    updated_at: datetime


class SecretPublic(Wire):
    name: str = Field(description="Without the sandbox prefix; runs see it as JETQUERY_<name>.")
    version: int = Field(description="Writes of this name so far: a PUT again rotates it.")
    key_id: str = Field(description="Fingerprint of the encryption key it is stored under.")
    masked: bool = Field(description="Whether run output masks it (values of 4 bytes or more).")
    created_at: datetime
    updated_at: datetime


class VariableListPublic(Wire):
    data: list[VariablePublic]


class SecretListPublic(Wire):
    data: list[SecretPublic]


class ReEncryptionPublic(Wire):
    re_encrypted: int = Field(description="Secrets now stored under the current (first) key.")
    key_id: str = Field(description="Fingerprint of the current key.")


class NotificationPublic(Wire):
    id: str
    kind: str = Field(description="What it is about: process.job (a processes job ended).")
    title: str
    body: str
    run_id: str | None = None
    created_at: datetime
    read_at: datetime | None = None
    read: bool


class NotificationListPublic(Wire):
    data: list[NotificationPublic]
