"""The Docker backend and the Kubernetes backend, side by side: one list of scenarios, both engines, the
same observable outcome at the backend contract.

The Kubernetes side is the whole path of a cluster: the backend creates the Job and its bundle Secret on
the real API server, the Job controller makes the pod, ``kubelet.py`` binds it and runs its container for
real in Docker (the sandbox image, the real runner, reading the bundle the pod mounts), and the backend
reads the runner's frames through the API server's pods/log proxy — stdout and stderr merged, as Kubernetes
serves them. Each run is driven the way the services layer drives it (services/execution/engine.py): launch, frames
under the run's deadline, then ``finish()``; past the deadline ``stop()`` instead.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

import pytest

from controlplane.backends.base import Backend, Resources, RunHandle, RunSpec
from controlplane.backends.kubernetes.manifests import job_name
from controlplane.backends.protocol import ArtifactData, ArtifactHead, Exited, Output, ResponseHead
from tests.kube.kubelet import Kubelet
from tests.kube.node import Node, eventually
from tests.support.backends import SpecFactory
from tests.support.kube import BackendFactory

RUN_TIMEOUT = 120.0  # a generous bound for a run that must end on its own (2 cores, shared)


@dataclass
class Observed:
    """What the caller of a backend sees of one run."""

    exit_code: int | None = None
    oom_killed: bool = False
    stdout: bytes = b""
    stderr: bytes = b""
    artifacts: dict[str, bytes] = field(default_factory=dict)
    response: tuple[str | None, str | None, bytes] | None = None
    timed_out: bool = False
    exited_frame: bool = False


async def observe(backend: Backend, spec: RunSpec, *, deadline: float = RUN_TIMEOUT) -> Observed:
    seen = Observed()
    current: str | None = None  # the artifact the next data frames belong to ("" = the response body)
    body = b""
    handle: RunHandle | None = None
    try:
        async with asyncio.timeout(deadline):
            execution = await backend.launch(spec)
            handle = execution.handle
            async for frame in execution.frames():
                if isinstance(frame, Output):
                    if frame.stream == "stdout":
                        seen.stdout += frame.data
                    else:
                        seen.stderr += frame.data
                elif isinstance(frame, ResponseHead):
                    current, seen.response = "", (frame.status, frame.content_type, b"")
                elif isinstance(frame, ArtifactHead):
                    current = frame.path
                    seen.artifacts[current] = b""
                elif isinstance(frame, ArtifactData) and current is not None:
                    if current:
                        seen.artifacts[current] += frame.data
                    else:
                        body += frame.data
                elif isinstance(frame, Exited):
                    seen.exited_frame = True
                    break
            outcome = await execution.finish()
    except TimeoutError:
        seen.timed_out = True
        if handle is None:  # the deadline passed during launch: the engine stops by the run's id
            prefix = cast(Any, backend).settings.container_prefix  # both engines' backends have settings
            handle = RunHandle(spec.run_id, spec.tenant_id, prefix + spec.run_id)
        await backend.stop(handle)  # what the engine does past a run's deadline
        return seen
    if seen.response is not None:
        seen.response = (seen.response[0], seen.response[1], body)
    seen.exit_code, seen.oom_killed = outcome.exit_code, outcome.oom_killed
    return seen


@dataclass(frozen=True)
class Scenario:
    id: str
    code: str
    expect: Callable[[Observed], None]
    options: dict[str, Any] = field(default_factory=dict)
    deadline: float = RUN_TIMEOUT


def _ok(code: int) -> Callable[[Observed], None]:
    def check(seen: Observed) -> None:
        assert (seen.exit_code, seen.oom_killed, seen.timed_out, seen.exited_frame) == (code, False, False, True)

    return check


def _printed(code: int, stdout: bytes, stderr: bytes) -> Callable[[Observed], None]:
    def check(seen: Observed) -> None:
        _ok(code)(seen)
        assert (seen.stdout, seen.stderr) == (stdout, stderr)

    return check


def _interleaved(seen: Observed) -> None:
    _ok(0)(seen)
    assert seen.stdout == b"".join(b"out %d\n" % i for i in range(20))
    assert seen.stderr == b"".join(b"err %d\n" % i for i in range(20))


def _echo(seen: Observed) -> None:
    _ok(0)(seen)
    assert seen.stdout == b"args=['one', 'two words'] GREETING=hello stdin='line 1\\nline 2\\n'\n"


def _artifacts(seen: Observed) -> None:
    _ok(0)(seen)
    assert seen.artifacts == {"report.txt": b"the report\n", "sub/data.bin": bytes(range(256)) * 100}
    assert seen.response == ("201", "application/json", b'{"made": 2}')


def _oom(seen: Observed) -> None:
    assert seen.oom_killed is True and seen.exit_code == 137 and not seen.timed_out


def _deadline(seen: Observed) -> None:
    assert seen.timed_out and seen.exit_code is None


INTERLEAVED = """
import sys
for i in range(20):
    sys.stdout.write("out %d\\n" % i); sys.stdout.flush()
    sys.stderr.write("err %d\\n" % i); sys.stderr.flush()
