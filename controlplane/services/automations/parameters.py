"""Typed run parameters: an automation's declarations, a run's input checked against them, and the env a
script gets for them.

An automation may declare ``parameters`` [{name, type, mandatory, default, description}] (native API and
automation.json). Types: ``string`` (a JSON string), ``integer`` (a JSON integer, or a string of digits),
``number`` (a JSON number, or a numeric string), ``boolean`` (true/false, or "Y"/"N"/"true"/"false" in any
case), ``date`` ("YYYY-MM-DD"), ``datetime`` (ISO 8601, e.g. "2026-01-31T12:00:00Z"), ``list`` (a JSON array).

When an automation declares none, its runs' input is not checked (any bytes, as before). When it declares
some, the run's input must be a JSON object (an empty input counts as ``{}``) and is refused with 400
``INVALID_PARAMETERS`` listing every problem, one error entry each: a mandatory parameter missing (or
null) without a default (``PARAMETER_MISSING``), a value of the wrong type (``PARAMETER_TYPE``), a name
not declared (``PARAMETER_UNKNOWN``; names are case-sensitive), a bad value of one of the processes
dialect's special keys (``PARAMETER_INVALID``). The special keys of seed 001 (report-type, is-summary,
print-format-id, table-id, model-name, record-id) are allowed on every automation.

The script gets the validated values, defaults filled in, as its input (stdin and $JETQUERY_INPUT_FILE, one
JSON object, values normalised: integers as numbers, booleans as true/false, dates as ISO strings) and,
for each declared parameter with a value, ``JETQUERY_PARAM_<NAME>`` (name upper-cased; booleans
"true"/"false", lists as JSON; values over 32 KiB only in the input). The special keys become
``JETQUERY_REPORT_TYPE``, ``_IS_SUMMARY``, ``_PRINT_FORMAT_ID``, ``_TABLE_ID``, ``_MODEL_NAME``, ``_RECORD_ID``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import date, datetime
from typing import Any

from controlplane.core.errors import BadRequest, Code, ValidationFailed
from controlplane.core.schemas.automations import ParameterCreate

REPORT_TYPES = ("HTML", "CSV", "XLS", "PDF")
SPECIAL_ENV = {
    "report-type": "REPORT_TYPE",
    "is-summary": "IS_SUMMARY",
    "print-format-id": "PRINT_FORMAT_ID",
    "table-id": "TABLE_ID",
    "model-name": "MODEL_NAME",
    "record-id": "RECORD_ID",
}
ENV_VALUE_MAX = 32 * 1024
INT = re.compile(r"^[+-]?\d{1,30}$")
TRUE, FALSE = {"y", "yes", "true"}, {"n", "no", "false"}


def _string(value: Any) -> Any:
    if isinstance(value, str):
        return value
    raise ValueError("a string")


def _integer(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and INT.match(value.strip()):
        return int(value.strip())
    raise ValueError("an integer")


def _number(value: Any) -> Any:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            raise ValueError("a number") from None
        if number == number and abs(number) != float("inf"):
            return int(number) if INT.match(value.strip()) else number
    raise ValueError("a number")


def _boolean(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in TRUE | FALSE:
        return value.strip().lower() in TRUE
    raise ValueError('a boolean (true/false or "Y"/"N")')


def _iso(parse: Callable[[str], date | datetime], expected: str) -> Callable[[Any], Any]:
    def coerce(value: Any) -> Any:
        if isinstance(value, str):
            try:
                return parse(value.strip()).isoformat()
            except ValueError:
                pass
        raise ValueError(expected)

    return coerce


def _list(value: Any) -> Any:
    if isinstance(value, list):
        return value
    raise ValueError("a JSON array")


COERCE: dict[str, Callable[[Any], Any]] = {
    "string": _string,
    "integer": _integer,
    "number": _number,
    "boolean": _boolean,
    "date": _iso(date.fromisoformat, 'a date "YYYY-MM-DD"'),
    "datetime": _iso(datetime.fromisoformat, 'an ISO 8601 date and time such as "2026-01-31T12:00:00Z"'),
    "list": _list,
}


def _coerce(kind: str, value: Any) -> Any:
    """``value`` as a ``kind`` parameter's normalised JSON value; ValueError saying what was expected."""
    coerce = COERCE.get(kind)
    if coerce is None:
        raise ValueError(f"a value of unknown type {kind!r}")
    return coerce(value)


