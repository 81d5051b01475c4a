"""Tokens (generated, hashed), the authenticated principal, and the role -> permission matrix."""

from __future__ import annotations

import enum
import hashlib
import hmac
import secrets
from dataclasses import dataclass

from controlplane.core.errors import Forbidden
from controlplane.core.states import Role

TOKEN_PREFIX = "cp_"


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """Tokens carry 256 random bits, so a fast hash is enough; only the hash is stored."""
    return hashlib.sha256(token.encode()).hexdigest()


def same_secret(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


class Permission(enum.StrEnum):
    READ = "read"  # automations, runs, logs, artifacts
    RUN = "run"  # start, stop, retry runs
    WRITE = "write"  # create, update, delete automations
    ADMIN = "admin"  # tokens, users, tenant settings, usage, list all


GRANTS: dict[Role, frozenset[Permission]] = {
    Role.VIEWER: frozenset({Permission.READ}),
    Role.OPERATOR: frozenset({Permission.READ, Permission.RUN}),
    Role.DEVELOPER: frozenset({Permission.READ, Permission.RUN, Permission.WRITE}),
    Role.ADMIN: frozenset(Permission),
}


@dataclass(frozen=True)
class Principal:
    tenant_id: str
    tenant_name: str
    user_id: str
    role: Role
    token_id: str
    run_id: str | None = None  # set for a run's own token

    def can(self, permission: Permission) -> bool:
        return permission in GRANTS[self.role]

    def require(self, permission: Permission) -> None:
        if not self.can(permission):
            raise Forbidden(f"role {self.role.value!r} may not {permission.value}")
