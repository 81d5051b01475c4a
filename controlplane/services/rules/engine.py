"""The rules engine: subscribes to run_hooks and runs the automation rules an event fires.

For each event (a run ended, an automation was created/updated/enabled/disabled, a webhook arrived) the rules
of the watched automation whose rulable_type and trigger match are evaluated one after the other, in
position order: expressions are bound over the event's record, the condition is checked, then the actions
run in order with the rights of the rule's author (their current role and spaces). A rule that fails (an
expression, the condition or an action) is recorded (an evaluation with ``failed`` and the error, and the
rule's ``last_error``) and logged; the other rules still run, and nothing reaches the engine or the request
that published the event.

Loops: a run a rule starts carries its depth (rule_runs: the triggering event's depth + 1, written with the
run); automations a rule enables or disables publish their events at that depth too. Events at
CP_RULES_MAX_DEPTH fire no rule: each matching rule records a ``cut`` evaluation (RULE_LOOP_CUT).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from controlplane.core import metrics
from controlplane.core.auth import Permission, Principal
from controlplane.core.errors import ControlPlaneError
from controlplane.core.settings import Settings
from controlplane.core.states import AutomationState, Role, RunContext
from controlplane.db.session import transaction
from controlplane.db.tables import Automation, AutomationRule, AutomationRuleEvaluation, Run, utcnow
from controlplane.services.automations.service import AutomationService
from controlplane.services.events import hooks as run_hooks
from controlplane.services.events import notifications
from controlplane.services.rules.language import Action, RuleEvalError, argument, bind, compile_rule, holds
from controlplane.services.rules.triggers import EVENT_TRIGGERS
from controlplane.services.runs.service import RunService
from controlplane.store import automations as automation_store
from controlplane.store import rules as store
from controlplane.store import runs as run_store
from controlplane.store import tenants as tenant_store

log = logging.getLogger("controlplane.rules")
WEBHOOK_BODY_MAX = 64 * 1024  # of a webhook's body, what rules see
NOTIFY_MAX_CHARS = 4096  # of a notify action's message, what is kept


class RuleEngine:
    def __init__(
        self,
        settings: Settings,
        sessions: async_sessionmaker[AsyncSession],
        runs: RunService,
        automations: AutomationService,
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.runs = runs
        self.automations = automations
        self._closed = False

    def start(self) -> None:
        run_hooks.subscribe(self.on_event)

    async def close(self) -> None:
        self._closed = True
        run_hooks.unsubscribe(self.on_event)
        await run_hooks.drain(timeout=10)

    async def on_event(self, event: run_hooks.Event) -> None:
        if self._closed or event.sessions is not self.sessions:
            return  # another platform's event (several may share a process)
        watched = EVENT_TRIGGERS.get(event.kind)
        if watched is None:
            return
        rulable_type, triggers = watched
        async with self.sessions() as s:
            rules = await store.matching(
                s, event.tenant_id, automation_id=event.automation_id, rulable_type=rulable_type, triggers=triggers
            )
            if not rules:
                return
            depth = event.depth
            if event.run_id is not None and rulable_type == "runs":
                depth = max(depth, await store.depth_of_run(s, event.run_id))
            record = await _record(s, event, depth)
        for rule in rules:
            try:
                if rule.automation_id != event.automation_id and not await self._author_sees(rule, event):
                    continue  # "on automation created" of an automation the rule's author cannot see
                await self._evaluate(rule, event, record, depth)
            except Exception:  # recording itself failed (database down, rule deleted meanwhile): log only
                log.exception("rule %s on %s: could not be evaluated or recorded", rule.id, event.kind)

    async def _evaluate(self, rule: AutomationRule, event: run_hooks.Event, record: dict[str, Any], depth: int) -> None:
        results: list[dict[str, Any]] = []
        notes: list[dict[str, Any]] = []
        if depth >= self.settings.rules_max_depth:
            limit = self.settings.rules_max_depth
            error = f"RULE_LOOP_CUT: the event is {depth} rule(s) deep (CP_RULES_MAX_DEPTH={limit}); not evaluated"
            await self._store(rule, event, depth, "cut", error, results, notes)
            return
        try:
            compiled = compile_rule(rule.expressions, rule.condition, rule.actions)
            context = bind(compiled, {**record, "rule": {"id": rule.id, "name": rule.name, "position": rule.position}})
            if not holds(compiled, context):
                metrics.RULE_EVALUATIONS.labels("not_met").inc()
                return
            principal = await self._author(rule)
            for action in compiled.actions:
                entry: dict[str, Any] = {"label": action.label, "verb": action.verb}
                results.append(entry)
                value = argument(action, context)
                entry.update(await self._act(rule, principal, action, value, depth, notes, event.run_id))
                entry["ok"] = True
        except (RuleEvalError, ControlPlaneError) as exc:
            if results and "ok" not in results[-1]:
                results[-1].update(ok=False, error=str(exc))
            log.warning("rule %s (%s) failed on %s: %s", rule.id, rule.name, event.kind, exc)
            await self._store(rule, event, depth, "failed", _message(exc), results, notes)
            return
        await self._store(rule, event, depth, "fired", None, results, notes)

    async def _store(
        self,
        rule: AutomationRule,
        event: run_hooks.Event,
        depth: int,
        outcome: str,
        error: str | None,
        results: list[dict[str, Any]],
        notes: list[dict[str, Any]],
    ) -> None:
        metrics.RULE_EVALUATIONS.labels(outcome).inc()
        row = AutomationRuleEvaluation(
            rule_id=rule.id,
            tenant_id=rule.tenant_id,
            event=event.kind.value,
            run_id=event.run_id,
            automation_id=event.automation_id,
            outcome=outcome,
            error=error,
            depth=depth,
            actions=results,
            notifications=notes,
            created_at=utcnow(),
        )
        try:
            async with transaction(self.sessions) as s:
                await store.record(s, row, keep=self.settings.rules_keep_evaluations)
        except IntegrityError:
            log.info("rule %s was deleted while it was evaluated; its evaluation is dropped", rule.id)

    async def _author(self, rule: AutomationRule) -> Principal:
        """Actions run with the rights the rule's author has now (a demoted author's rules lose them)."""
        async with self.sessions() as s:
            user = await tenant_store.get_user(s, rule.tenant_id, rule.created_by)
            tenant = await tenant_store.get_tenant(s, rule.tenant_id)
        if user is None or tenant is None:
            raise RuleEvalError("the rule's author no longer exists; recreate the rule")
        return Principal(tenant.id, tenant.name, user.id, Role.parse(user.role), token_id=f"rule:{rule.id}")

    async def _author_sees(self, rule: AutomationRule, event: run_hooks.Event) -> bool:
        try:
            principal = await self._author(rule)
        except RuleEvalError:
            return False
        async with self.sessions() as s:
            row = await automation_store.get(s, event.tenant_id, event.automation_id)
            if row is None:
                return False
            view = await self.automations.spaces.view(s, principal)
        return Permission.READ in view.grants_on(row)

    async def _automation(self, principal: Principal, ref: Any, permission: Permission) -> Automation:
        if not isinstance(ref, str) or not ref:
            raise RuleEvalError(f"an automation id or name is needed, not {ref!r}")
        async with self.sessions() as s:
            row = await automation_store.get(s, principal.tenant_id, ref)
            row = row or await automation_store.get_by_name(s, principal.tenant_id, ref)
            if row is None:
                raise RuleEvalError(f"no automation {ref!r}")
            return await self.automations.spaces.automation(s, principal, row.id, permission)

    async def _act(
        self,
        rule: AutomationRule,
        principal: Principal,
        action: Action,
        value: Any,
        depth: int,
        notes: list[dict[str, Any]],
        run_id: str | None,
    ) -> dict[str, Any]:
        if action.verb == "notify":  # kept with the evaluation, and a notification for the rule's author
            message = (value if isinstance(value, str) else json.dumps(value, default=str))[:NOTIFY_MAX_CHARS]
            notes.append({"message": message, "at": utcnow().isoformat(timespec="seconds")})
            async with transaction(self.sessions) as s:
                await notifications.add(
                    s,
                    tenant_id=rule.tenant_id,
                    user_id=rule.created_by,
                    kind="rule",
                    title=f"Rule {rule.name}",
                    body=message,
                    run_id=run_id,
                )
            log.info("rule %s (%s) notifies: %s", rule.id, rule.name, message)
            return {"message": message}
        if action.verb == "stop":
            if not isinstance(value, str):
                raise RuleEvalError(f"stop needs a run id, not {value!r}")
            async with self.sessions() as s:
                run = await run_store.get(s, principal.tenant_id, value)
            if run is None:
                raise RuleEvalError(f"no run {value!r}")
            await self.runs.stop(principal, run.automation_id, run.id)
            return {"runId": run.id}
        if action.verb in ("enable", "disable"):
            target = await self._automation(principal, value, Permission.WRITE)
            state = AutomationState.AVAILABLE if action.verb == "enable" else AutomationState.DISABLED
            with run_hooks.rule_depth(depth + 1):  # what this fires is one rule deeper
                await self.automations.set_state(principal, target.id, state)
            return {"automationId": target.id}
        return await self._start(rule, principal, value, depth)

    async def _start(self, rule: AutomationRule, principal: Principal, value: Any, depth: int) -> dict[str, Any]:
        spec = value if isinstance(value, dict) else {"automation": value}
        unknown = set(spec) - {"automation", "args", "input"}
        if unknown:
            raise RuleEvalError(f"start: unknown key(s) {sorted(unknown)}; use automation, args, input")
        target = await self._automation(principal, spec.get("automation"), Permission.RUN)
        args = spec.get("args")
        if args is not None and (not isinstance(args, list) or any(isinstance(a, dict | list) for a in args)):
            raise RuleEvalError(f"start: args must be a list of strings, not {args!r}")
        has_input = "input" in spec
        run = await self.runs.submit(
            principal,
            target.id,
            context=RunContext.TRIGGERED,
            args=None if args is None else [_text(a) for a in args],
            input_data=json.dumps(spec["input"], default=str).encode() if has_input else b"",
            input_content_type="application/json" if has_input else None,
            started_by_rule=(rule.id, depth + 1),
        )
        return {"automationId": target.id, "runId": run.id}


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def _message(exc: Exception) -> str:
    if isinstance(exc, ControlPlaneError):
        return f"{exc.code}: {exc.detail or exc.title}"
    return str(exc)


def _when(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def _run_record(run: Run, automation: Automation | None, depth: int) -> dict[str, Any]:
    duration = (run.stop_time - run.start_time).total_seconds() if run.stop_time and run.start_time else None
    return {
        "id": run.id,
        "automationId": run.automation_id,
        "automationName": automation.name if automation is not None else run.title,
        "status": run.status,
        "exitCode": run.exit_code,
        "context": run.context,
        "title": run.title,
        "args": list(run.args or []),
        "errors": list(run.errors or []),
        "errorCodes": [e.get("code") for e in run.errors or [] if isinstance(e, dict)],
        "createdAt": _when(run.created_at),
        "startTime": _when(run.start_time),
        "stopTime": _when(run.stop_time),
        "durationSeconds": duration,
        "stdoutBytes": run.stdout_bytes,
        "stderrBytes": run.stderr_bytes,
        "retryOf": run.retry_of,
        "depth": depth,
    }


def _automation_record(row: Automation) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "state": row.state,
        "runMode": row.run_mode,
        "runtime": row.runtime,
        "version": row.version,
        "ownerId": row.owner_id,
        "spaceId": row.space_id,
        "lastRunStatus": row.last_run_status,
    }


def _webhook_record(event: run_hooks.Event) -> dict[str, Any]:
    body = bytes(event.data.get("body") or b"")[:WEBHOOK_BODY_MAX]
    content_type = event.data.get("contentType")
    parsed: Any = None
    if content_type == "application/json" and body:
        try:
            parsed = json.loads(body)
        except ValueError:
            parsed = None
    return {"runId": event.run_id, "contentType": content_type, "body": body.decode(errors="replace"), "json": parsed}


async def _record(s: AsyncSession, event: run_hooks.Event, depth: int) -> dict[str, Any]:
    """What the rule's CEL sees: ``event``, ``automation``, ``run`` and ``webhook`` (null when not there)."""
    automation = await s.get(Automation, event.automation_id)
    run = await s.get(Run, event.run_id) if event.run_id else None
    return {
        "event": {"kind": event.kind.value, "at": event.at.isoformat(), "depth": depth, "status": event.status},
        "automation": _automation_record(automation) if automation is not None else None,
        "run": _run_record(run, automation, depth) if run is not None else None,
        "webhook": _webhook_record(event) if event.kind == run_hooks.EventKind.WEBHOOK_ARRIVED else None,
    }
