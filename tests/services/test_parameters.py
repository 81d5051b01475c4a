"""Typed automation parameters (services/automations/parameters.py): declarations, every problem listed, coercion,
defaults, and the env a script gets."""

from __future__ import annotations

import json
from typing import Any

import pytest

from controlplane.core.errors import BadRequest, ValidationFailed
from controlplane.core.schemas.automations import ParameterCreate
from controlplane.services.automations import parameters

DECLARED = parameters.check_declarations(
    [
        ParameterCreate(name="AD_Language", type="string", mandatory=True),
        ParameterCreate(name="Count", type="integer", default=5),
        ParameterCreate(name="Ratio", type="number"),
        ParameterCreate(name="IsOnlyCentralizedData", type="boolean", default=False),
        ParameterCreate(name="DateFrom", type="date"),
        ParameterCreate(name="At", type="datetime"),
        ParameterCreate(name="Ids", type="list"),
    ]
)


def test_valid_values_are_normalised_and_defaults_filled() -> None:
    out = parameters.validate(
        DECLARED,
        {
            "AD_Language": "es_CO",
            "Ratio": "2.5",
            "IsOnlyCentralizedData": "Y",
            "DateFrom": "2026-01-31",
            "At": "2026-01-31T12:00:00Z",
            "Ids": [1, 2],
            "report-type": "csv",
            "record-id": "42",
            "model-name": "c_order",
        },
    )
    assert out == {
        "AD_Language": "es_CO",
        "Count": 5,
        "Ratio": 2.5,
        "IsOnlyCentralizedData": True,
        "DateFrom": "2026-01-31",
        "At": "2026-01-31T12:00:00+00:00",
        "Ids": [1, 2],
        "report-type": "CSV",
        "record-id": 42,
        "model-name": "c_order",
    }
    assert parameters.validate(DECLARED, {"AD_Language": "x", "Count": "7", "Ratio": 3})["Count"] == 7


def test_every_problem_is_listed() -> None:
    with pytest.raises(BadRequest) as info:
        parameters.validate(
            DECLARED,
            {
                "Count": "seven",
                "Ratio": True,
                "IsOnlyCentralizedData": "maybe",
                "DateFrom": "31/01/2026",
                "At": "noon",
                "Ids": "1,2",
                "Colour": "red",
                "report-type": "DOCX",
            },
        )
    err = info.value
    assert err.code == "INVALID_PARAMETERS" and err.status_code == 400
    problems = {(e["parameter"], e["code"]) for e in err.extra}
    assert problems == {
        ("AD_Language", "PARAMETER_MISSING"),
        ("Count", "PARAMETER_TYPE"),
        ("Ratio", "PARAMETER_TYPE"),
        ("IsOnlyCentralizedData", "PARAMETER_TYPE"),
        ("DateFrom", "PARAMETER_TYPE"),
        ("At", "PARAMETER_TYPE"),
        ("Ids", "PARAMETER_TYPE"),
        ("Colour", "PARAMETER_UNKNOWN"),
        ("report-type", "PARAMETER_INVALID"),
    }
    assert "8 problem" not in (err.detail or "") and "9 problem(s)" in (err.detail or "")


def test_declarations_are_checked() -> None:
    with pytest.raises(ValidationFailed) as info:
        parameters.check_declarations(
            [
                ParameterCreate(name="a", type="integer", default="x"),
                ParameterCreate(name="A", type="string"),
                ParameterCreate(name="d", type="date", default="tomorrow"),
            ]
        )
    detail = info.value.detail or ""
    assert "'a': the default must be an integer" in detail and "'A' is declared twice" in detail
    assert "'d': the default must be a date" in detail


@pytest.mark.parametrize("data", [b"[1]", b"not json", b'"text"'])
def test_input_must_be_an_object(data: bytes) -> None:
    with pytest.raises(BadRequest) as info:
        parameters.validate_input(DECLARED, data)
    assert info.value.code == "INVALID_PARAMETERS"


def test_undeclared_automations_keep_their_input() -> None:
    assert parameters.validate_input([], b"anything \x00 at all") == b"anything \x00 at all"
    assert parameters.validate([], {"x": 1, "report-type": "pdf"}, strict=False) == {"x": 1, "report-type": "PDF"}


def test_env_for_a_script() -> None:
    data = parameters.validate_input(
        DECLARED, json.dumps({"AD_Language": "es_CO", "Ids": [1], "is-summary": "Y"}).encode()
    )
    env = parameters.run_env("JETQUERY_", DECLARED, data)
    assert env == {
        "JETQUERY_PARAM_AD_LANGUAGE": "es_CO",
        "JETQUERY_PARAM_COUNT": "5",
        "JETQUERY_PARAM_ISONLYCENTRALIZEDDATA": "false",
        "JETQUERY_PARAM_IDS": "[1]",
        "JETQUERY_IS_SUMMARY": "true",
    }
    huge: dict[str, Any] = {"AD_Language": "x" * 40000}
    assert "JETQUERY_PARAM_AD_LANGUAGE" not in parameters.run_env("JETQUERY_", DECLARED, json.dumps(huge).encode())
    assert parameters.run_env("JETQUERY_", DECLARED, b"plain text") == {}
