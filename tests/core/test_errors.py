"""The error tree: every class answers with a code from the one catalogue, and statuses map to classes."""

from __future__ import annotations

import pytest

import controlplane.main  # noqa: F401  (loads every module, so every subclass is seen)
from controlplane.core import errors
from controlplane.core.errors import Code, ControlPlaneError


def _classes() -> list[type[ControlPlaneError]]:
    found: list[type[ControlPlaneError]] = []
    todo = [ControlPlaneError]
    while todo:
        kind = todo.pop()
        found.append(kind)
        todo.extend(kind.__subclasses__())
    return found


@pytest.mark.parametrize("kind", _classes(), ids=lambda k: k.__name__)
def test_every_error_class_answers_with_a_catalogued_code(kind: type[ControlPlaneError]) -> None:
    assert isinstance(kind.code, Code), f"{kind.__name__}.code = {kind.code!r} is not in Code"
    assert 400 <= kind.status_code <= 599


def test_no_two_classes_declare_the_same_code() -> None:
    codes = [k.code for k in _classes() if "code" in vars(k)]
    assert len(codes) == len(set(codes))


def test_a_given_code_and_title_override_the_class_defaults_but_keep_its_status() -> None:
    exc = errors.NotFound("automation 'x' not found", code=Code.AUTOMATION_NOT_FOUND)
    assert exc.status_code == 404
    assert exc.entries() == [
        {"code": "AUTOMATION_NOT_FOUND", "title": "Not found", "detail": "automation 'x' not found"}
    ]


def test_extra_entries_follow_the_first() -> None:
    extra = [{"code": "PARAMETER_MISSING", "title": "Missing parameter", "detail": "n is mandatory"}]
    exc = errors.BadRequest("1 problem(s)", code=Code.INVALID_PARAMETERS, extra=extra)
    assert exc.entries()[1:] == extra


def test_headers_ride_with_the_error() -> None:
    assert errors.Unauthorized().headers == {"WWW-Authenticate": "Bearer"}
    assert errors.QuotaExceeded(retry_after=0).headers == {"Retry-After": "1"}
    assert errors.MethodNotAllowed(headers={"Allow": "GET"}).status_code == 405


@pytest.mark.parametrize(
    ("status", "kind"),
    [(404, errors.NotFound), (405, errors.MethodNotAllowed), (422, errors.ValidationFailed), (418, errors.BadRequest)],
)
def test_a_framework_status_maps_to_its_class(status: int, kind: type[ControlPlaneError]) -> None:
    exc = errors.for_http_status(status, "said the framework")
    assert type(exc) is kind
    assert exc.title == "said the framework"


def test_an_unknown_server_status_is_an_internal_error() -> None:
    exc = errors.for_http_status(599, "odd")
    assert type(exc) is ControlPlaneError
    assert exc.status_code == 500
