"""Seed 001's background jobs (/api/v1/processes/jobs) and what happens when one ends.

A job is a background run of a process (AD_PInstance_ID = the run id) plus a ``process_jobs`` row saying
how to tell its starter it ended: ``notification-type`` E (e-mail), N (a notification stored for the user,
GET /api/v1/notifications) or B (both); none: nobody is told. E-mail goes to ``notification-email`` when the
body gives one, else to the user's name when it is an e-mail address; without an address, or without an
SMTP server (CP_SMTP_HOST), E and B are refused (400) when the job is started, never silently dropped.

The moment a job ends is the run-end event of services/events/hooks.py (published once, by the replica that
finalized the run). Whoever notifies first claims the row with a compare-and-set on ``notified_at`` — the
event, or the starter itself when the run ended before its row was written — so each job notifies once;
the stored notification commits in the same transaction as the claim, the e-mail is sent after it (at most
once: a crash in between loses the e-mail, recorded as not sent).
"""

from __future__ import annotations

import base64
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from controlplane.core.auth import Permission, Principal
from controlplane.core.errors import BadRequest, Code, NotFound
from controlplane.core.settings import Settings
from controlplane.core.states import TERMINAL, RunStatus
from controlplane.db.session import transaction
from controlplane.db.tables import ProcessJob, Run, utcnow
from controlplane.dialects.processes.schemas import ProcessJobPublic
from controlplane.dialects.processes.service import OK, ProcessService, body_object, iso, slug
from controlplane.dialects.schemas import seed_json
from controlplane.services.events import hooks as run_hooks
from controlplane.services.events import notifications
from controlplane.store import automations as automation_store
from controlplane.store import processes as store
from controlplane.store import runs as run_store
from controlplane.store import tenants as tenant_store

NOTIFICATION_TYPES = {"E": "email", "N": "notification", "B": "both"}
UNFINISHED = (RunStatus.QUEUED, RunStatus.STARTING, RunStatus.RUNNING, RunStatus.MUST_STOP)
MAX_JOBS = 1000


def job_record(run: Run, name: str, job: ProcessJob | None) -> ProcessJobPublic:
    """A run as an AD_PInstance PO JSON record."""
    status = RunStatus(run.status)
    out: dict[str, Any] = {
        "id": run.id,
        "uid": run.id,
        "AD_PInstance_ID": run.id,
        "AD_Process_ID": {"id": run.automation_id, "identifier": name, "model-name": "ad_process"},
        "process": slug(name),
        "IsProcessing": status not in TERMINAL,
        "status": status.value,
        "AD_User_ID": {"id": run.executed_by_id, "model-name": "ad_user"},
        "Created": iso(run.created_at),
        "Updated": iso(run.updated_at),
        "jobStatus": f"/api/v1/processes/jobs/{run.id}",
        "model-name": "ad_pinstance",
    }
    if status in TERMINAL:
        out["Result"] = 1 if status in OK else 0
        first = (run.errors or [{}])[0]
        out["ErrorMsg"] = "" if status in OK else str(first.get("detail") or first.get("title") or status.value)
    if job is not None:
        out["NotificationType"] = job.notification_type
        out["notification"] = {"notifiedAt": iso(job.notified_at), "email": job.email_status}
    return ProcessJobPublic.model_validate(out)


