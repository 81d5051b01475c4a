"""Seed 001's answers (/api/v1/processes): PO JSON records of processes (AD_Process) and their jobs
(AD_PInstance), and a run's process answer (summary, logs, report and export files)."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from controlplane.dialects.schemas import SeedModel


class ReferencePublic(SeedModel):
    """A PO JSON reference to another record."""

    id: str | None = None
    identifier: str | None = None
    model_name: str = Field(alias="model-name")


class ProcessParameterPublic(SeedModel):
    id: str
    name: str = Field(alias="Name")
    column_name: str = Field(alias="ColumnName")
    description: str = Field(alias="Description")
    seq_no: int = Field(alias="SeqNo")
    is_mandatory: bool = Field(alias="IsMandatory")
    default_value: Any = Field(alias="DefaultValue")
    reference: ReferencePublic = Field(alias="AD_Reference_ID")
    type: str
    model_name: str = Field(alias="model-name")


class ProcessPublic(SeedModel):
    """An automation as an AD_Process record; ``parameters`` on GET of one process only."""

    id: str
    uid: str
    value: str = Field(alias="Value", description="The process value: the automation's name as a slug.")
    name: str = Field(alias="Name")
    description: str = Field(alias="Description")
    help: str = Field(alias="Help")
    is_active: bool = Field(alias="IsActive")
    entity_type: str = Field(alias="EntityType")
    updated: str | None = Field(alias="Updated")
    model_name: str = Field(alias="model-name")
    parameters: list[ProcessParameterPublic] | None = None


class ProcessListPublic(SeedModel):
    processes: list[ProcessPublic]


class ResultFilesPublic(SeedModel):
    """The report and export a process run left (base64), when it left them."""

    report_file: str | None = Field(None, alias="reportFile", description="base64")
    report_file_name: str | None = Field(None, alias="reportFileName")
    report_file_length: int | None = Field(None, alias="reportFileLength")
    export_file: str | None = Field(None, alias="exportFile", description="base64")
    export_file_name: str | None = Field(None, alias="exportFileName")
    export_file_length: int | None = Field(None, alias="exportFileLength")


class ProcessResultPublic(ResultFilesPublic):
    """What a finished run of a process answers."""

    instance_id: str = Field(alias="AD_PInstance_ID")
    process: str
    summary: str
    is_error: bool = Field(alias="isError")
    node_id: str = Field(alias="nodeId", description="The control-plane replica that ran it.")
    logs: list[str] = Field(description="The run's stdout, a line each.")


class JobNotificationPublic(SeedModel):
    notified_at: str | None = Field(alias="notifiedAt")
    email: str | None


class ProcessJobPublic(ResultFilesPublic):
    """A background run of a process as an AD_PInstance record; once it ended, with its process answer."""

    id: str
    uid: str
    instance_id: str = Field(alias="AD_PInstance_ID")
    process_ref: ReferencePublic = Field(alias="AD_Process_ID")
    process: str
    is_processing: bool = Field(alias="IsProcessing")
    status: str
    user: ReferencePublic = Field(alias="AD_User_ID")
    created: str | None = Field(alias="Created")
    updated: str | None = Field(alias="Updated")
    job_status: str = Field(alias="jobStatus", description="URL of this record.")
    model_name: str = Field(alias="model-name")
    result: int | None = Field(None, alias="Result", description="1 succeeded, 0 failed (once ended).")
    error_msg: str | None = Field(None, alias="ErrorMsg")
    notification_type: str | None = Field(None, alias="NotificationType")
    notification: JobNotificationPublic | None = None
    summary: str | None = None
    is_error: bool | None = Field(None, alias="isError")
    node_id: str | None = Field(None, alias="nodeId")
    logs: list[str] | None = None


class ProcessJobListPublic(SeedModel):
    jobs: list[ProcessJobPublic]
