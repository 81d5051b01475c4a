"""The dialects' JSON answers are typed: OpenAPI names a model for each, and the model is the seed's shape."""

from __future__ import annotations

from typing import Any

import httpx

DIALECTS = ("/api/core/automations", "/api/v1/processes", "/api/v1/app_offering_automation_rules", "/scripting")
# answered with the script's own status, content type and body: no model can describe them
SCRIPT_BODIES = ("/scripting/script/{scriptId}/run", "/scripting/log/script/{scriptId}/execution/{executionId}")


def _ref(schema: dict[str, Any]) -> str | None:
    if "$ref" in schema:
        return str(schema["$ref"])
    if schema.get("type") == "array":
        return _ref(schema["items"])
    return None


async def test_every_dialect_json_answer_names_a_model(api: httpx.AsyncClient) -> None:
    doc = (await api.get("/openapi.json")).json()
    seen, untyped = 0, []
    for path, operations in doc["paths"].items():
        if not path.startswith(DIALECTS) or path in SCRIPT_BODIES:
            continue
        for method, operation in operations.items():
            for status, answer in operation["responses"].items():
                if not status.startswith("2") or status == "204":
                    continue
                seen += 1
                schema = answer.get("content", {}).get("application/json", {}).get("schema", {})
                if _ref(schema) is None:
                    untyped.append(f"{method.upper()} {path} {status}")
    assert seen >= 20
    assert untyped == []


async def test_a_seed_model_keeps_the_seed_names(api: httpx.AsyncClient) -> None:
    schemas = (await api.get("/openapi.json")).json()["components"]["schemas"]
    job = schemas["ProcessJobPublic"]["properties"]
    assert {"AD_PInstance_ID", "AD_Process_ID", "IsProcessing", "jobStatus", "model-name"} <= set(job)
    assert {"jobid", "jobstatus", "jobstate", "exitCode", "nextRunAt"} <= set(schemas["JobPublic"]["properties"])
    assert {"app_offering", "rulable_type", "last_error_at"} <= set(schemas["RulePublic"]["properties"])
    assert set(schemas["ScriptScheduledPublic"]["properties"]) == {"executionId", "scriptId"}