def check_declarations(params: list[ParameterCreate]) -> list[dict[str, Any]]:
    """The declarations as stored; 422 listing every bad one (duplicate names, defaults of the wrong type)."""
    problems: list[str] = []
    seen: set[str] = set()
    out: list[dict[str, Any]] = []
    for p in params:
        key = p.name.upper()
        if key in seen:
            problems.append(f"parameter {p.name!r} is declared twice (names are compared ignoring case)")
        seen.add(key)
        default = p.default
        if default is not None:
            try:
                default = _coerce(p.type, default)
            except ValueError as exc:
                problems.append(f"parameter {p.name!r}: the default must be {exc}")
        out.append(
            {"name": p.name, "type": p.type, "mandatory": p.mandatory, "default": default, "description": p.description}
        )
    if problems:
        raise ValidationFailed("; ".join(problems), code=Code.INVALID_PARAMETER_DECLARATION)
    return out


def _special(key: str, value: Any) -> Any:
    if key == "report-type":
        if isinstance(value, str) and value.strip().upper() in REPORT_TYPES:
            return value.strip().upper()
        raise ValueError(f"one of {', '.join(REPORT_TYPES)}")
    if key == "is-summary":
        return _coerce("boolean", value)
    if key == "model-name":
        if isinstance(value, str) and value.strip():
            return value.strip()
        raise ValueError("a table name")
    if isinstance(value, int) and not isinstance(value, bool):  # print-format-id, table-id, record-id
        return value
    if isinstance(value, str) and value.strip() and len(value) <= 64:
        return int(value) if INT.match(value.strip()) else value.strip()
    raise ValueError("an id (a number or a UUID)")


def _entry(code: Code, title: str, name: str, detail: str) -> dict[str, Any]:
    return {"code": code.value, "title": title, "detail": detail, "parameter": name}


def validate(declared: list[dict[str, Any]], values: dict[str, Any], *, strict: bool = True) -> dict[str, Any]:
    """The validated values, defaults filled in; BadRequest listing every problem. ``strict`` False (an
    automation that declares nothing) keeps undeclared names as they are."""
    problems: list[dict[str, Any]] = []
    out: dict[str, Any] = {}
    names = {p["name"] for p in declared}
    for key, value in values.items():
        if key in SPECIAL_ENV:
            try:
                out[key] = _special(key, value)
            except ValueError as exc:
                problems.append(_entry(Code.PARAMETER_INVALID, "Invalid parameter", key, f"{key} must be {exc}"))
        elif key not in names:
            if strict:
                problems.append(
                    _entry(
                        Code.PARAMETER_UNKNOWN, "Unknown parameter", key, f"{key!r} is not a parameter of this process"
                    )
                )
            else:
                out[key] = value
    for p in declared:
        name, value = p["name"], values.get(p["name"])
        if value is None:
            if p.get("default") is not None:
                out[name] = p["default"]
            elif p.get("mandatory"):
                problems.append(
                    _entry(Code.PARAMETER_MISSING, "Missing parameter", name, f"{name} is mandatory ({p['type']})")
                )
            continue
        try:
            out[name] = _coerce(p["type"], value)
        except ValueError as exc:
            problems.append(_entry(Code.PARAMETER_TYPE, "Wrong parameter type", name, f"{name} must be {exc}"))
    if problems:
        raise BadRequest(
            f"{len(problems)} problem(s) with the parameters", code=Code.INVALID_PARAMETERS, extra=problems
        )
    return out


def parse_object(data: bytes) -> dict[str, Any]:
    """A run input as a JSON object ({} when empty); 400 otherwise."""
    if not data.strip():
        return {}
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("the parameters must be a JSON object", code=Code.INVALID_PARAMETERS) from None
    if not isinstance(doc, dict):
        raise BadRequest("the parameters must be a JSON object", code=Code.INVALID_PARAMETERS)
    return doc


def validate_input(declared: list[dict[str, Any]] | None, data: bytes) -> bytes:
    """A run's input checked against the automation's declarations (unchanged when it declares none)."""
    if not declared:
        return data
    return json.dumps(validate(declared, parse_object(data)), separators=(",", ":")).encode()


def _env_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | dict):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def run_env(prefix: str, declared: list[dict[str, Any]] | None, data: bytes) -> dict[str, str]:
    """``<prefix>PARAM_<NAME>`` for the declared parameters and the special keys' variables, read from a
    run's (already validated) input; nothing when the input is not a JSON object."""
    if not data[:1] == b"{":
        return {}
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return {}
    if not isinstance(doc, dict):
        return {}
    env: dict[str, str] = {}
    for p in declared or []:
        value = doc.get(p.get("name"))
        if value is not None:
            env[f"{prefix}PARAM_{str(p['name']).upper()}"] = _env_text(value)
    for key, suffix in SPECIAL_ENV.items():
        if doc.get(key) is not None:
            env[prefix + suffix] = _env_text(doc[key])
    return {k: v for k, v in env.items() if len(v) <= ENV_VALUE_MAX}
