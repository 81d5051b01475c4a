"""The automations directory (seed 000): ``automations/A###-Name/automation.json`` plus the script's files.

``sync`` loads every such folder into a tenant, idempotently: new folders are created, changed ones updated
(a new version), unchanged ones left alone. A folder whose name is not ``A###-Name``, whose automation.json
is not valid, or whose files are not text is reported with a clear reason and skipped; the others load.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from controlplane.core.auth import Principal
from controlplane.core.errors import ControlPlaneError
from controlplane.core.schemas.automations import AutomationCreate, AutomationUpdate
from controlplane.services.automations.body import spec_of
from controlplane.services.automations.service import AutomationService
from controlplane.store import automations as store

NAME = re.compile(r"^A\d{3}-[A-Za-z0-9][A-Za-z0-9_.-]{0,120}$")
MANIFEST = "automation.json"
SKIP = {"__pycache__", ".git", ".DS_Store"}
ALLOWED_KEYS = {
    "description",
    "runtime",
    "entrypoint",
    "args",
    "env",
    "timeoutSeconds",
    "resources",
    "network",
    "schedules",
    "maxConcurrentRuns",
    "runMode",
    "parameters",
}


@dataclass
class SyncReport:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)

    def summary(self) -> str:
        text = (
            f"{len(self.created)} created, {len(self.updated)} updated, "
            f"{len(self.unchanged)} unchanged, {len(self.errors)} rejected"
        )
        for name, why in sorted(self.errors.items()):
            text += f"\n  {name}: {why}"
        return text


def read_folder(folder: Path, max_bytes: int) -> dict[str, Any]:
    """The create body for one folder; raises ValueError with a reason a person can act on."""
    if not NAME.match(folder.name):
        raise ValueError("folder name must look like A001-YourAutomationName (A, three digits, dash, name)")
    manifest_path = folder / MANIFEST
    if not manifest_path.is_file():
        raise ValueError(f"missing {MANIFEST}")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"{MANIFEST} is not valid JSON: {exc}") from None
    if not isinstance(manifest, dict):
        raise ValueError(f"{MANIFEST} must be a JSON object")
    unknown = sorted(set(manifest) - ALLOWED_KEYS)
    if unknown:
        raise ValueError(
            f"unknown keys in {MANIFEST}: {', '.join(unknown)} (allowed: {', '.join(sorted(ALLOWED_KEYS))})"
        )
    files: dict[str, str] = {}
    total = 0
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        if any(part in SKIP or part.startswith(".") for part in rel.parts) or path.name == MANIFEST:
            continue
        if path.is_symlink():
            raise ValueError(f"{rel} is a symlink; automations may only contain regular files")
        if not path.is_file():
            continue
        raw = path.read_bytes()
        total += len(raw)
        if total > max_bytes:
            raise ValueError(f"files total more than {max_bytes} bytes")
        try:
            files[rel.as_posix()] = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError(f"{rel} is not UTF-8 text") from None
    runtime = manifest.get("runtime", "python")
    entry = manifest.get("entrypoint") or {"python": "main.py", "shell": "main.sh"}.get(runtime, "main.py")
    body = {k: v for k, v in manifest.items() if k != "entrypoint"}
    body.update(name=folder.name, files=files, entrypoint=entry)
    return body


async def sync(service: AutomationService, principal: Principal, directory: Path) -> SyncReport:
    report = SyncReport()
    if not directory.is_dir():
        report.errors[str(directory)] = "not a directory"
        return report
    for folder in sorted(p for p in directory.iterdir() if p.is_dir() and not p.name.startswith(".")):
        try:
            body = read_folder(folder, service.settings.code_max_bytes)
            async with service.sessions() as s:
                existing = await store.get_by_name(s, principal.tenant_id, folder.name)
                before = (spec_of(existing), existing.description) if existing else None
            if existing is None:
                await service.create(principal, AutomationCreate.model_validate(body), source="directory")
                report.created.append(folder.name)
                continue
            public = await service.update(principal, existing.id, AutomationUpdate.model_validate(body))
            async with service.sessions() as s:
                after_row = await store.get(s, principal.tenant_id, public.id)
                after = (spec_of(after_row), after_row.description) if after_row else None
            (report.unchanged if after == before else report.updated).append(folder.name)
        except ValidationError as exc:
            report.errors[folder.name] = "; ".join(
                f"{'.'.join(str(x) for x in e['loc'])}: {e['msg']}" for e in exc.errors()
            )
        except (ValueError, OSError) as exc:
            report.errors[folder.name] = str(exc)
        except ControlPlaneError as exc:
            report.errors[folder.name] = exc.detail or exc.title
    return report
