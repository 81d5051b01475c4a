"""Webhook runs: POST .../{id}/actions/execute with the automation's executionToken and no bearer token.

The token alone authorizes the call, so it is compared in constant time, and a wrong token, a missing one
and an unknown automation id all get the same 401 (ids cannot be probed). The run is started on the
owner's behalf (as the scheduler does), context ``webhook`` (counted as webhookRuns in the daily usage),
with the request body as its input; a JSON body must be valid JSON. Quotas apply as for any background
run (429), and a disabled automation refuses (409).
"""

from __future__ import annotations

import json

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from controlplane.core.auth import Principal, same_secret
from controlplane.core.errors import BadRequest, Code, Unauthorized
from controlplane.core.states import Role, RunContext
from controlplane.db.tables import Run
from controlplane.services.events import hooks as run_hooks
from controlplane.services.runs.service import RunService
from controlplane.store import automations as store
from controlplane.store import tenants as tenant_store

TOKEN_NAME = "X-Execution-Token"
_NO_MATCH = "\x00" * 64  # compared against when the automation does not exist, so both paths do the same work


def refused() -> Unauthorized:
    return Unauthorized(
        f"a valid {TOKEN_NAME} (header or query parameter) is required",
        code=Code.INVALID_EXECUTION_TOKEN,
        title="Missing or invalid execution token",
        headers={},
    )


def is_json(content_type: str | None) -> bool:
    media = (content_type or "").split(";")[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


async def execute(
    sessions: async_sessionmaker[AsyncSession],
    runs: RunService,
    automation_id: str,
    *,
    token: str | None,
    body: bytes,
    content_type: str | None,
) -> Run:
    """Check the token, then queue a background run with the body as input. Returns the queued run."""
    async with sessions() as s:
        row = await store.get_any(s, automation_id)
        expected = row.execution_token if row is not None else _NO_MATCH
        matched = same_secret(token or "", expected)
        if row is None or not token or not matched:
            raise refused()
        tenant = await tenant_store.get_tenant(s, row.tenant_id)
        if tenant is None:
            raise refused()
        owner_id, tenant_id, tenant_name = row.owner_id, tenant.id, tenant.name
    input_type: str | None = content_type or None
    if body and is_json(content_type):
        try:
            json.loads(body)
        except (UnicodeDecodeError, ValueError) as exc:
            raise BadRequest(f"the body is not valid JSON: {exc}", code=Code.INVALID_JSON) from None
        input_type = "application/json"
    elif not body:
        input_type = None
    principal = Principal(tenant_id, tenant_name, owner_id, Role.OPERATOR, token_id="webhook")
    run = await runs.submit(
        principal,
        automation_id,
        context=RunContext.WEBHOOK,
        input_data=body,
        input_content_type=input_type,
        title="",
    )
    details = {"contentType": input_type, "body": body}
    run_hooks.publish(
        run_hooks.Event(run_hooks.EventKind.WEBHOOK_ARRIVED, tenant_id, automation_id, sessions, run.id, data=details)
    )
    return run
