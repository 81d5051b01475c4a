"""The scripting dialect's (seed 002) JSON answers: a background start and the script-log page (a run itself
answers with the script's own status, content type and body, which no model describes)."""

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


class ScriptScheduledPublic(Wire):
    """What a background start answers (202); Location and X-Execution-Id name the execution too."""

    execution_id: str = Field(description="The run's id.")
    script_id: str = Field(description="The automation's id.")
