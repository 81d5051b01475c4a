"""The fake backend keeps the contract the services layer relies on."""

from __future__ import annotations

import asyncio
import json

import pytest

from controlplane.backends import get_backend
from controlplane.backends.base import RunSpec, SandboxState
from controlplane.backends.fake import FakeBackend
from controlplane.core.errors import BackendUnavailable, LaunchFailed, NotFound, SandboxImageMissing
from controlplane.core.settings import Settings
from tests.support.backends import SpecFactory, drive, follow


def scripted(make_spec: SpecFactory, **script: object) -> RunSpec:
    return make_spec(files={"fake.json": json.dumps(script).encode()}, entrypoint="fake.json")


def test_registry_builds_it() -> None:
    assert isinstance(get_backend("fake", Settings()), FakeBackend)


async def test_default_run(make_spec: SpecFactory) -> None:
    result = await drive(FakeBackend(), make_spec())
    assert result.stdout == b"ok\n" and result.stderr == b""
    assert result.outcome is not None and result.outcome.exit_code == 0


async def test_scripted_frames(make_spec: SpecFactory) -> None:
    spec = scripted(make_spec, stdout="x" * 20000, stderr="bad\n", exitCode=3, artifacts={"out/a.txt": "A"})
    result = await drive(FakeBackend(), spec)
    assert result.stdout == b"x" * 20000 and result.stderr == b"bad\n"
    assert result.artifacts == {"out/a.txt": b"A"}
    assert result.exited is not None and result.exited.exit_code == 3
    assert result.outcome is not None and result.outcome.exit_code == 3


async def test_oom(make_spec: SpecFactory) -> None:
    result = await drive(FakeBackend(), scripted(make_spec, oom=True))
    assert result.outcome is not None
    assert result.outcome.oom_killed and result.outcome.exit_code == 137


async def test_stop_during_sleep_ends_as_killed(make_spec: SpecFactory) -> None:
    backend = FakeBackend()
    spec = scripted(make_spec, sleep=30, stdout="never")
    execution = await backend.launch(spec)
    assert [s.state for s in await backend.list_sandboxes()] == [SandboxState.RUNNING]
    task = asyncio.create_task(follow(execution))
    await asyncio.sleep(0.05)
    await backend.stop(execution.handle)
    await backend.stop(execution.handle)  # twice is fine
    result = await asyncio.wait_for(task, 2)
    assert result.stdout == b"" and result.exited is None
    assert result.outcome is not None and result.outcome.exit_code == 137
    assert await backend.list_sandboxes() == []


async def test_launch_is_idempotent_and_attach_finds_it(make_spec: SpecFactory) -> None:
    backend = FakeBackend()
    spec = make_spec()
    first = await backend.launch(spec)
    await backend.launch(spec)
    assert len(backend.launched) == 1
    result = await follow(await backend.attach(first.handle))
    assert result.stdout == b"ok\n"
    with pytest.raises(NotFound):
        await backend.attach(first.handle)


@pytest.mark.parametrize(
    ("name", "error"),
    [("unavailable", BackendUnavailable), ("failed", LaunchFailed), ("image", SandboxImageMissing)],
)
async def test_scripted_launch_errors(make_spec: SpecFactory, name: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        await FakeBackend().launch(scripted(make_spec, launchError=name))


async def test_switched_off(make_spec: SpecFactory) -> None:
    backend = FakeBackend()
    backend.available = False
    with pytest.raises(BackendUnavailable):
        await backend.ping()
    with pytest.raises(BackendUnavailable):
        await backend.launch(make_spec())
