"""Seed 001's processes over our automations: a process is an automation, its value the name's lowercase slug,
an AD_PInstance a run (AD_PInstance_ID = the run id).

What a script produces for the caller (the language-neutral convention; A020-report-demo shows it):

* ``summary``: the text of ``$JETQUERY_OUTPUTS/process/summary.txt`` (UTF-8, at most 2000 characters);
  without it, "" when the run succeeded, else the run's first error (title and detail).
* ``logs``: the non-empty lines the script wrote on stdout (at most 1000, each cut to 2000 characters).
* ``reportFile``/``reportFileName``/``reportFileLength``: the file the script wrote into
  ``$JETQUERY_OUTPUTS/process/report/`` (its name is reportFileName; the first by name when several),
  base64; ``exportFile``/``exportFileName``/``exportFileLength`` likewise from ``process/export/``.
  They are ordinary artifacts of the run too.
* ``isError``: the run did not end finished (or finished with warnings); ``nodeId``: the replica that ran it.

The request body's parameters are checked against the automation's declared parameters
(services/automations/parameters.py); report-type (HTML, CSV, XLS, PDF; default PDF), is-summary, print-format-id,
table-id, model-name and record-id reach the script as JETQUERY_REPORT_TYPE, ... and in its JSON input.
"""

from __future__ import annotations

import base64
import json
import re
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from controlplane.core.auth import Permission, Principal
from controlplane.core.errors import Code, Conflict, NotFound
from controlplane.core.filters import ListQuery
from controlplane.core.schemas.automations import AutomationPublic
from controlplane.core.states import TERMINAL, RunContext, RunStatus
from controlplane.db.tables import Automation, Run
from controlplane.dialects.processes import odata
from controlplane.dialects.processes.schemas import ProcessPublic, ProcessResultPublic
from controlplane.services.automations import parameters
from controlplane.services.runs.surface import Surface
from controlplane.store import processes as store
from controlplane.store import runs as run_store

SUMMARY_PATH = "process/summary.txt"
REPORT_DIR = "process/report/"
EXPORT_DIR = "process/export/"
FILTER_FIELDS = frozenset({"name", "value", "description"})
MAX_LOG_LINES = 1000
MAX_TEXT = 2000
LOG_READ_BYTES = 1024 * 1024
OK = frozenset({RunStatus.FINISHED, RunStatus.FINISHED_WITH_WARNINGS})
REFERENCE = {
    "string": "String",
    "integer": "Integer",
    "number": "Number",
    "boolean": "Yes-No",
    "date": "Date",
    "datetime": "Date+Time",
    "list": "List",
}


def slug(name: str) -> str:
    """The process value of an automation name: lower case, other characters than a-z 0-9 _ . - become '-'."""
    return re.sub(r"[^a-z0-9_.-]+", "-", name.strip().lower()).strip("-")


def iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def process_record(a: AutomationPublic, *, with_parameters: bool) -> ProcessPublic:
    """An automation as an AD_Process PO JSON record."""
    out: dict[str, Any] = {
        "id": a.id,
        "uid": a.id,
        "Value": slug(a.name),
        "Name": a.name,
        "Description": a.description,
        "Help": "",
        "IsActive": a.state.value == "available",
        "EntityType": "U",
        "Updated": iso(a.updated_at),
        "model-name": "ad_process",
    }
    if with_parameters:
        out["parameters"] = [
            {
                "id": f"{a.id}:{p.name}",
                "Name": p.name,
                "ColumnName": p.name,
                "Description": p.description,
                "SeqNo": (i + 1) * 10,
                "IsMandatory": p.mandatory,
                "DefaultValue": p.default,
                "AD_Reference_ID": {"identifier": REFERENCE[p.type], "model-name": "ad_reference"},
                "type": p.type,
                "model-name": "ad_process_para",
            }
            for i, p in enumerate(a.parameters)
        ]
    return ProcessPublic.model_validate(out)


def body_object(body: bytes) -> dict[str, Any]:
    """The request body as the process parameters (a JSON object; empty means none)."""
    return parameters.parse_object(body)


def run_input(automation: Automation, values: dict[str, Any]) -> bytes:
    """The parameters checked against the automation's declarations (every problem listed), report-type
    defaulting to PDF, as the run's JSON input."""
    values = dict(values)
    values.setdefault("report-type", "PDF")
    declared = list(automation.parameters or [])
    checked = parameters.validate(declared, values, strict=bool(declared))
    return json.dumps(checked, separators=(",", ":")).encode()


