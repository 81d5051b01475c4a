"""The scripting dialect's (seed 002) response shapes that are not plain runs: the script-log page."""

from __future__ import annotations

from pydantic import Field

from controlplane.core.schemas.wire import Wire


class ScriptLogEntryPublic(Wire):
    execution_id: str = Field(description="The run's id.")
    script_id: str = Field(description="The automation's id.")
    execution_date: str = Field(description="When it started (else was created), UTC: 2022-11-11T07:09:35Z.")
    status_code: int = Field(description="What /scripting/script/{scriptId}/run answered (or would have).")


class ScriptLogPagePublic(Wire):
    filtered_logs: list[ScriptLogEntryPublic]
    more_elements: bool