class ProcessJobs:
    def __init__(
        self, settings: Settings, sessions: async_sessionmaker[AsyncSession], processes: ProcessService
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.processes = processes

    def start(self) -> None:
        run_hooks.subscribe(self._on_event)

    async def stop(self) -> None:
        run_hooks.unsubscribe(self._on_event)
        await run_hooks.drain(timeout=5.0)  # notifications in flight finish before the database goes

    async def _on_event(self, event: run_hooks.Event) -> None:
        if event.sessions is self.sessions and event.kind.is_run_end and event.run_id is not None:
            await self.notify(event.run_id)

    # --- the API ------------------------------------------------------------------------------------

    async def _recipient(self, principal: Principal, given: Any) -> str:
        if given is not None:
            if not isinstance(given, str) or "@" not in given or len(given) > 320 or "\n" in given:
                raise BadRequest("notification-email must be an e-mail address", code=Code.INVALID_PARAMETERS)
            return given.strip()
        async with self.sessions() as s:
            user = await tenant_store.get_user(s, principal.tenant_id, principal.user_id)
        if user is not None and "@" in user.name:
            return user.name
        raise BadRequest(
            "notification-type E/B needs an e-mail address: give notification-email, or use a user named by "
            "an e-mail address",
            code=Code.NO_EMAIL_ADDRESS,
        )

    async def submit(self, principal: Principal, value: str, body: bytes) -> ProcessJobPublic:
        """POST /processes/jobs/{value}: queue the process as a background job; its scheduling information."""
        values = body_object(body)
        raw_type = values.pop("notification-type", None)
        email_given = values.pop("notification-email", None)
        ntype = str(raw_type).strip().upper() if raw_type is not None else None
        if ntype is not None and ntype not in NOTIFICATION_TYPES:
            raise BadRequest(
                f"notification-type must be E (email), N (notification) or B (both), not {raw_type!r}",
                code=Code.INVALID_PARAMETERS,
            )
        email_to = None
        if ntype in ("E", "B"):
            if not notifications.email_configured(self.settings):
                raise BadRequest(
                    "e-mail is not configured on this server (CP_SMTP_HOST)", code=Code.EMAIL_NOT_CONFIGURED
                )
            email_to = await self._recipient(principal, email_given)
        run = await self.processes.start(principal, value, values, wait=False)
        async with transaction(self.sessions) as s:
            automation = await automation_store.get(s, principal.tenant_id, run.automation_id)
            name = automation.name if automation is not None else value
            job = ProcessJob(
                run_id=run.id,
                tenant_id=principal.tenant_id,
                user_id=principal.user_id,
                automation_id=run.automation_id,
                process=slug(name),
                notification_type=ntype,
                email_to=email_to,
            )
            await store.add_job(s, job)
        await self.notify(run.id)  # when it ended before its row existed, the run-end event found nothing
        async with self.sessions() as s:
            row = await run_store.get(s, principal.tenant_id, run.id)
            return job_record(row or run, name, await store.get_job(s, run.id))

    async def running(self, principal: Principal) -> list[ProcessJobPublic]:
        """The running (and queued) background jobs of the automations the caller sees, oldest first."""
        names = {a.id: a.name for a in await self.processes.visible(principal)}
        async with self.sessions() as s:
            runs = await store.unfinished_background_runs(s, principal.tenant_id, UNFINISHED, limit=MAX_JOBS)
            return [
                job_record(r, names[r.automation_id], await store.get_job(s, r.id))
                for r in runs
                if r.automation_id in names
            ]

    async def get(self, principal: Principal, job_id: str) -> ProcessJobPublic:
        """One job: its record, and once it ended the process answer (summary, logs, report, export)."""
        principal.require(Permission.READ)
        async with self.sessions() as s:
            run = await run_store.get(s, principal.tenant_id, job_id)
            if run is None:
                raise NotFound(f"no job {job_id!r}", code=Code.JOB_NOT_FOUND)
            try:
                automation = await self.processes.automations.load(s, principal, run.automation_id, Permission.READ)
            except NotFound:
                raise NotFound(f"no job {job_id!r}", code=Code.JOB_NOT_FOUND) from None
            out = job_record(run, automation.name, await store.get_job(s, run.id))
            if RunStatus(run.status) not in TERMINAL:
                return out
            result = await self.processes.result(s, run, slug(automation.name))
            return ProcessJobPublic.model_validate({**seed_json(out), **seed_json(result)})

    # --- the end of a job ---------------------------------------------------------------------------

    async def notify(self, run_id: str) -> None:
        """Tell the job's starter it ended, once (see the module doc)."""
        async with transaction(self.sessions) as s:
            run = await run_store.get_any(s, run_id)
            if run is None or RunStatus(run.status) not in TERMINAL:
                return
            job = await store.get_job(s, run_id)
            if job is None or job.notification_type is None:
                return
            if not await store.claim_notification(s, run_id, utcnow()):
                return
            result = await self.processes.result(s, run, job.process)
            verb = "failed" if result.is_error else "completed"
            title = f"Process {job.process} {verb} ({run.status})"
            text = notifications.describe(
                {
                    "Process": job.process,
                    "Job (AD_PInstance_ID)": run.id,
                    "Status": run.status,
                    "Summary": result.summary,
                    "Report": result.report_file_name or "-",
                    "Export": result.export_file_name or "-",
                }
            )
            if job.notification_type in ("N", "B"):
                await notifications.add(
                    s,
                    tenant_id=run.tenant_id,
                    user_id=job.user_id,
                    kind="process.job",
                    title=title,
                    body=text,
                    run_id=run.id,
                )
            email_to = job.email_to if job.notification_type in ("E", "B") else None
        if email_to is None:
            return
        files = [
            (name, base64.b64decode(data))
            for name, data in (
                (result.report_file_name, result.report_file),
                (result.export_file_name, result.export_file),
            )
            if name is not None and data is not None
        ]
        status = await notifications.send_email(self.settings, to=email_to, subject=title, text=text, attachments=files)
        async with transaction(self.sessions) as s:
            await store.set_email_status(s, run_id, status)
