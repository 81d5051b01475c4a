"""Seed 003's fields of an automation rule: what may be written (with its limits), and how a rule is shown.

Why it exists: the seed's field list is the contract (name max 128, text fields max 64 KB, required
app_offering, rulable_type and trigger, read-only id/created_at/updated_at/*_html); checking it here, every
problem at once, keeps the service about behaviour. ``rulable_type`` and ``trigger`` are our vocabulary
(the seed's Req/Task/Ci are another product's records): see RULABLE_TYPES and TRIGGERS.
"""

from __future__ import annotations

import html
from datetime import datetime
from typing import Any

from markdown_it import MarkdownIt

from controlplane.core.errors import Code, ValidationFailed
from controlplane.db.tables import Automation, AutomationRule, AutomationRuleEvaluation
from controlplane.dialects.rules.schemas import RuleEvaluationPublic, RulePublic
from controlplane.services.rules.triggers import RULABLE_TYPES, TRIGGERS

TEXT_MAX_BYTES = 64 * 1024
STRING_MAX = 128
INT32 = (-(2**31), 2**31 - 1)
TEXT_FIELDS = ("description", "expressions", "condition", "actions")
READ_ONLY = (
    "id",
    "actions_html",
    "description_html",
    "created_at",
    "updated_at",
    "last_fired_at",
    "last_error",
    "last_error_at",
)
WRITABLE = ("name", "app_offering", "app_offering_id", "rulable_type", "trigger", "position", *TEXT_FIELDS)
REQUIRED = ("name", "app_offering", "rulable_type", "trigger")
ALL_FIELDS = (
    "id",
    "app_offering",
    "rulable_type",
    "name",
    "trigger",
    "position",
    "description",
    "description_html",
    "expressions",
    "condition",
    "actions",
    "actions_html",
    "created_at",
    "updated_at",
    "last_fired_at",
    "last_error",
    "last_error_at",
)
COLLECTION_FIELDS = ("id", "app_offering", "rulable_type", "name", "trigger", "position", "created_at", "updated_at")

_markdown = MarkdownIt("commonmark", {"html": False}).disable("image")  # raw HTML is escaped, never passed


def _problem(field: str, message: str, code: Code = Code.INVALID_FIELD) -> dict[str, str]:
    return {"code": code.value, "title": "The request is not valid", "detail": f"{field}: {message}"}


def fail(problems: list[dict[str, str]]) -> ValidationFailed:
    first = problems[0]
    return ValidationFailed(first["detail"], code=Code(first["code"]), extra=problems[1:])


def normal_trigger(value: str) -> str:
    return " ".join(value.split()).lower()


class _Bad(ValueError):
    """One field's problem, said as the rest of "<field> ..."."""


def _short(key: str, value: Any) -> Any:
    if not isinstance(value, str) or not value.strip():
        raise _Bad("must be a non-empty string")
    if len(value) > STRING_MAX:
        raise _Bad(f"is longer than {STRING_MAX} characters")
    return value.strip() if key == "name" else value


def _position(key: str, value: Any) -> Any:
    if value is not None and (
        isinstance(value, bool) or not isinstance(value, int) or not INT32[0] <= value <= INT32[1]
    ):
        raise _Bad("must be an integer (32 bits)")
    return value


def _text(key: str, value: Any) -> Any:
    if value is not None and not isinstance(value, str):
        raise _Bad("must be text or null")
    if value is not None and len(value.encode()) > TEXT_MAX_BYTES:
        raise _Bad(f"is larger than {TEXT_MAX_BYTES} bytes (64 KB)")
    return value or None


def _app_offering(key: str, value: Any) -> Any:
    ref = value.get("id") or value.get("reference") if isinstance(value, dict) else value
    if not isinstance(ref, str) or not ref.strip() or len(ref) > STRING_MAX:
        raise _Bad("must name an automation: its id or name, or {id} / {reference}")
    return ref.strip()