class ProcessService(Surface):
    async def visible(self, principal: Principal) -> list[AutomationPublic]:
        """Every automation the caller sees (their spaces, the default space, their own)."""
        principal.require(Permission.READ)
        out: list[AutomationPublic] = []
        cursor: str | None = None
        while True:
            items, page = await self.automations.search(principal, ListQuery(sort="+name", limit=100, cursor=cursor))
            out += items
            if page.next is None:
                return out
            cursor = page.next.encode()

    async def search(self, principal: Principal, filter_text: str | None) -> list[ProcessPublic]:
        predicate = odata.parse(filter_text, FILTER_FIELDS)
        out = []
        for a in await self.visible(principal):
            if predicate({"name": a.name, "value": slug(a.name), "description": a.description}):
                out.append(process_record(a, with_parameters=False))
        return out

    async def find(self, principal: Principal, value: str, permission: Permission) -> Automation:
        """The automation whose slug (or exact name) is ``value``: 404 when none the caller sees, 409 when the
        slug names several."""
        principal.require(permission)
        async with self.sessions() as s:
            names = await store.automation_names(s, principal.tenant_id)
            exact = [i for i, n in names if n == value]
            ids = exact or [i for i, n in names if slug(n) == value.lower()]
            found = [a for i in ids if (a := await self.runs.seen(s, principal, i, permission)) is not None]
        if not found:
            raise NotFound(f"no process {value!r}", code=Code.PROCESS_NOT_FOUND)
        if len(found) > 1:
            raise Conflict(
                f"process value {value!r} names {len(found)} automations ({', '.join(a.name for a in found)}); "
                "rename one",
                code=Code.PROCESS_AMBIGUOUS,
            )
        return found[0]

    async def get(self, principal: Principal, value: str) -> ProcessPublic:
        automation = await self.find(principal, value, Permission.READ)
        return process_record(await self.automations.get(principal, automation.id), with_parameters=True)

    async def start(self, principal: Principal, value: str, values: dict[str, Any], *, wait: bool) -> Run:
        """A run of process ``value`` with these parameters: synchronous and waited for (``wait``), or queued
        in the background (a job)."""
        automation = await self.find(principal, value, Permission.RUN)
        return await self.runs.run_and_collect(
            principal,
            automation.id,
            context=RunContext.API_SYNC if wait else RunContext.API_ASYNC,
            input_data=run_input(automation, values),
            input_content_type="application/json",
            title=f"process {slug(automation.name)}",
        )

    async def run(self, principal: Principal, value: str, body: bytes) -> ProcessResultPublic:
        """POST /processes/{value}: run and wait, then the seed's answer."""
        values = body_object(body)
        values.pop("notification-type", None)  # a job's option; a synchronous caller is its own notification
        run = await self.start(principal, value, values, wait=True)
        async with self.sessions() as s:
            automation = await self.automations.load(s, principal, run.automation_id, Permission.READ)
            return await self.result(s, run, slug(automation.name))

    async def result(self, s: AsyncSession, run: Run, process: str) -> ProcessResultPublic:
        """The seed's run answer for a (finished) run."""
        status = RunStatus(run.status)
        is_error = status not in OK
        summary = ""
        art = await run_store.get_artifact(s, run.id, SUMMARY_PATH)
        if art is not None:
            summary = bytes(art.data).decode("utf-8", errors="replace").strip()[:MAX_TEXT]
        if not summary and is_error:
            if status not in TERMINAL:
                summary = f"the process is still {status.value}; see /api/v1/processes/jobs/{run.id}"
            else:
                first = (run.errors or [{}])[0]
                summary = " - ".join(str(x) for x in (first.get("title"), first.get("detail")) if x) or status.value
        out, _ = await run_store.read_log(s, run.id, "stdout", max_bytes=LOG_READ_BYTES)
        lines = [ln.rstrip("\r")[:MAX_TEXT] for ln in out.decode("utf-8", errors="replace").split("\n")]
        body: dict[str, Any] = {
            "AD_PInstance_ID": run.id,
            "process": process,
            "summary": summary,
            "isError": is_error,
            "nodeId": run.claimed_by or "",
            "logs": [ln for ln in lines if ln.strip()][:MAX_LOG_LINES],
        }
        paths = [p for p, *_ in await run_store.artifact_meta(s, run.id)]
        for prefix, key in ((REPORT_DIR, "report"), (EXPORT_DIR, "export")):
            chosen = next((p for p in paths if p.startswith(prefix)), None)
            if chosen is None:
                continue
            art = await run_store.get_artifact(s, run.id, chosen)
            if art is None:
                continue
            data = bytes(art.data)
            body[f"{key}File"] = base64.b64encode(data).decode("ascii")
            body[f"{key}FileName"] = chosen[len(prefix) :]
            body[f"{key}FileLength"] = len(data)
        return ProcessResultPublic.model_validate(body)
