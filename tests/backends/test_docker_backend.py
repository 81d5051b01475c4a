"""DockerBackend against the real engine: runs that behave, and runs that attack their sandbox.

Every test drives the backend the way the services layer does (launch -> frames -> finish, stop on a
deadline) and then looks at the engine itself to check that nothing is left behind. The unit tests at the
bottom need no engine.
"""

from __future__ import annotations

import asyncio
import errno
import json
import os
import threading
import time
from collections.abc import AsyncGenerator
from typing import Any, cast

import psutil
import pytest

from controlplane.backends.base import (
    LABEL_AUTOMATION,
    LABEL_MANAGED,
    LABEL_RUN,
    LABEL_TENANT,
    Resources,
    RunHandle,
    SandboxState,
)
from controlplane.backends.docker.backend import DockerBackend, _sandbox_info
from controlplane.backends.docker.config import container_config
from controlplane.backends.docker.execution import parse_time, usage_from
from controlplane.backends.docker.stream import Demuxer
from controlplane.backends.protocol import Exited, Frame
from controlplane.core.errors import BackendUnavailable, LaunchFailed, NotFound, SandboxImageMissing
from controlplane.core.settings import Settings
from controlplane.core.states import NetworkMode
from tests.support.backends import Collector, SpecFactory, drive, follow

docker_only = pytest.mark.docker
MiB = 1024 * 1024


