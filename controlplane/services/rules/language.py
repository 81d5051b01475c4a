"""The text of a rule (seed 003's expressions, condition and actions fields), parsed and checked with CEL.

Why it exists: rules are written by API clients and run inside the control plane, so they are never Python:
every expression is Common Expression Language (the ``common-expression-language`` package: a maintained,
sandboxed, side-effect free evaluator; no eval). Writing a rule compiles it here, so a mistake is a 422 with
the CEL error, not a surprise at run time.

* ``expressions``: one ``name: <CEL>`` per line (a line starting with white space continues the previous
  one; blank lines and ``#`` comments are skipped). Each name is bound in order and may use the record
  (``event``, ``run``, ``automation``, ``webhook``, ``rule``) and the names before it.
* ``condition``: one CEL expression that must be ``true`` for the actions to run (empty: always).
* ``actions``: one ``[label:] verb [CEL]`` per line, executed in order: ``start <automation id or name, or
  {"automation": ..., "args": [...], "input": ...}>``, ``stop [run id]`` (default ``run.id``),
  ``enable``/``disable [automation id or name]`` (default ``automation.id``), ``notify <message>``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import cel

RECORD_NAMES = frozenset({"event", "run", "automation", "webhook", "rule"})
CEL_RESERVED = frozenset(
    {"true", "false", "null", "in", "as", "break", "const", "continue", "else", "for", "function", "if"}
    | {"import", "let", "loop", "package", "namespace", "return", "var", "void", "while"}
)
VERBS = ("start", "stop", "enable", "disable", "notify")
DEFAULT_ARGUMENT = {"stop": "run.id", "enable": "automation.id", "disable": "automation.id"}
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_LABELLED = re.compile(r"([A-Za-z_][\w-]*)\s*:\s*(.*)", re.DOTALL)


class RuleSyntaxError(ValueError):
    """A rule text that does not parse or compile; ``field`` names the seed field at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class RuleEvalError(RuntimeError):
    """An expression, the condition or an action's argument failed while a rule was evaluated."""


@dataclass(frozen=True)
class Named:
    name: str
    source: str
    program: cel.Program


@dataclass(frozen=True)
class Action:
    label: str
    verb: str
    source: str
    program: cel.Program | None


@dataclass(frozen=True)
class CompiledRule:
    expressions: tuple[Named, ...]
    condition: cel.Program | None
    actions: tuple[Action, ...]


def _lines(text: str | None) -> list[tuple[int, str]]:
    """Logical lines with their first line number: continuation lines (leading white space) are joined."""
    out: list[tuple[int, str]] = []
    for number, raw in enumerate((text or "").splitlines(), start=1):
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        if raw[:1].isspace() and out:
            out[-1] = (out[-1][0], out[-1][1] + "\n" + raw)
        else:
            out.append((number, raw.strip()))
    return out


def _compile(field: str, where: str, source: str) -> cel.Program:
    try:
        return cel.compile(source)
    except (ValueError, RuntimeError) as exc:
        raise RuleSyntaxError(field, f"{where}: {exc}") from None


def compile_expressions(text: str | None) -> tuple[Named, ...]:
    seen: set[str] = set()
    out: list[Named] = []
    for number, line in _lines(text):
        name, sep, source = line.partition(":")
        name = name.strip()
        if not sep or not _NAME.fullmatch(name):
            raise RuleSyntaxError("expressions", f"line {number}: expected 'name: <CEL expression>'")
        if name in RECORD_NAMES or name in CEL_RESERVED:
            raise RuleSyntaxError("expressions", f"line {number}: {name!r} is reserved")
        if name in seen:
            raise RuleSyntaxError("expressions", f"line {number}: {name!r} is defined twice")
        if not source.strip():
            raise RuleSyntaxError("expressions", f"line {number}: {name!r} has no expression")
        seen.add(name)
        out.append(Named(name, source.strip(), _compile("expressions", f"line {number} ({name})", source.strip())))
    return tuple(out)


def compile_condition(text: str | None) -> cel.Program | None:
    source = (text or "").strip()
    return _compile("condition", "expression", source) if source else None


def compile_actions(text: str | None) -> tuple[Action, ...]:
    out: list[Action] = []
    labels: set[str] = set()
    for number, line in _lines(text):
        label, body = f"a{len(out) + 1}", line
        match = _LABELLED.fullmatch(line)
        if match and match.group(1) not in VERBS:
            label, body = match.group(1), match.group(2).strip()
        verb, _, argument = body.partition(" ")
        verb, argument = verb.strip(), argument.strip()
        if verb not in VERBS:
            raise RuleSyntaxError("actions", f"line {number}: unknown action {verb!r}; valid: {', '.join(VERBS)}")
        if label in labels:
            raise RuleSyntaxError("actions", f"line {number}: label {label!r} is used twice")
        labels.add(label)
        argument = argument or DEFAULT_ARGUMENT.get(verb, "")
        if not argument:
            raise RuleSyntaxError("actions", f"line {number}: {verb} needs an argument (a CEL expression)")
        out.append(Action(label, verb, argument, _compile("actions", f"line {number} ({label})", argument)))
    return tuple(out)


def compile_rule(expressions: str | None, condition: str | None, actions: str | None) -> CompiledRule:
    return CompiledRule(compile_expressions(expressions), compile_condition(condition), compile_actions(actions))


def _run(program: cel.Program, context: dict[str, Any], what: str) -> Any:
    try:
        return program.execute(context)
    except Exception as exc:  # the evaluator's errors are ValueError, KeyError, RuntimeError, TypeError
        raise RuleEvalError(f"{what}: {type(exc).__name__}: {exc}") from None


def bind(rule: CompiledRule, record: dict[str, Any]) -> dict[str, Any]:
    """The record plus every named expression, evaluated in order."""
    context = dict(record)
    for named in rule.expressions:
        context[named.name] = _run(named.program, context, f"expression {named.name!r}")
    return context


def holds(rule: CompiledRule, context: dict[str, Any]) -> bool:
    if rule.condition is None:
        return True
    value = _run(rule.condition, context, "condition")
    if not isinstance(value, bool):
        raise RuleEvalError(f"condition: must be true or false, not {type(value).__name__} {value!r}")
    return value


def argument(action: Action, context: dict[str, Any]) -> Any:
    if action.program is None:
        return None
    return _run(action.program, context, f"action {action.label} ({action.verb})")
