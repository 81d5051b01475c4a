"""A script's own HTTP answer: the ``r`` frame, its collection next to artifacts, its validation, and how an
execution's ending becomes the scripting app's status code."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from controlplane.backends.protocol import ArtifactData, ArtifactHead, FrameParser, ResponseHead, encode_frame
from controlplane.core.settings import Settings
from controlplane.core.states import RunStatus
from controlplane.dialects.scripting.service import REQUEST_MAGIC, ScriptRequest, status_code, wrap_request
from controlplane.services.execution.capture import ArtifactCollector, parse_content_type, parse_status
from controlplane.store.responses import Execution


@pytest.mark.parametrize(
    ("text", "want"),
    [(None, 200), ("", 200), ("201", 201), (" 404\n", 404), ("599", 599), ("200\r\n", 200)],
)
def test_status_values(text: str | None, want: int) -> None:
    assert parse_status(text) == want


@pytest.mark.parametrize("text", ["99", "199", "600", "abc", "2O1", "0201", "²00", "20 1", "-200", "1e2"])
def test_bad_status_values(text: str) -> None:
    with pytest.raises(ValueError, match="status must be a number from 200 to 599"):
        parse_status(text)


@pytest.mark.parametrize(
    ("text", "has_body", "want"),
    [
        (None, True, "application/octet-stream"),
        (None, False, "text/plain; charset=utf-8"),
        ("text/csv\n", True, "text/csv"),
        ("application/vnd.ms-excel", True, "application/vnd.ms-excel"),
        ("text/html; charset=ISO-8859-1", True, "text/html; charset=ISO-8859-1"),
        ("application/problem+json", True, "application/problem+json"),
    ],
)
def test_content_types(text: str | None, has_body: bool, want: str) -> None:
    assert parse_content_type(text, has_body=has_body) == want


@pytest.mark.parametrize(
    "text", ["text", "text/plain\r\nX-Injected: 1", "text/plain\nSet-Cookie: a=b", "a/b" + "c" * 300, "tëxt/plain"]
)
def test_bad_content_types(text: str) -> None:
    with pytest.raises(ValueError, match="content-type"):
        parse_content_type(text, has_body=True)


def test_the_response_frame_round_trips() -> None:
    head = {"status": "201", "contentType": "text/csv", "size": 4, "error": None}
    wire = encode_frame("r", json.dumps(head).encode()) + encode_frame("d", b"a;b\n")
    parser = FrameParser()
    frames = list(parser.feed(wire))
    assert frames == [ResponseHead("201", "text/csv", 4, None), ArtifactData(b"a;b\n")]
    assert list(parser.feed(encode_frame("r", b"[1, 2]") + encode_frame("r", b"not json"))) == []
    assert parser.bad_lines == 2


def collect(frames: list[Any], *, limit: int = 1024) -> ArtifactCollector:
    collector = ArtifactCollector(10, 1 << 20, response_max_bytes=limit)
    for frame in frames:
        if isinstance(frame, ResponseHead):
            collector.begin_response(
                status=frame.status, content_type=frame.content_type, size=frame.size, error=frame.error
            )
        elif isinstance(frame, ArtifactHead):
            collector.begin(frame.path, frame.size)
        else:
            collector.data(frame.data)
    return collector


def test_the_answer_is_collected_apart_from_artifacts() -> None:
    c = collect(
        [
            ResponseHead("202", "application/pdf", 6, None),
            ArtifactData(b"%PDF"),
            ArtifactData(b"-1"),
            ArtifactHead("report.txt", 3),
            ArtifactData(b"abc"),
        ]
    )
    answer = c.response
    assert answer is not None and answer.usable
    assert (answer.status_code, answer.content_type, answer.body) == (202, "application/pdf", b"%PDF-1")
    arts = c.finish()
    assert [(a.path, a.file.read()) for a in arts] == [("report.txt", b"abc")]
    c.close()


def test_no_answer_without_a_response_frame() -> None:
    c = collect([ArtifactHead("a", 1), ArtifactData(b"x")])
    assert c.response is None


@pytest.mark.parametrize(
    ("frames", "error"),
    [
        ([ResponseHead("200", None, 2000, None)], "above CP_SCRIPT_RESPONSE_MAX_BYTES (1024)"),
        ([ResponseHead("200", None, 10, None), ArtifactData(b"12345")], "cut short (5 of 10 bytes)"),
        ([ResponseHead(None, None, 0, "status: Too many levels of symbolic links")], "symbolic links"),
        ([ResponseHead("42", None, 0, None)], "status must be a number"),
        ([ResponseHead("200", "no media type", 1, None), ArtifactData(b"x")], "content-type must be"),
    ],
)
def test_answers_that_cannot_be_used(frames: list[Any], error: str) -> None:
    answer = collect(frames).response
    assert answer is not None and not answer.usable and answer.body == b""
    assert answer.error is not None and error in answer.error


def test_one_answer_per_run_and_no_body_for_204() -> None:
    c = collect(
        [
            ResponseHead("204", None, 3, None),
            ArtifactData(b"abc"),
            ResponseHead("200", "text/plain", 5, None),
            ArtifactData(b"later"),
        ]
    )
    answer = c.response
    assert answer is not None and answer.usable and answer.status_code == 204 and answer.body == b""
    assert c.finish() == []


def test_defaults_without_a_status_or_type() -> None:
    answer = collect([ResponseHead(None, None, 3, None), ArtifactData(b"abc")]).response
    assert answer is not None and (answer.status_code, answer.content_type) == (200, "application/octet-stream")
    answer = collect([ResponseHead("201", None, 0, None)]).response
    assert answer is not None and (answer.status_code, answer.content_type, answer.body) == (
        201,
        "text/plain; charset=utf-8",
        b"",
    )


def test_a_request_is_wrapped_for_the_runner() -> None:
    request = ScriptRequest(
        method="PATCH",
        path="/scripting/script/s/run",
        query="q=" + "x" * 9000,
        headers=[("authorization", "Bearer secret"), ("x-a", "1"), ("X-A", "2"), ("proxy-authorization", "p")],
        content_type="text/plain",
        body=b"line one\nline two\n\x00",
    )
    data = wrap_request(Settings(sandbox_env_prefix="JQ_"), request, script_id="s", mode="run")
    assert data.startswith(REQUEST_MAGIC)
    line, _, body = data[len(REQUEST_MAGIC) :].partition(b"\n")
    assert body == request.body
    doc = json.loads(line)
    assert doc["request"]["headers"] == {"x-a": "1, 2"} and b"secret" not in data
    assert doc["request"]["queryParams"] == {"q": ["x" * 9000]}
    assert doc["env"]["JQ_REQUEST_METHOD"] == "PATCH" and doc["env"]["JQ_REQUEST_CONTENT_TYPE"] == "text/plain"
    assert "JQ_REQUEST_QUERY" not in doc["env"]  # too long for a variable: request.json has it


T0 = datetime(2022, 11, 11, 7, 9, 35, tzinfo=UTC)


def ending(run_status: RunStatus, *codes: str, started: bool = True, **answer: Any) -> Execution:
    return Execution(
        run_id="r",
        automation_id="a",
        status=run_status,
        errors=[{"code": c, "title": c} for c in codes],
        created_at=T0,
        start_time=T0 if started else None,
        answered=bool(answer),
        answer_status=answer.get("status"),
        answer_error=answer.get("error"),
    )


@pytest.mark.parametrize(
    ("execution", "want"),
    [
        (ending(RunStatus.RUNNING), None),
        (ending(RunStatus.FINISHED), 200),
        (ending(RunStatus.FINISHED_WITH_WARNINGS), 200),
        (ending(RunStatus.FINISHED, status=404), 404),
        (ending(RunStatus.FINISHED, "INVALID_RESPONSE", status=None, error="bad"), 502),
        (ending(RunStatus.FAILED, "NON_ZERO_EXIT", status=200), 502),
        (ending(RunStatus.FAILED, "KILLED_BY_SIGNAL"), 502),
        (ending(RunStatus.EXCEEDED_LIMIT, "OUT_OF_MEMORY"), 502),
        (ending(RunStatus.FAILED, "RUN_LOST"), 502),
        (ending(RunStatus.STOPPED, "STOPPED_BY_USER"), 502),
        (ending(RunStatus.EXCEEDED_LIMIT, "RUN_TIMEOUT"), 504),
        (ending(RunStatus.EXCEEDED_LIMIT, "RUN_TIMEOUT", started=False), 504),
        (ending(RunStatus.FAILED, "LAUNCH_FAILED", started=False), 500),
        (ending(RunStatus.FAILED, "NON_ZERO_EXIT", started=False), 500),  # exit 127: the script never ran
        (ending(RunStatus.NOT_STARTED, "QUEUE_TIMEOUT", started=False), 500),
    ],
)
def test_status_codes_of_endings(execution: Execution, want: int | None) -> None:
    assert status_code(execution) == want
