"""Tenant variables and secrets: what an admin configures once and every run of the tenant receives.

Both reach runs as ``<prefix><NAME>`` (``JETQUERY_<NAME>``, seed 000's "all environment variables starting
with JETQUERY_"). Variables are stored in clear and shown to admins; secrets are encrypted at rest with
Fernet (``cryptography``) and never returned once written - listing shows names, versions, times and the
fingerprint of the key each is stored under. Writing a name again rotates it (version + 1).

Keys: ``CP_SECRETS_KEYS`` holds one or more Fernet keys, comma-separated; ``MultiFernet`` encrypts with the
first and decrypts with any, so a key is rotated by putting a new one first and re-encrypting
(``controlplane secrets re-encrypt``, or POST /api/v1/secrets/actions/re-encrypt for one tenant). Without
the setting one key is generated into DATA_DIR/secrets-key (mode 0600) on first use, and the log says so.

Every decrypted or written secret value is also handed to the log redactor (services/execution/masking.py), and the
run engine masks a run's secrets in everything the run leaves behind.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from controlplane.core.auth import Permission, Principal
from controlplane.core.errors import (
    Code,
    Conflict,
    NotFound,
    SecretsKeyInvalid,
    SecretUnreadable,
    ValidationFailed,
)
from controlplane.core.schemas.tenancy import SecretPublic, VariablePublic
from controlplane.core.settings import Settings
from controlplane.db.session import transaction
from controlplane.db.tables import TenantVariable, utcnow
from controlplane.services.execution.masking import MIN_MASKED_LENGTH, REDACTOR
from controlplane.store import secrets as store

log = logging.getLogger("controlplane.secrets")

KEY_FILE = "secrets-key"
NAME = re.compile(r"^[A-Z][A-Z0-9_]{0,63}$")
VARIABLE_MAX = 32 * 1024  # characters of a variable's value
SECRET_MAX = 4 * 1024  # characters of a secret's value (the masker holds back about 4/3 of this)
PER_TENANT_MAX = 256  # variables and secrets together
# seed 000: JETQUERY_DSN "if not provided, it is generated automatically": from these, when DSN_SERVER is set
DSN_PARTS = (("SERVER", "DSN_SERVER"), ("DATABASE", "DSN_DATABASE"), ("UID", "DSN_UID"), ("PWD", "DSN_PWD"))
CONFIGURABLE_RESERVED = {"DSN"}  # the one platform variable a tenant may set itself


def key_id(key: bytes) -> str:
    return hashlib.sha256(key.strip()).hexdigest()[:12]


class Keyring:
    """The configured Fernet keys: the first encrypts, every one decrypts."""

    def __init__(self, keys: list[bytes]) -> None:
        if not keys:
            raise SecretsKeyInvalid("no key given")
        try:
            fernets = [Fernet(k) for k in keys]
        except (ValueError, TypeError) as exc:
            raise SecretsKeyInvalid(
                "each key must be 32 url-safe base64-encoded bytes (Fernet.generate_key())"
            ) from exc
        self._fernet = MultiFernet(fernets)
        self.current_id = key_id(keys[0])
        self.ids = [key_id(k) for k in keys]

    def encrypt(self, value: str) -> bytes:
        return self._fernet.encrypt(value.encode())

    def decrypt(self, token: bytes) -> str:
        try:
            return self._fernet.decrypt(token).decode()
        except InvalidToken as exc:
            raise SecretUnreadable("none of the keys in CP_SECRETS_KEYS decrypts it (was its key removed?)") from exc

    def rotate(self, token: bytes) -> bytes:
        try:
            return self._fernet.rotate(token)
        except InvalidToken as exc:
            raise SecretUnreadable("none of the keys in CP_SECRETS_KEYS decrypts it (was its key removed?)") from exc


def keyring(settings: Settings) -> Keyring:
    configured = settings.secrets_keys.get_secret_value() if settings.secrets_keys is not None else None
    return _keyring(configured, str(Path(settings.data_dir).resolve()))


@lru_cache(maxsize=8)
def _keyring(configured: str | None, data_dir: str) -> Keyring:
    if configured is not None:
        return Keyring([k.strip().encode() for k in configured.split(",") if k.strip()])
    path = Path(data_dir) / KEY_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        key = Fernet.generate_key()
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process made it first: use theirs
            pass
        else:
            with os.fdopen(fd, "wb") as fh:
                fh.write(key + b"\n")
            log.warning(
                "CP_SECRETS_KEYS is unset: generated a secrets key into %s (mode 0600); back it up, secrets "
                "cannot be read without it, and give every replica the same key",
                path,
            )
    return Keyring([path.read_bytes().strip()])


def check_name(settings: Settings, name: str) -> str:
    """A name as runs see it after the prefix: upper case, digits, underscore; not one of the platform's."""
    from controlplane.services.execution.spec import RESERVED  # sandbox_spec imports this module

    prefix = settings.sandbox_env_prefix
    if prefix and name.upper().startswith(prefix.upper()):
        raise ValidationFailed(
            f"give the name without the {prefix} prefix: runs see {name!r} as {prefix}<name>", code=Code.INVALID_NAME
        )
    if not NAME.fullmatch(name):
        raise ValidationFailed(
            "a name is 1-64 characters of A-Z, 0-9 and _, starting with a letter", code=Code.INVALID_NAME
        )
    if name in RESERVED and name not in CONFIGURABLE_RESERVED:
        raise ValidationFailed(f"{prefix}{name} is set by the platform for every run", code=Code.RESERVED_NAME)
    return name


