"""Resource limits: settings give defaults and maxima, a tenant may lower its maxima, an automation asks
for what it needs within them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from controlplane.backends.base import Resources
from controlplane.core.errors import Code, ValidationFailed
from controlplane.core.settings import Settings


@dataclass(frozen=True)
class Maxima:
    cpus: float
    memory_mb: int
    pids: int
    timeout_seconds: int


def tenant_maxima(settings: Settings, tenant_settings: dict[str, Any] | None) -> Maxima:
    t = (tenant_settings or {}).get("limits", {})
    return Maxima(
        cpus=min(float(t.get("maxCpus", settings.max_cpus)), settings.max_cpus),
        memory_mb=min(int(t.get("maxMemoryMb", settings.max_memory_mb)), settings.max_memory_mb),
        pids=min(int(t.get("maxPids", settings.max_pids)), settings.max_pids),
        timeout_seconds=settings.background_timeout_seconds,
    )


def check_request(
    settings: Settings, tenant_settings: dict[str, Any] | None, resources: dict[str, Any], timeout: int | None
) -> None:
    """Raise ValidationFailed listing every limit the automation asks beyond (never clip silently)."""
    mx = tenant_maxima(settings, tenant_settings)
    problems = []
    if timeout is not None and timeout > mx.timeout_seconds:
        problems.append(
            f"timeoutSeconds {timeout} is above the maximum of {mx.timeout_seconds} seconds "
            "(CP_BACKGROUND_TIMEOUT_SECONDS)"
        )
    for key, cap, unit in (("cpus", mx.cpus, "CPUs"), ("memoryMb", mx.memory_mb, "MB"), ("pids", mx.pids, "pids")):
        value = resources.get(key)
        if value is not None and value > cap:
            problems.append(f"resources.{key} {value} is above this tenant's maximum of {cap} {unit}")
    if problems:
        raise ValidationFailed("; ".join(problems), code=Code.LIMIT_EXCEEDED, title="The automation asks too much")


def effective(settings: Settings, tenant_settings: dict[str, Any] | None, resources: dict[str, Any]) -> Resources:
    mx = tenant_maxima(settings, tenant_settings)
    return Resources(
        cpus=min(float(resources.get("cpus") or settings.default_cpus), mx.cpus),
        memory_mb=min(int(resources.get("memoryMb") or settings.default_memory_mb), mx.memory_mb),
        pids=min(int(resources.get("pids") or settings.default_pids), mx.pids),
        tmp_mb=settings.tmp_size_mb,
        work_mb=settings.work_size_mb,
        nofile=settings.nofile_limit,
    )
