"""From a claimed run row to the ``RunSpec`` a backend launches: code version, env, limits.

The run's environment, later entries winning: the tenant's variables and secrets as ``<prefix><NAME>``
(services/tenancy/secrets.py), the automation's own env (more specific than the tenant's), then the platform's
variables under the sandbox prefix (``JETQUERY_`` by default, so seed-000 scripts run unchanged): TOKEN (a
per-run token, revoked when the run ends), HOST, RUN_ID, AUTOMATION_ID, TENANT, FILES, ARCHIVE, INPUT_FILE,
OUTPUTS and DSN. Nothing of the control plane's own environment is passed on.

DSN (seed 000: "if not provided, it is generated automatically"): the tenant's DSN variable or secret; else
the DSN set with ``controlplane tenants configure --dsn``; else one built from the tenant's DSN_SERVER,
DSN_DATABASE, DSN_UID and DSN_PWD (``SERVER=...;DATABASE=...;UID=...;PWD=...;Trusted_Connection=no;``,
the script adds its DRIVER); else none. The tenant's secret values travel with the prepared run so the
engine masks them in the run's output (also when a sandbox is re-attached after a restart).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from controlplane.backends.base import (
    LABEL_AUTOMATION,
    SANDBOX_ARCHIVE,
    SANDBOX_FILES,
    SANDBOX_INPUT,
    SANDBOX_OUTPUTS,
    Backend,
    RunSpec,
)
from controlplane.core.errors import Code, ControlPlaneError
from controlplane.core.settings import Settings
from controlplane.core.states import NetworkMode, Role
from controlplane.db.session import transaction
from controlplane.db.tables import Automation, Run, Tenant, utcnow
from controlplane.services.automations import limits, parameters
from controlplane.services.execution import claim
from controlplane.services.tenancy import secrets
from controlplane.store import automations as automation_store
from controlplane.store import runs as run_store
from controlplane.store import tenants as tenant_store

RESERVED = ("TOKEN", "HOST", "RUN_ID", "AUTOMATION_ID", "TENANT", "FILES", "ARCHIVE", "INPUT_FILE", "OUTPUTS", "DSN")


@dataclass(frozen=True)
class PreparedRun:
    spec: RunSpec
    synchronous: bool
    sandbox_name: str
    deadline_at: datetime | None
    tenant_name: str
    secrets: tuple[str, ...] = ()  # the tenant's secret values, masked in the run's output


def reserved_names(settings: Settings) -> set[str]:
    return {settings.sandbox_env_prefix + name for name in RESERVED}


def run_token_role(role: str) -> Role:
    """A run acts for whoever started it, but never with more than developer rights."""
    parsed = Role.parse(role)
    return Role.DEVELOPER if parsed == Role.ADMIN else parsed


async def prepare_run(
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    backend: Backend,
    run_id: str,
    *,
    attach: bool,
    claimed: bool = False,
    replica_id: str = "local",
) -> PreparedRun | None:
    """Make sure the run is this replica's to start (services/execution/claim.py) and build its spec, in one
    transaction. None when the run is not this replica's to start."""
    async with transaction(sessions) as s:
        run = await run_store.get_any(s, run_id)
        if run is None or not await claim.ours_to_start(
            s, run, attach=attach, claimed=claimed, replica_id=replica_id, backend=backend.name
        ):
            return None
        return await build(settings, s, backend, run, attach=attach)


async def build(settings: Settings, s: AsyncSession, backend: Backend, run: Run, *, attach: bool) -> PreparedRun:
    """The spec of a claimed run: its frozen version, the tenant's variables and secrets, a run token."""
    version = await automation_store.get_version(s, run.automation_id, run.automation_version)
    tenant = await tenant_store.get_tenant(s, run.tenant_id)
    automation = await automation_store.get(s, run.tenant_id, run.automation_id)
    if version is None or tenant is None or automation is None:
        raise ControlPlaneError("the run's automation version no longer exists", code=Code.AUTOMATION_GONE)
    spec: dict[str, Any] = version.spec
    network = NetworkMode(spec.get("network", "none"))
    configured = await secrets.run_values(settings, s, run.tenant_id)
    env = {} if attach else await _run_env(settings, s, backend, run, automation, tenant, spec, network, configured)
    files = {path: str(text).encode() for path, text in spec.get("files", {}).items()}
    run_spec = RunSpec(
        run_id=run.id,
        tenant_id=run.tenant_id,
        automation_id=run.automation_id,
        image=settings.sandbox_image,
        runtime=spec["runtime"],
        entrypoint=spec["entrypoint"],
        files=files,
        args=tuple(str(a) for a in run.args),
        env=env,
        input=run.input or b"",
        resources=limits.effective(settings, tenant.settings, spec.get("resources", {})),
        network=network,
        deadline_seconds=float(run.timeout_seconds),
        outputs_max_files=settings.artifacts_max_files,
        outputs_max_bytes=settings.artifacts_max_bytes,
        labels={LABEL_AUTOMATION: run.automation_id},
    )
    return PreparedRun(
        spec=run_spec,
        synchronous=run.synchronous,
        sandbox_name=settings.container_prefix + run.id,
        deadline_at=run.deadline_at,
        tenant_name=tenant.name,
        secrets=configured.secrets,
    )


async def _run_env(
    settings: Settings,
    s: AsyncSession,
    backend: Backend,
    run: Run,
    automation: Automation,
    tenant: Tenant,
    spec: dict[str, Any],
    network: NetworkMode,
    configured: secrets.RunValues,
) -> dict[str, str]:
    """The environment of a new run (a re-attached one already has its own): see the module docstring."""
    prefix = settings.sandbox_env_prefix
    env = {prefix + name: value for name, value in configured.env.items() if name not in RESERVED}
    env.update(spec.get("env", {}))
    user_id = run.executed_by_id or automation.owner_id
    user = await tenant_store.get_user(s, run.tenant_id, user_id)
    role = run_token_role(user.role if user else Role.VIEWER.value)
    _, token = await tenant_store.create_token(
        s,
        tenant_id=run.tenant_id,
        user_id=user.id if user else automation.owner_id,
        role=role.value,
        description=f"run {run.id}",
        run_id=run.id,
        expires_at=utcnow() + timedelta(seconds=run.timeout_seconds + settings.run_token_ttl_seconds),
    )
    dsn = configured.env.get("DSN") or (tenant.settings or {}).get("dsn") or secrets.build_dsn(configured.env)
    env.update(_platform_env(settings, backend, network, run.id, automation.id, tenant.name, token, dsn))
    env.update(parameters.run_env(prefix, spec.get("parameters"), run.input or b""))  # typed parameters
    return env


def _platform_env(
    settings: Settings,
    backend: Backend,
    network: NetworkMode,
    run_id: str,
    automation_id: str,
    tenant_name: str,
    token: str,
    dsn: str | None,
) -> dict[str, str]:
    prefix = settings.sandbox_env_prefix
    host = backend.api_host_for_runs(network) or urlsplit(settings.base_url).netloc
    env = {
        "TOKEN": token,
        "HOST": host,
        "RUN_ID": run_id,
        "AUTOMATION_ID": automation_id,
        "TENANT": tenant_name,
        "INPUT_FILE": SANDBOX_INPUT,
        "OUTPUTS": SANDBOX_OUTPUTS,
    }
    if settings.tenant_volumes:
        env["FILES"] = SANDBOX_FILES
        env["ARCHIVE"] = SANDBOX_ARCHIVE
    if dsn:
        env["DSN"] = str(dsn)
    return {prefix + k: v for k, v in env.items()}