def _checked(
    body: dict[str, Any], checks: list[tuple[str, Any]], out: dict[str, Any], problems: list[dict[str, str]]
) -> None:
    """Each field of ``checks`` that ``body`` has, checked into ``out``; what is wrong goes to ``problems``."""
    for key, check in checks:
        if key in body:
            try:
                out[key] = check(key, body[key])
            except _Bad as bad:
                problems.append(_problem(key, str(bad)))


def check_write(body: dict[str, Any], *, creating: bool) -> dict[str, Any]:
    """The writable fields of ``body``, checked; raises 422 listing every problem (read-only, unknown,
    missing, too long, wrong type, unknown rulable_type). ``app_offering`` comes back as given (a string id
    or name, or {"id"} / {"reference"}) for the service to resolve."""
    problems: list[dict[str, str]] = []
    out: dict[str, Any] = {}
    for key in body:
        if key in READ_ONLY:
            problems.append(_problem(key, "is read-only", Code.READ_ONLY_FIELD))
        elif key not in WRITABLE:
            problems.append(_problem(key, f"is not a field; writable: {', '.join(WRITABLE)}", Code.UNKNOWN_FIELD))
    if "app_offering_id" in body and "app_offering" not in body:
        body = {**body, "app_offering": body["app_offering_id"]}
    _checked(body, [("name", _short), ("rulable_type", _short), ("trigger", _short)], out, problems)
    if "rulable_type" in out and out["rulable_type"] not in RULABLE_TYPES:
        problems.append(_problem("rulable_type", f"{out.pop('rulable_type')!r} is not valid; valid: runs, automations"))
    if "trigger" in out:
        out["trigger"] = normal_trigger(out["trigger"])
    texts = [(key, _text) for key in TEXT_FIELDS]
    _checked(body, [("position", _position), *texts, ("app_offering", _app_offering)], out, problems)
    if creating:
        problems += [_problem(key, "is required", Code.MISSING_FIELD) for key in REQUIRED if key not in body]
    if problems:
        raise fail(problems)
    return out


def check_trigger(rulable_type: str, trigger: str) -> None:
    valid = TRIGGERS[rulable_type]
    if trigger not in valid:
        raise fail([_problem("trigger", f"{trigger!r} is not valid for {rulable_type}; valid: {', '.join(valid)}")])


def _when(value: datetime | None) -> str | None:
    return value.isoformat(timespec="seconds") if value is not None else None


def description_html(text: str | None) -> str | None:
    return _markdown.render(text) if text else None


def actions_html(text: str | None) -> str | None:
    return f"<pre><code>{html.escape(text)}</code></pre>" if text else None


def public(rule: AutomationRule, automation: Automation) -> RulePublic:
    return RulePublic.model_validate(
        {
            "id": rule.id,
            "app_offering": {"reference": automation.name, "id": automation.id},
            "rulable_type": rule.rulable_type,
            "name": rule.name,
            "trigger": rule.trigger,
            "position": rule.position,
            "description": rule.description,
            "description_html": description_html(rule.description),
            "expressions": rule.expressions,
            "condition": rule.condition,
            "actions": rule.actions,
            "actions_html": actions_html(rule.actions),
            "created_at": _when(rule.created_at),
            "updated_at": _when(rule.updated_at),
            "last_fired_at": _when(rule.last_fired_at),
            "last_error": rule.last_error,
            "last_error_at": _when(rule.last_error_at),
        }
    )


def evaluation_public(row: AutomationRuleEvaluation) -> RuleEvaluationPublic:
    return RuleEvaluationPublic.model_validate(
        {
            "id": row.id,
            "rule_id": row.rule_id,
            "event": row.event,
            "run_id": row.run_id,
            "automation_id": row.automation_id,
            "outcome": row.outcome,
            "error": row.error,
            "depth": row.depth,
            "actions": row.actions,
            "notifications": row.notifications,
            "created_at": _when(row.created_at),
        }
    )
