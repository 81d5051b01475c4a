"""From a request body to an automation row: every rule a stored automation must satisfy (paths, env,
limits, code, parameters, schedules), and the version spec that decides when a new version is frozen."""

from __future__ import annotations

from typing import Any

from controlplane.core.errors import Code, ValidationFailed
from controlplane.core.schemas.automations import AutomationBase
from controlplane.core.settings import Settings
from controlplane.core.states import RunMode, Runtime
from controlplane.db.tables import Automation, Schedule, utcnow
from controlplane.services.automations import limits, parameters
from controlplane.services.execution.spec import reserved_names
from controlplane.services.scheduling import ticks as schedules

DEFAULT_ENTRY = {Runtime.PYTHON: "main.py", Runtime.SHELL: "main.sh"}
DEFAULT_MAX_CONCURRENT = 10


def check_path(path: str) -> None:
    parts = path.split("/")
    if (
        not path
        or len(path) > 256
        or "\x00" in path
        or "\\" in path
        or path.startswith("/")
        or len(parts) > 16
        or any(p in ("", ".", "..") for p in parts)
    ):
        raise ValidationFailed(
            f"file path {path!r} must be relative, without '..' or empty parts", code=Code.INVALID_PATH
        )


def apply(
    settings: Settings,
    row: Automation,
    body: AutomationBase,
    given: set[str],
    tenant_settings: dict[str, Any],
    *,
    creating: bool,
) -> None:
    if "description" in given:
        row.description = body.description
    if "workspace" in given or creating:
        row.workspace = body.workspace
    if "runtime" in given or creating:
        row.runtime = body.runtime.value
    if "args" in given or creating:
        row.args = list(body.args)
    if "env" in given or creating:
        clash = sorted(set(body.env) & reserved_names(settings))
        if clash:
            raise ValidationFailed(
                f"env may not set the platform's variables: {', '.join(clash)}", code=Code.RESERVED_ENV
            )
        row.env = dict(body.env)
    if "network" in given or creating:
        row.network = body.network.value
    if "timeout_seconds" in given or creating:
        row.timeout_seconds = body.timeout_seconds
    if "resources" in given or creating:
        row.resources = body.resources.model_dump(by_alias=True, exclude_none=True)
    if "parameters" in given or creating:
        row.parameters = parameters.check_declarations(body.parameters)
    limits.check_request(settings, tenant_settings, row.resources or {}, row.timeout_seconds)
    _apply_concurrency(row, body, tenant_settings, creating=creating)
    _apply_code(settings, row, body, given, creating=creating)
    if body.run_mode is not None:
        row.run_mode = body.run_mode.value
    elif creating or "schedules" in given:
        row.run_mode = (RunMode.SCHEDULED if body.schedules else RunMode.MANUAL).value


def _apply_concurrency(
    row: Automation, body: AutomationBase, tenant_settings: dict[str, Any], *, creating: bool
) -> None:
    """maxConcurrentRuns: at most the tenant's maxConcurrentRunsPerAutomation, which is also the default."""
    cap = int(tenant_settings.get("maxConcurrentRunsPerAutomation", DEFAULT_MAX_CONCURRENT))
    if body.max_concurrent_runs is not None:
        if body.max_concurrent_runs > cap:
            raise ValidationFailed(
                f"maxConcurrentRuns {body.max_concurrent_runs} is above the tenant's "
                f"maxConcurrentRunsPerAutomation of {cap}",
                code=Code.LIMIT_EXCEEDED,
            )
        row.max_concurrent_runs = body.max_concurrent_runs
    elif creating:
        row.max_concurrent_runs = cap


def _apply_code(settings: Settings, row: Automation, body: AutomationBase, given: set[str], *, creating: bool) -> None:
    code_given = body.code is not None
    files_given = body.files is not None
    if code_given and files_given:
        raise ValidationFailed("give either 'code' or 'files', not both", code=Code.INVALID_CODE)
    if creating and not (code_given or files_given):
        raise ValidationFailed(
            "an automation needs 'code' (one file) or 'files' + 'entrypoint'", code=Code.INVALID_CODE
        )
    if code_given:
        entry = body.entrypoint or DEFAULT_ENTRY[Runtime(row.runtime)]
        files = {entry: body.code or ""}
    elif files_given:
        files = dict(body.files or {})
        entry = body.entrypoint or ""
        if not files:
            raise ValidationFailed("'files' is empty", code=Code.INVALID_CODE)
        if not entry:
            raise ValidationFailed("'files' needs an 'entrypoint' naming one of them", code=Code.INVALID_CODE)
    else:
        files = dict(row.files)
        entry = body.entrypoint if "entrypoint" in given and body.entrypoint else row.entrypoint
    for path in files:
        check_path(path)
    check_path(entry)
    if entry not in files:
        raise ValidationFailed(f"entrypoint {entry!r} is not among the files", code=Code.INVALID_CODE)
    size = sum(len(p.encode()) + len(c.encode()) for p, c in files.items())
    if size > settings.code_max_bytes:
        raise ValidationFailed(
            f"the files total {size} bytes, above the limit of {settings.code_max_bytes}",
            code=Code.CODE_TOO_LARGE,
        )
    row.files = files
    row.entrypoint = entry


def schedules_of(body: AutomationBase) -> list[Schedule]:
    now = utcnow()
    out = []
    for sch in body.schedules:
        schedules.zone(sch.timezone)
        if sch.cron is not None:
            schedules.check_cron(sch.cron)
        start = _aware(sch.start_at, sch.timezone)
        stop = _aware(sch.stop_at, sch.timezone)
        if start and stop and stop <= start:
            raise ValidationFailed("a schedule's stopAt must be after its startAt", code=Code.INVALID_SCHEDULE)
        nxt = schedules.next_fire(
            cron=sch.cron, interval=sch.interval, tz=sch.timezone, start_at=start, stop_at=stop, after=now
        )
        out.append(
            Schedule(
                cron=sch.cron,
                interval=sch.interval,
                start_at=start,
                stop_at=stop,
                timezone=sch.timezone,
                next_run_at=nxt,
            )
        )
    return out


def _aware(value: Any, tz: str) -> Any:
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=schedules.zone(tz))


def spec_of(row: Automation) -> dict[str, Any]:
    return {
        "runtime": row.runtime,
        "entrypoint": row.entrypoint,
        "files": dict(row.files),
        "args": list(row.args or []),
        "env": dict(row.env or {}),
        "timeoutSeconds": row.timeout_seconds,
        "resources": dict(row.resources or {}),
        "network": row.network,
        "parameters": list(row.parameters or []),
    }


def snapshot(row: Automation) -> tuple[Any, ...]:
    return (
        row.name,
        row.description,
        row.space_id,
        row.workspace,
        row.max_concurrent_runs,
        row.run_mode,
        spec_of(row),
    )


def schedule_key(row: Schedule) -> tuple[Any, ...]:
    return (row.cron, row.interval, row.start_at, row.stop_at, row.timezone)