def containers_named(api: Any, name: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = api.containers(all=True, filters={"name": f"^/{name}$"})
    return found


def report(result: Any) -> Any:
    """The JSON document a probe script printed last."""
    return json.loads(result.stdout.decode().strip().splitlines()[-1])


# --- runs that behave -------------------------------------------------------------------------------


@docker_only
async def test_python_run_streams_args_input_and_exit_code(
    docker_backend: DockerBackend, docker_api: Any, make_spec: SpecFactory
) -> None:
    code = """
import sys, json
print(json.dumps({"argv": sys.argv[1:], "stdin": sys.stdin.read(), "file": open("/work/input").read()}))
print("to stderr", file=sys.stderr)
sys.exit(7)
"""
    argv = ["$(id); rm -rf / | & > x", "`reboot`", "a b", "", "--flag=*"]
    spec = make_spec(code, args=argv, input=b"the input\n")
    result = await drive(docker_backend, spec)
    assert report(result) == {"argv": argv, "stdin": "the input\n", "file": "the input\n"}
    assert result.stderr == b"to stderr\n"
    assert result.exited is not None and result.exited.exit_code == 7
    assert result.outcome is not None and result.outcome.exit_code == 7 and not result.outcome.oom_killed
    assert result.outcome.usage.cpu_seconds > 0 and result.outcome.usage.memory_peak_bytes > 0
    assert containers_named(docker_api, docker_backend.settings.container_prefix + spec.run_id) == []


@docker_only
async def test_shell_run(docker_backend: DockerBackend, make_spec: SpecFactory) -> None:
    script = 'for a in "$@"; do printf "<%s>" "$a"; done; echo; cat; echo oops >&2; exit 0\n'
    spec = make_spec(script, runtime="shell", args=["$(id)", "; ls", "a  b"], input=b"from stdin")
    result = await drive(docker_backend, spec)
    assert result.stdout == b"<$(id)><; ls><a  b>\nfrom stdin"
    assert result.stderr == b"oops\n"
    assert result.outcome is not None and result.outcome.exit_code == 0


@docker_only
async def test_non_zero_exit(docker_backend: DockerBackend, make_spec: SpecFactory) -> None:
    result = await drive(docker_backend, make_spec("exit 42\n", runtime="shell"))
    assert result.outcome is not None and result.outcome.exit_code == 42
    assert result.outcome.detail is None


@docker_only
async def test_artifacts_nested_and_planted_symlinks_not_followed(
    docker_backend: DockerBackend, make_spec: SpecFactory
) -> None:
    code = """
import os
os.makedirs("/work/outputs/deep/er", exist_ok=True)
open("/work/outputs/top.txt", "w").write("top")
open("/work/outputs/deep/er/data.bin", "wb").write(bytes(range(256)) * 100)
os.symlink("/etc/passwd", "/work/outputs/passwd")
os.symlink("/etc", "/work/outputs/etcdir")
"""
    result = await drive(docker_backend, make_spec(code))
    assert result.artifacts == {"top.txt": b"top", "deep/er/data.bin": bytes(range(256)) * 100}
    assert ("passwd", "symlink") in result.skipped and ("etcdir", "symlink") in result.skipped
    assert all(b"root:x:0:0" not in data for data in result.artifacts.values())


# --- runs that attack ---------------------------------------------------------------------------


@docker_only
async def test_fork_bomb_is_held_by_the_pids_limit(
    docker_backend: DockerBackend, docker_api: Any, make_spec: SpecFactory
) -> None:
    code = """
import os, time
if os.fork() == 0:
    while True:
        try:
            os.fork()
        except OSError:
            time.sleep(0.01)
time.sleep(3)
print("parent survived")
"""
    spec = make_spec(code, resources=Resources(cpus=1.0, memory_mb=256, pids=32, tmp_mb=16, work_mb=32))
    name = docker_backend.settings.container_prefix + spec.run_id
    in_sandbox: list[int] = []
    stop = threading.Event()

    def sample() -> None:  # the engine's own count of the sandbox's processes, while the bomb goes off
        while not stop.is_set():
            try:
                in_sandbox.append(int(docker_api.stats(name, stream=False, one_shot=True)["pids_stats"]["current"]))
            except Exception:
                pass  # not created yet, or already removed
            time.sleep(0.1)

    host_before = len(psutil.pids())
    sampler = threading.Thread(target=sample)
    sampler.start()
    started = time.monotonic()
    try:
        result = await drive(docker_backend, spec, timeout=60)
    finally:
        stop.set()
        sampler.join()
    assert time.monotonic() - started < 30
    assert result.stdout == b"parent survived\n"
    assert result.outcome is not None and result.outcome.exit_code == 0
    assert in_sandbox and max(in_sandbox) <= 32  # held at the limit...
    assert max(in_sandbox) >= 24  # ...which the bomb really reached
    assert len(psutil.pids()) < host_before + 16  # and nothing of it is left on the host


@docker_only
async def test_memory_bomb_is_oom_killed(docker_backend: DockerBackend, make_spec: SpecFactory) -> None:
    code = """
hog = []
while True:
    hog.append(b"\\x01" * (8 << 20))
"""
    spec = make_spec(code, resources=Resources(cpus=1.0, memory_mb=64, pids=32, tmp_mb=8, work_mb=8))
    result = await drive(docker_backend, spec)
    assert result.outcome is not None
    assert result.outcome.oom_killed is True
    assert result.outcome.exit_code == 137


@docker_only
@pytest.mark.parametrize(
    ("runtime", "code"), [("python", "while True:\n    pass\n"), ("shell", "echo started; sleep 1000\n")]
)
async def test_runaway_is_stopped_at_the_deadline_and_removed(
    docker_backend: DockerBackend, docker_api: Any, make_spec: SpecFactory, runtime: str, code: str
) -> None:
    spec = make_spec(code, runtime=runtime)
    execution = await docker_backend.launch(spec)
    collector = Collector()

    async def consume() -> None:
        async for frame in execution.frames():
            collector.add(frame)

    with pytest.raises(TimeoutError):
        await asyncio.wait_for(consume(), 2.0)  # the caller's deadline
    pump = execution._pump  # type: ignore[attr-defined]
    for _ in range(50):  # cancelling frames() released the socket and its reader thread promptly
        if not pump.reader_alive:
            break
        await asyncio.sleep(0.02)
    assert not pump.reader_alive
    await docker_backend.stop(execution.handle)
    outcome = await execution.finish()
    assert outcome.exit_code == 137 and outcome.detail == "stopped by the control plane"
    assert containers_named(docker_api, execution.handle.ref) == []
    assert collector.result.exited is None


@docker_only
async def test_abandoned_frames_without_stop_are_killed_by_finish(
    docker_backend: DockerBackend, docker_api: Any, make_spec: SpecFactory
) -> None:
    execution = await docker_backend.launch(make_spec("sleep 1000\n", runtime="shell"))
    agen = cast(AsyncGenerator[Frame, None], execution.frames())
    first = await agen.__anext__()  # Started
    assert first is not None
    await agen.aclose()
    outcome = await asyncio.wait_for(execution.finish(), 30)
    assert outcome.exit_code == 137
    assert containers_named(docker_api, execution.handle.ref) == []


@docker_only
async def test_stdout_flood_keeps_memory_flat(docker_backend: DockerBackend, make_spec: SpecFactory) -> None:
    await drive(docker_backend, make_spec("print('warm up')"))  # imports, pools, threads settle first
    total = 50 * MiB
    code = f"""
import sys
chunk = b"F" * 65536
for _ in range({total} // 65536):
    sys.stdout.buffer.write(chunk)
sys.stdout.buffer.flush()
print("done", file=sys.stderr)
"""
    me = psutil.Process()
    before = me.memory_info().rss
    peak = before
    seen = 0
    execution = await docker_backend.launch(make_spec(code))
    exited = None
    async for frame in execution.frames():
        if getattr(frame, "stream", None) == "stdout":
            seen += len(frame.data)  # type: ignore[union-attr]
            if seen % (4 * MiB) < 8192:
                peak = max(peak, me.memory_info().rss)
        elif isinstance(frame, Exited):
            exited = frame
    outcome = await execution.finish()
    peak = max(peak, me.memory_info().rss)
    assert seen == total
    assert exited is not None and outcome.exit_code == 0
    assert peak - before < 30 * MiB, f"RSS grew by {(peak - before) / MiB:.1f} MiB"


PROBE_NETWORK = """
import json, socket
out = {}
try:
    socket.create_connection(("1.1.1.1", 53), timeout=3).close()
    out["connect"] = "connected"
except OSError as exc:
    out["connect"] = type(exc).__name__
try:
    socket.getaddrinfo("example.com", 443)
    out["dns"] = "resolved"
except OSError as exc:
    out["dns"] = type(exc).__name__
routes = open("/proc/net/route").read().splitlines()[1:]
out["default_route"] = any(line.split()[1] == "00000000" for line in routes)
out["interfaces"] = sorted(name for _, name in socket.if_nameindex())
print(json.dumps(out))
"""


@docker_only
async def test_network_none_reaches_nothing(docker_backend: DockerBackend, make_spec: SpecFactory) -> None:
    doc = report(await drive(docker_backend, make_spec(PROBE_NETWORK)))
    assert doc["connect"] != "connected"
    assert doc["dns"] != "resolved"
    assert doc["default_route"] is False
    assert doc["interfaces"] == ["lo"]


PROBE_PRIVILEGES = """
import json, os
status = dict(line.split(":", 1) for line in open("/proc/self/status").read().splitlines() if ":" in line)
out = {k: status[k].split() for k in ("Uid", "Gid", "NoNewPrivs", "CapEff", "CapPrm", "CapBnd", "CapAmb")}
def attempt(path):
    try:
        with open(path, "a"):
            return "written"
    except OSError as exc:
        return exc.errno
out["writes"] = {p: attempt(p) for p in ("/x", "/usr/x", "/etc/passwd", "/opt/controlplane/runner.py")}
mounts = [line.split() for line in open("/proc/mounts")]
out["root_options"] = [m[3] for m in mounts if m[1] == "/"][-1].split(",")
out["work"] = [m[3] for m in mounts if m[1] == "/work"][-1].split(",")
out["tmp"] = [m[3] for m in mounts if m[1] == "/tmp"][-1].split(",")
out["sockets"] = [p for p in ("/var/run/docker.sock", "/run/docker.sock") if os.path.exists(p)]
out["hostname"] = open("/etc/hostname").read().strip()
tool = "/work/home/tool.sh"
open(tool, "w").write("#!/bin/sh\\necho exec-ok\\n")
os.chmod(tool, 0o755)
out["exec_work"] = os.popen(tool).read().strip()
open("/tmp/tool.sh", "w").write("#!/bin/sh\\necho exec-ok\\n")
os.chmod("/tmp/tool.sh", 0o755)
try:
    os.execv("/tmp/tool.sh", ["/tmp/tool.sh"])
except OSError as exc:
    out["exec_tmp"] = exc.errno
print(json.dumps(out))
"""


@docker_only
async def test_no_privileges_read_only_root_no_docker_socket(
    docker_backend: DockerBackend, make_spec: SpecFactory
) -> None:
    doc = report(await drive(docker_backend, make_spec(PROBE_PRIVILEGES)))
    assert doc["Uid"] == ["10001"] * 4 and doc["Gid"] == ["10001"] * 4
    assert doc["NoNewPrivs"] == ["1"]
    for caps in ("CapEff", "CapPrm", "CapBnd", "CapAmb"):
        assert doc[caps] == ["0000000000000000"], caps
    assert all(v in (errno.EROFS, errno.EACCES) for v in doc["writes"].values()), doc["writes"]
    assert "ro" in doc["root_options"]
    assert "noexec" not in doc["work"] and {"nosuid", "nodev"} <= set(doc["work"])
    assert {"noexec", "nosuid", "nodev"} <= set(doc["tmp"])
    assert doc["sockets"] == []
    assert doc["hostname"] == "sandbox"
    assert doc["exec_work"] == "exec-ok"
    assert doc["exec_tmp"] == errno.EACCES


@docker_only
async def test_disk_fill_ends_with_enospc_inside(docker_backend: DockerBackend, make_spec: SpecFactory) -> None:
    code = """
import json, os
out = {}
for d in ("/work/home", "/tmp"):
    written = 0
    try:
        with open(os.path.join(d, "fill"), "wb") as fh:
            while True:
                written += fh.write(b"\\0" * (1 << 20))
                fh.flush()
    except OSError as exc:
        out[d] = [exc.errno, written >> 20]
    os.unlink(os.path.join(d, "fill"))
print(json.dumps(out))
"""
    spec = make_spec(code, resources=Resources(cpus=1.0, memory_mb=256, pids=32, tmp_mb=8, work_mb=16))
    result = await drive(docker_backend, spec)
    doc = report(result)
    assert doc["/work/home"][0] == errno.ENOSPC and doc["/work/home"][1] <= 16
    assert doc["/tmp"][0] == errno.ENOSPC and doc["/tmp"][1] <= 8
    assert result.outcome is not None and result.outcome.exit_code == 0


@docker_only
async def test_files_do_not_persist_between_runs(docker_backend: DockerBackend, make_spec: SpecFactory) -> None:
    plant = "for p in ('/work/home/left', '/tmp/left', '/work/code/left'):\n    open(p, 'w').write('x')\n"
    await drive(docker_backend, make_spec(plant))
    paths = "('/work/home/left', '/tmp/left', '/work/code/left')"
    look = f"import os, json\nprint(json.dumps([os.path.exists(p) for p in {paths}]))\n"
    result = await drive(docker_backend, make_spec(look))
    assert report(result) == [False, False, False]


@docker_only
async def test_control_plane_environment_is_not_visible(
    docker_backend: DockerBackend, docker_api: Any, make_spec: SpecFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "s3cret-" + os.urandom(8).hex()
    monkeypatch.setenv("CP_TEST_SECRET", secret)
    monkeypatch.setenv("DATABASE_PASSWORD", secret)
    code = """
import os, glob
print(repr(dict(os.environ)))
for path in glob.glob("/proc/[0-9]*/environ"):
    try:
        print(open(path, "rb").read())
    except OSError:
        pass
"""
    spec = make_spec(code + "import time; time.sleep(1)\n", env={"GIVEN": "yes"})
    execution = await docker_backend.launch(spec)
    info = docker_api.inspect_container(execution.handle.ref)
    result = await follow(execution)
    assert secret not in json.dumps(info)
    assert secret.encode() not in result.stdout
    assert b"'GIVEN': 'yes'" in result.stdout


@docker_only
async def test_zombies_are_reaped(docker_backend: DockerBackend, make_spec: SpecFactory) -> None:
    code = """
import os, time
for _ in range(20):
    if os.fork() == 0:          # child: exits at once, never waited for
        os._exit(0)
for _ in range(10):             # grandchildren orphaned to tini (pid 1)
    if os.fork() == 0:
        if os.fork() == 0:
            time.sleep(0.3)
            os._exit(0)
        os._exit(0)
time.sleep(1)
def zombies(ppid):
    n = 0
    for st in os.listdir("/proc"):
        if st.isdigit():
            try:
                fields = open(f"/proc/{st}/stat").read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            n += fields[0] == "Z" and fields[1] == str(ppid)
    return n
print(zombies(os.getpid()), zombies(1))
"""
    started = time.monotonic()
    result = await drive(docker_backend, make_spec(code), timeout=30)
    assert time.monotonic() - started < 15
    mine, init = result.stdout.split()
    assert int(mine) == 30  # the script's own unwaited children (20 + 10 middle ones) are its business...
    assert int(init) == 0  # ...but orphans are reaped by the image's init
    assert result.outcome is not None and result.outcome.exit_code == 0


# --- engine-side facts: name, labels, idempotency, stop, list, attach --------------------------------


@docker_only
async def test_container_name_labels_and_hardening(
    docker_backend: DockerBackend, docker_api: Any, make_spec: SpecFactory
) -> None:
    spec = make_spec("import time; time.sleep(30)", labels={"io.example.extra": "1"})
    execution = await docker_backend.launch(spec)
    try:
        info = docker_api.inspect_container(docker_backend.settings.container_prefix + spec.run_id)
        labels = info["Config"]["Labels"]
        assert labels[LABEL_MANAGED] == "true" and labels[LABEL_RUN] == spec.run_id
        assert labels[LABEL_TENANT] == "tenant-1" and labels[LABEL_AUTOMATION] == "automation-1"
        assert labels["io.example.extra"] == "1"
        hc = info["HostConfig"]
        assert hc["Privileged"] is False and hc["ReadonlyRootfs"] is True
        assert hc["CapDrop"] == ["ALL"] and not hc["CapAdd"]
        assert hc["SecurityOpt"] == ["no-new-privileges:true"]
        assert hc["NetworkMode"] == "none"
        assert not hc["Binds"] and not hc.get("Mounts")
        assert hc["Memory"] == hc["MemorySwap"] == 256 * MiB
        assert hc["NanoCpus"] == 1_000_000_000 and hc["PidsLimit"] == 64
        ulimits = {u["Name"]: (u["Soft"], u["Hard"]) for u in hc["Ulimits"]}
        assert ulimits["nofile"] == (1024, 1024) and ulimits["core"] == (0, 0)
        assert ulimits["fsize"] == (33 * MiB, 33 * MiB)  # one MiB above the largest tmpfs
        assert hc["LogConfig"]["Type"] == "json-file" and hc["LogConfig"]["Config"]["max-file"] == "2"
        assert set(hc["Tmpfs"]) == {"/work", "/tmp"}
        assert info["Config"]["User"] == "10001:10001"
        assert info["Config"]["OpenStdin"] is True and info["Config"]["StdinOnce"] is True
        assert info["Config"]["Tty"] is False
    finally:
        await docker_backend.stop(execution.handle)
        await execution.finish()


@docker_only
async def test_second_launch_with_the_same_run_id_follows_the_first(
    docker_backend: DockerBackend, docker_api: Any, make_spec: SpecFactory
) -> None:
    spec = make_spec("import time; print('once', flush=True); time.sleep(1); print('twice')")
    first = await docker_backend.launch(spec)
    second = await docker_backend.launch(spec)
    assert first.handle == second.handle
    assert len(containers_named(docker_api, first.handle.ref)) == 1
    a, b = await asyncio.gather(follow(first), follow(second))
    assert a.stdout == b.stdout == b"once\ntwice\n"
    assert a.outcome is not None and b.outcome is not None
    assert a.outcome.exit_code == 0 and b.outcome.exit_code in (0, None)
    assert containers_named(docker_api, first.handle.ref) == []


@docker_only
async def test_launch_finds_a_created_container_instead_of_making_another(
    docker_backend: DockerBackend, docker_api: Any, make_spec: SpecFactory
) -> None:
    spec = make_spec("print('started by the retry')")
    cfg = container_config(spec, docker_backend.settings, network_mode="none")
    docker_api.create_container(name=cfg.name, host_config=docker_api.create_host_config(**cfg.host), **cfg.create)
    result = await drive(docker_backend, spec)  # the retried launch after a create that "timed out"
    assert result.stdout == b"started by the retry\n"
    assert containers_named(docker_api, cfg.name) == []


@docker_only
async def test_name_taken_by_another_run_is_refused(
    docker_backend: DockerBackend, docker_api: Any, make_spec: SpecFactory
) -> None:
    spec = make_spec()
    other = make_spec(run_id="someone-else")
    cfg = container_config(other, docker_backend.settings, network_mode="none")
    name = docker_backend.settings.container_prefix + spec.run_id
    docker_api.create_container(name=name, host_config=docker_api.create_host_config(**cfg.host), **cfg.create)
    with pytest.raises(LaunchFailed, match="another run"):
        await docker_backend.launch(spec)
    docker_api.remove_container(name, force=True)


@docker_only
async def test_stop_twice_and_stop_of_nothing(
    docker_backend: DockerBackend, docker_api: Any, make_spec: SpecFactory
) -> None:
    execution = await docker_backend.launch(make_spec("sleep 1000\n", runtime="shell"))
    await docker_backend.stop(execution.handle)
    await docker_backend.stop(execution.handle)
    await docker_backend.stop(RunHandle("nope", "tenant-1", docker_backend.settings.container_prefix + "nope"))
    result = await follow(execution, timeout=10)
    assert result.outcome is not None and result.outcome.exit_code == 137
    assert containers_named(docker_api, execution.handle.ref) == []


@docker_only
async def test_list_sandboxes_finds_a_running_one(docker_backend: DockerBackend, make_spec: SpecFactory) -> None:
    spec = make_spec("sleep 1000\n", runtime="shell")
    execution = await docker_backend.launch(spec)
    try:
        mine = [s for s in await docker_backend.list_sandboxes() if s.handle.run_id == spec.run_id]
        assert len(mine) == 1
        (info,) = mine
        assert info.state == SandboxState.RUNNING and info.handle == execution.handle
        assert info.started_at is not None and info.started_at.tzinfo is not None
        assert info.exit_code is None and info.finished_at is None
    finally:
        await docker_backend.stop(execution.handle)
        await execution.finish()
    assert all(s.handle.run_id != spec.run_id for s in await docker_backend.list_sandboxes())


@docker_only
async def test_attach_after_a_restart_of_the_control_plane(
    backend_settings: Settings, docker_api: Any, make_spec: SpecFactory
) -> None:
    spec = make_spec("import time; print('before', flush=True); time.sleep(1.5); print('after'); exit(4)")
    old = DockerBackend(backend_settings)
    execution = await old.launch(spec)
    handle = execution.handle
    await old.close()  # the control plane "dies" without reading or finishing
    new = DockerBackend(backend_settings)
    try:
        result = await follow(await new.attach(handle))
        assert result.stdout == b"before\nafter\n"
        assert result.outcome is not None and result.outcome.exit_code == 4
        assert containers_named(docker_api, handle.ref) == []
        with pytest.raises(NotFound):
            await new.attach(handle)
    finally:
        await new.close()


@docker_only
async def test_missing_image(docker_backend: DockerBackend, make_spec: SpecFactory) -> None:
    spec = make_spec()
    spec = type(spec)(**{**spec.__dict__, "image": "controlplane-sandbox-python:no-such-tag"})
    with pytest.raises(SandboxImageMissing, match="make image") as caught:
        await docker_backend.launch(spec)
    assert caught.value.__cause__ is not None
    bad = DockerBackend(Settings(sandbox_image="controlplane-sandbox-python:no-such-tag"))
    try:
        with pytest.raises(SandboxImageMissing, match="make image"):
            await bad.prepare()
    finally:
        await bad.close()
    await docker_backend.prepare()


@docker_only
async def test_network_modes_without_a_provider_are_refused(
    docker_backend: DockerBackend, make_spec: SpecFactory
) -> None:
    for mode in (NetworkMode.API, NetworkMode.EGRESS):
        with pytest.raises(LaunchFailed, match=f"network mode {mode.value} is not available"):
            await docker_backend.launch(make_spec(network=mode))


async def test_unreachable_engine(make_spec: SpecFactory, tmp_path: Any) -> None:
    backend = DockerBackend(Settings(docker_url=f"unix://{tmp_path}/no.sock", docker_timeout_seconds=2))
    try:
        with pytest.raises(BackendUnavailable) as caught:
            await backend.ping()
        assert caught.value.__cause__ is not None
        with pytest.raises(BackendUnavailable):
            await backend.launch(make_spec())
        with pytest.raises(BackendUnavailable):
            await backend.list_sandboxes()
    finally:
        await backend.close()


# --- no engine needed --------------------------------------------------------------------------------


def test_demuxer_splits_headers_and_payloads_anywhere() -> None:
    wire = (
        b"\x01\x00\x00\x00\x00\x00\x00\x05hello"
        + b"\x02\x00\x00\x00\x00\x00\x00\x03err"
        + b"\x01\x00\x00\x00\x00\x00\x00\x00"
    )
    for step in (1, 3, 7, len(wire)):
        demux = Demuxer()
        got: dict[int, bytes] = {1: b"", 2: b""}
        for i in range(0, len(wire), step):
            for stream, data in demux.feed(wire[i : i + step]):
                got[stream] += data
        assert got == {1: b"hello", 2: b"err"}


def test_parse_time() -> None:
    t = parse_time("2026-11-23T11:22:14.180265072Z")
    assert t is not None and t.tzinfo is not None and t.microsecond == 180265
    assert parse_time("0001-01-01T00:00:00Z") is None
    assert parse_time("") is None and parse_time("garbage") is None
    assert parse_time("2026-01-02T03:04:05+02:00") is not None


def test_usage_prefers_engine_counters() -> None:
    exited = Exited(0, None, False, 1.5, 100)
    stats = {
        "cpu_stats": {"cpu_usage": {"total_usage": 2_500_000_000}},
        "memory_stats": {"max_usage": 4096},
        "networks": {"eth0": {"rx_bytes": 10, "tx_bytes": 20}, "eth1": {"rx_bytes": 1, "tx_bytes": 2}},
    }
    usage = usage_from(stats, exited)
    assert (usage.cpu_seconds, usage.memory_peak_bytes, usage.net_rx_bytes, usage.net_tx_bytes) == (
        2.5,
        4096,
        11,
        22,
    )
    fallback = usage_from({"memory_stats": {"usage": 5}}, exited)  # cgroup v2: no peak from the engine
    assert (fallback.cpu_seconds, fallback.memory_peak_bytes) == (1.5, 100)


def test_sandbox_info_maps_engine_states() -> None:
    def info(status: str, code: int = 0) -> dict[str, Any]:
        return {
            "Name": "/cp-run-r1",
            "Config": {"Labels": {LABEL_RUN: "r1", LABEL_TENANT: "t1"}},
            "State": {
                "Status": status,
                "ExitCode": code,
                "OOMKilled": code == 137,
                "StartedAt": "2026-11-23T11:22:14.1Z",
                "FinishedAt": "0001-01-01T00:00:00Z",
            },
        }

    expected = {
        "created": SandboxState.PENDING,
        "running": SandboxState.RUNNING,
        "paused": SandboxState.RUNNING,
        "restarting": SandboxState.RUNNING,
        "exited": SandboxState.EXITED,
        "dead": SandboxState.EXITED,
        "removing": SandboxState.EXITED,
    }
    for status, state in expected.items():
        got = _sandbox_info(info(status, 137))
        assert got.state == state and got.handle == RunHandle("r1", "t1", "cp-run-r1")
        assert got.exit_code == (137 if state == SandboxState.EXITED else None)
        assert got.oom_killed is True


def test_container_config_policy(make_spec: SpecFactory) -> None:
    spec = make_spec(resources=Resources(cpus=0.5, memory_mb=100, pids=10, tmp_mb=4, work_mb=8, nofile=64))
    cfg = container_config(spec, Settings(container_prefix="p-"), network_mode="none")
    assert cfg.name == "p-" + spec.run_id
    host = cfg.host
    assert host["privileged"] is False and host["read_only"] is True and host["cap_drop"] == ["ALL"]
    assert host["mem_limit"] == host["memswap_limit"] == "100m"
    assert host["nano_cpus"] == 500_000_000 and host["pids_limit"] == 10
    assert host["mounts"] == [] and host["binds"] is None
    assert "size=8m" in host["tmpfs"]["/work"] and ",exec," in host["tmpfs"]["/work"]
    assert "noexec" in host["tmpfs"]["/tmp"] and "size=4m" in host["tmpfs"]["/tmp"]
    assert cfg.create["user"] == "10001:10001" and cfg.create["environment"] is None


@docker_only
async def test_attach_to_a_never_started_container_removes_it(
    docker_backend: DockerBackend, docker_api: Any, make_spec: SpecFactory
) -> None:
    spec = make_spec()
    cfg = container_config(spec, docker_backend.settings, network_mode="none")
    docker_api.create_container(name=cfg.name, host_config=docker_api.create_host_config(**cfg.host), **cfg.create)
    handle = RunHandle(spec.run_id, spec.tenant_id, cfg.name)
    (info,) = [s for s in await docker_backend.list_sandboxes() if s.handle.run_id == spec.run_id]
    assert info.state == SandboxState.PENDING
    result = await follow(await docker_backend.attach(handle), timeout=10)
    assert result.frames == 0
    assert result.outcome is not None and result.outcome.exit_code is None
    assert result.outcome.detail == "the sandbox never started"
    assert containers_named(docker_api, cfg.name) == []


@docker_only
async def test_runner_killed_from_inside_falls_back_to_the_engine(
    docker_backend: DockerBackend, docker_api: Any, make_spec: SpecFactory
) -> None:
    code = "import os, signal\nprint('bye', flush=True)\nos.kill(os.getppid(), signal.SIGKILL)\n"
    spec = make_spec(code)
    result = await drive(docker_backend, spec, timeout=30)
    assert result.exited is None  # the runner never wrote its exit frame...
    assert result.outcome is not None and result.outcome.exit_code == 137  # ...the engine knows
    assert result.outcome.detail is not None and "without reporting" in result.outcome.detail
    assert result.outcome.finished_at is not None
    assert containers_named(docker_api, docker_backend.settings.container_prefix + spec.run_id) == []


def _api_error(status: int) -> Exception:
    import requests
    from docker.errors import APIError

    response = requests.Response()
    response.status_code = status
    return APIError(f"status {status}", response=response)


async def test_engine_calls_retry_transient_errors_a_bounded_number_of_times() -> None:
    import requests

    from controlplane.backends.docker.client import ATTEMPTS, DockerEngine

    engine = DockerEngine(Settings())
    engine.client = lambda: type("C", (), {"api": None})()  # type: ignore[method-assign]
    calls: list[str] = []

    def flaky(_api: Any) -> str:
        calls.append("x")
        if len(calls) < ATTEMPTS:
            raise _api_error(500)
        return "ok"

    try:
        assert await engine.call(flaky) == "ok" and len(calls) == ATTEMPTS
        calls.clear()

        def down(_api: Any) -> None:
            calls.append("x")
            raise requests.exceptions.ConnectionError("refused")

        with pytest.raises(requests.exceptions.ConnectionError):
            await engine.call(down)
        assert len(calls) == ATTEMPTS
        calls.clear()

        def conflict(_api: Any) -> None:
            calls.append("x")
            raise _api_error(409)

        with pytest.raises(Exception, match="409"):
            await engine.call(conflict)
        assert len(calls) == 1  # a client error is an answer, not a glitch
    finally:
        await engine.close()