"""
LARGE = """
import sys
for i in range(5000):
    sys.stdout.write("%06d %s\\n" % (i, "x" * 200))
"""
ECHO = """
import os, sys
print("args=%r GREETING=%s stdin=%r" % (sys.argv[1:], os.environ["GREETING"], sys.stdin.read()))
"""
ARTIFACTS = """
import os
os.makedirs("../outputs/sub", exist_ok=True)
open("../outputs/report.txt", "w").write("the report\\n")
open("../outputs/sub/data.bin", "wb").write(bytes(range(256)) * 100)
open("../outputs/.response/status", "w").write("201")
open("../outputs/.response/content-type", "w").write("application/json")
open("../outputs/.response/body", "w").write('{"made": 2}')
"""
BOMB = """
hog = []
while True:
    hog.append(b"\\x01" * (8 << 20))
"""
SCENARIOS = [
    Scenario("exit-0", "print('hello')", _printed(0, b"hello\n", b"")),
    Scenario("exit-3", "import sys; print('bye', file=sys.stderr); sys.exit(3)", _printed(3, b"", b"bye\n")),
    Scenario(
        "shell", "echo from sh; echo oops >&2; exit 5", _printed(5, b"from sh\n", b"oops\n"), {"runtime": "shell"}
    ),
    Scenario("large-output", LARGE, _printed(0, b"".join(b"%06d %s\n" % (i, b"x" * 200) for i in range(5000)), b"")),
    Scenario("stdout-stderr-apart", INTERLEAVED, _interleaved),
    Scenario(
        "stdin-env-args",
        ECHO,
        _echo,
        {"args": ["one", "two words"], "env": {"GREETING": "hello"}, "input": b"line 1\nline 2\n"},
    ),
    Scenario("artifacts-and-response", ARTIFACTS, _artifacts),
    Scenario("oom", BOMB, _oom, {"resources": Resources(cpus=1.0, memory_mb=64, pids=32, tmp_mb=8, work_mb=8)}),
    # memoryMb means the same on both: 150 MB in a 64 MB run is OUT_OF_MEMORY even beside 64 MB scratch
    # volumes (the pod's limit once added their sizes, 192 Mi, and the script finished on Kubernetes only)
    Scenario(
        "150mb-in-64mb",
        "blob = b'\\x01' * (150 << 20)\nprint(len(blob))",
        _oom,
        {"resources": Resources(cpus=1.0, memory_mb=64, pids=32, tmp_mb=64, work_mb=64)},
    ),
    Scenario("deadline", "import time; print('sleeping', flush=True); time.sleep(600)", _deadline, deadline=6.0),
]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.id for s in SCENARIOS])
async def test_same_outcome_on_docker_and_kubernetes(
    scenario: Scenario,
    make_spec: SpecFactory,
    docker_backend: Backend,
    make_backend: BackendFactory,
    kubelet: Kubelet,
    node: Node,
) -> None:
    def spec() -> RunSpec:
        made = make_spec(scenario.code, **scenario.options)
        return dataclasses.replace(made, deadline_seconds=min(made.deadline_seconds, scenario.deadline))

    on_docker = await observe(docker_backend, spec(), deadline=scenario.deadline)
    kube_backend = await make_backend()
    kube_spec = spec()
    on_kube = await observe(kube_backend, kube_spec, deadline=scenario.deadline)

    scenario.expect(on_docker)
    scenario.expect(on_kube)
    if scenario.id == "deadline":  # how much output beat the deadline depends on start-up time
        assert on_docker.stdout in (b"", b"sleeping\n") and on_kube.stdout in (b"", b"sleeping\n")
        on_docker.stdout = on_kube.stdout = b""
    assert on_kube == on_docker

    await node.gone("jobs", job_name(kube_backend.settings, kube_spec.run_id), group="batch/v1")
    await eventually(lambda: _no_pods(node), what="the run's pod to be deleted")
    await eventually(lambda: _no_containers(kubelet), what="the kubelet to remove the run's container")


async def _no_pods(node: Node) -> bool | None:
    resp = await node.api.get(node.path("pods"))
    resp.raise_for_status()
    return True if not resp.json().get("items") else None


async def _no_containers(kubelet: Kubelet) -> bool | None:
    return True if not await asyncio.to_thread(kubelet.leftovers) else None