def _check_value(value: str, *, secret: bool) -> None:
    limit = SECRET_MAX if secret else VARIABLE_MAX
    if len(value) > limit:
        raise ValidationFailed(f"the value is longer than {limit} characters", code=Code.VALUE_TOO_LONG)
    if "\x00" in value:
        raise ValidationFailed("an environment variable cannot hold a NUL character", code=Code.INVALID_VALUE)


def variable_public(row: TenantVariable) -> VariablePublic:
    return VariablePublic(
        name=row.name, value=row.value or "", version=row.version, created_at=row.created_at, updated_at=row.updated_at
    )


def secret_public(row: TenantVariable) -> SecretPublic:
    return SecretPublic(
        name=row.name,
        version=row.version,
        key_id=row.key_id or "",
        masked=row.masked,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


@dataclass(frozen=True)
class RunValues:
    """What a run gets from its tenant's configuration: names (no prefix) to values, and which are secret."""

    env: dict[str, str] = field(default_factory=dict)
    secrets: tuple[str, ...] = ()


async def run_values(settings: Settings, session: AsyncSession, tenant_id: str) -> RunValues:
    rows = await store.list_for(session, tenant_id)
    ring = keyring(settings) if any(r.is_secret for r in rows) else None
    env: dict[str, str] = {}
    secret_values: list[str] = []
    for row in rows:
        if row.is_secret and ring is not None:
            value = ring.decrypt(row.ciphertext or b"")
            secret_values.append(value)
        else:
            value = row.value or ""
        env[row.name] = value
    REDACTOR.add(secret_values)
    return RunValues(env=env, secrets=tuple(secret_values))


def build_dsn(values: dict[str, str]) -> str | None:
    """Seed 000's generated DSN, ``SERVER=...;DATABASE=...;UID=...;PWD=...;Trusted_Connection=no;`` (the script
    adds its DRIVER=...), from the tenant's DSN_SERVER, DSN_DATABASE, DSN_UID and DSN_PWD; None without a server."""
    if not values.get("DSN_SERVER"):
        return None
    parts = [f"{key}={_odbc_value(values[name])};" for key, name in DSN_PARTS if values.get(name)]
    parts.append("Trusted_Connection=no;" if values.get("DSN_UID") else "Trusted_Connection=yes;")
    return "".join(parts)


def _odbc_value(value: str) -> str:
    """ODBC connection-string quoting: a value with ; { } or edge spaces goes in braces, '}' doubled."""
    if any(c in value for c in ";{}") or value != value.strip():
        return "{" + value.replace("}", "}}") + "}"
    return value


class SecretService:
    """The admin API's operations on one tenant's variables (``secret=False``) or secrets (``secret=True``)."""

    def __init__(self, settings: Settings, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.settings = settings
        self.sessions = sessions

    def _public(self, row: TenantVariable) -> VariablePublic | SecretPublic:
        return secret_public(row) if row.is_secret else variable_public(row)

    async def list(self, principal: Principal, *, secret: bool) -> list[VariablePublic | SecretPublic]:
        principal.require(Permission.ADMIN)
        async with self.sessions() as s:
            return [self._public(r) for r in await store.list_for(s, principal.tenant_id, secret=secret)]

    async def get(self, principal: Principal, name: str, *, secret: bool) -> VariablePublic | SecretPublic:
        principal.require(Permission.ADMIN)
        async with self.sessions() as s:
            row = await store.get(s, principal.tenant_id, name)
        if row is None or row.is_secret != secret:
            raise NotFound(f"no {'secret' if secret else 'variable'} named {name!r}")
        return self._public(row)

    async def put(
        self, principal: Principal, name: str, value: str, *, secret: bool
    ) -> tuple[VariablePublic | SecretPublic, bool]:
        """Create or replace (rotate) ``name``. Returns its public form and whether it was created."""
        principal.require(Permission.ADMIN)
        check_name(self.settings, name)
        _check_value(value, secret=secret)
        for attempt in range(3):  # two first writes of one name race: the loser updates what the winner made
            try:
                return await self._put(principal, name, value, secret=secret)
            except IntegrityError:
                if attempt == 2:
                    raise Conflict(f"{name!r} is being written concurrently; try again", code=Code.BUSY) from None
        raise AssertionError("unreachable")

    async def _put(
        self, principal: Principal, name: str, value: str, *, secret: bool
    ) -> tuple[VariablePublic | SecretPublic, bool]:
        kind = "secret" if secret else "variable"
        ring = keyring(self.settings) if secret else None
        now = utcnow()
        async with transaction(self.sessions) as s:
            row = await store.get(s, principal.tenant_id, name, for_update=True)
            created = row is None
            if row is None:
                if await store.count(s, principal.tenant_id) >= PER_TENANT_MAX:
                    raise Conflict(
                        f"a tenant may have at most {PER_TENANT_MAX} variables and secrets", code=Code.TOO_MANY
                    )
                row = TenantVariable(tenant_id=principal.tenant_id, name=name, is_secret=secret, version=0)
                row.created_at = now
            elif row.is_secret != secret:
                other = "a secret" if row.is_secret else "a variable"
                raise Conflict(f"{name!r} is {other}; delete it first to make it a {kind}", code=Code.NAME_TAKEN)
            # an atomic increment: SQLite has no row lock for the read above, so two writers may both have
            # read the same version; the UPDATE's own ``version + 1`` counts each write once
            row.version = 1 if created else TenantVariable.version + 1
            row.updated_at = now
            if ring is not None:
                REDACTOR.add([value])  # from now on this process's log never shows it
                row.ciphertext = ring.encrypt(value)
                row.key_id = ring.current_id
                row.masked = len(value.encode()) >= MIN_MASKED_LENGTH
            else:
                row.value = value
                row.masked = False
            if created:
                await store.add(s, row)
            await s.flush()
            await s.refresh(row, ["version"])
            public = self._public(row)
        log.info(
            "tenant %s: %s %s %s (version %d)",
            principal.tenant_name,
            kind,
            name,
            "created" if created else "updated",
            row.version,
        )
        return public, created

    async def delete(self, principal: Principal, name: str, *, secret: bool) -> None:
        principal.require(Permission.ADMIN)
        async with transaction(self.sessions) as s:
            row = await store.get(s, principal.tenant_id, name, for_update=True)
            if row is None or row.is_secret != secret:
                raise NotFound(f"no {'secret' if secret else 'variable'} named {name!r}")
            await store.remove(s, principal.tenant_id, name)

    async def re_encrypt(self, principal: Principal | None = None, *, batch: int = 200) -> int:
        """Store every secret (of the principal's tenant, or of every tenant when None) under the first key;
        returns how many were under another key. Safe to repeat and to interrupt (each batch commits)."""
        if principal is not None:
            principal.require(Permission.ADMIN)
        ring = keyring(self.settings)
        done = 0
        after = ""
        while True:
            async with transaction(self.sessions) as s:
                tenant = principal.tenant_id if principal is not None else None
                rows = await store.secrets_batch(s, tenant_id=tenant, after_id=after, limit=batch)
                for row in rows:
                    if row.key_id != ring.current_id:
                        row.ciphertext = ring.rotate(row.ciphertext or b"")
                        row.key_id = ring.current_id
                        done += 1
                    after = row.id
            if len(rows) < batch:
                break
        log.info("re-encrypted %d secret(s) under key %s", done, ring.current_id)
        return done
