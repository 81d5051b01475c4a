"""The python sandbox image, run the way the Docker backend runs it.

Each test starts the built image (``make image``) through docker-py with the backend's hardening (read-only
root, uid 10001, no capabilities, no-new-privileges, no network, tmpfs /work and /tmp), writes a bundle made
by ``encode_bundle`` on its stdin and parses the runner's stdout with ``FrameParser``. A missing or stale
image fails the tests with the command that fixes it: these run in CI, they are never skipped.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pytest
from docker.models.containers import Container

from controlplane.backends.protocol import (
    ArtifactData,
    ArtifactHead,
    Exited,
    FrameParser,
    Output,
    Skipped,
    Started,
    encode_bundle,
)

pytestmark = pytest.mark.docker

IMAGE = os.environ.get("CP_SANDBOX_IMAGE", "controlplane-sandbox-python:1")
BUILD_SH = Path(__file__).resolve().parents[2] / "sandbox-images" / "python" / "build.sh"
SANDBOX_UID = 10001
RUN_TIMEOUT = 60


@dataclass
class SandboxResult:
    stdout: bytes = b""
    stderr: bytes = b""
    started: Started | None = None
    exited: Exited | None = None
    artifacts: dict[str, bytes] = field(default_factory=dict)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    bad_lines: int = 0
    diagnostics: str = ""  # the runner's own stderr
    container_exit: int | None = None

    def explain(self) -> str:
        return (
            f"exited={self.exited} container_exit={self.container_exit} stdout={self.stdout[:500]!r} "
            f"stderr={self.stderr[:500]!r} runner diagnostics={self.diagnostics[-500:]!r}"
        )


@pytest.fixture(scope="module")
def client() -> Iterator[docker.DockerClient]:
    problem = None
    try:
        dc = docker.from_env(timeout=RUN_TIMEOUT)
        dc.ping()
    except docker.errors.DockerException as exc:
        problem = f"the Docker engine does not answer ({exc}); run `make docker`"
    if problem:
        pytest.fail(problem)
    try:
        image = dc.images.get(IMAGE)
    except docker.errors.ImageNotFound:
        problem = f"sandbox image {IMAGE} is missing; build it with `make image`"
    if problem:
        pytest.fail(problem)
    want = subprocess.run(
        ["bash", str(BUILD_SH), "--inputs-sha"], capture_output=True, text=True, check=True
    ).stdout.strip()
    have = (image.labels or {}).get("io.controlplane.inputs-sha")
    if have != want:
        pytest.fail(f"sandbox image {IMAGE} is stale (inputs-sha {have}, sources {want}); run `make image`")
    yield dc
    dc.close()


def host_config(*, init: bool = False) -> dict[str, Any]:
    return {
        "read_only": True,
        "user": f"{SANDBOX_UID}:{SANDBOX_UID}",
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges:true"],
        "network_mode": "none",
        "ipc_mode": "private",
        "tmpfs": {
            "/work": f"rw,exec,nosuid,nodev,size=64m,uid={SANDBOX_UID},gid={SANDBOX_UID},mode=0700",
            "/tmp": "rw,noexec,nosuid,nodev,size=16m,mode=1777",
        },
        "mem_limit": "256m",
        "memswap_limit": "256m",
        "pids_limit": 128,
        "ulimits": [
            docker.types.Ulimit(name="nofile", soft=1024, hard=1024),
            docker.types.Ulimit(name="core", soft=0, hard=0),
        ],
        "init": init,
        "privileged": False,
    }


def run_in_sandbox(
    dc: docker.DockerClient,
    code: str,
    *,
    runtime: str = "python",
    args: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
    input_data: bytes = b"",
    init: bool = False,
) -> SandboxResult:
    entry = "main.py" if runtime == "python" else "main.sh"
    bundle = encode_bundle(
        runtime=runtime,
        entrypoint=entry,
        files={entry: code.encode()},
        args=list(args),
        env=env or {},
        input_data=input_data,
        max_files=20,
        max_bytes=5 << 20,
        linger_seconds=0,
    )
    container: Container = dc.containers.create(
        IMAGE,
        name=f"cp-test-image-{uuid.uuid4().hex[:10]}",
        stdin_open=True,  # with detach=False docker-py sets StdinOnce: our EOF closes the runner's stdin
        detach=False,
        tty=False,
        labels={"io.controlplane.test": "sandbox-image"},
        **host_config(init=init),
    )
    try:
        attached = container.attach_socket(params={"stdin": 1, "stream": 1})
        raw = getattr(attached, "_sock", None)  # docker-py hands out a SocketIO around the real socket
        if not isinstance(raw, socket.socket):
            pytest.fail(f"this Docker transport gives no socket to write stdin on ({type(attached).__name__})")
        container.start()
        raw.sendall(bundle)
        raw.shutdown(socket.SHUT_WR)
        status = container.wait(timeout=RUN_TIMEOUT)
        attached.close()
        result = SandboxResult(container_exit=int(status.get("StatusCode", -1)))
        parser = FrameParser()
        current: str | None = None
        for frame in parser.feed(container.logs(stdout=True, stderr=False)):
            if isinstance(frame, Output):
                if frame.stream == "stdout":
                    result.stdout += frame.data
                else:
                    result.stderr += frame.data
            elif isinstance(frame, Started):
                result.started = frame
            elif isinstance(frame, ArtifactHead):
                current = frame.path
                result.artifacts[current] = b""
            elif isinstance(frame, ArtifactData) and current is not None:
                result.artifacts[current] += frame.data
            elif isinstance(frame, Skipped):
                result.skipped.extend(frame.entries)
            elif isinstance(frame, Exited):
                result.exited = frame
        result.bad_lines = parser.bad_lines
        result.diagnostics = container.logs(stdout=False, stderr=True).decode(errors="replace")
        return result
    finally:
        container.remove(force=True)


FACTS_SCRIPT = r"""
import datetime, json, os, pwd, shutil, sqlite3, ssl, stat, zoneinfo
import openpyxl, pyodbc, reportlab, requests
from reportlab.pdfgen import canvas

me = pwd.getpwuid(os.getuid())
facts = {"uid": os.getuid(), "gid": os.getgid(), "groups": os.getgroups(), "user": me.pw_name,
         "home": me.pw_dir, "cwd": os.getcwd(), "path": os.environ.get("PATH")}
facts["ca_store"] = ssl.create_default_context().cert_store_stats()["x509_ca"]
with open("/etc/ssl/certs/ca-certificates.crt") as fh:
    facts["ca_bundle"] = fh.read().count("BEGIN CERTIFICATE")
facts["requests_ca"] = requests.certs.where()
facts["sh"] = os.path.realpath("/bin/sh") if os.access("/bin/sh", os.X_OK) else None
facts["sqlite"] = sqlite3.connect(":memory:").execute("select 40 + 2").fetchone()[0]
facts["json"] = json.loads('{"a": [1]}') == {"a": [1]}
facts["odbc"] = isinstance(pyodbc.drivers(), list)
facts["tz"] = datetime.datetime(2024, 1, 15, tzinfo=zoneinfo.ZoneInfo("America/New_York")).tzname()
os.makedirs("/work/outputs", exist_ok=True)
pdf = canvas.Canvas("/work/outputs/report.pdf")
pdf.drawString(72, 720, "sandbox")
pdf.save()
book = openpyxl.Workbook()
book.active["A1"] = 42
book.save("/work/outputs/report.xlsx")
setid = []
for top, dirs, files in os.walk("/"):
    if top == "/":
        dirs[:] = [d for d in dirs if d not in ("proc", "sys", "dev")]
    for name in dirs + files:
        if os.lstat(os.path.join(top, name)).st_mode & (stat.S_ISUID | stat.S_ISGID):
            setid.append(os.path.join(top, name))
facts["setid"] = setid
facts["tools"] = sorted(t for t in ("dpkg", "apt", "apt-get", "perl", "sudo", "su", "mount") if shutil.which(t))
status = dict(line.split(":", 1) for line in open("/proc/self/status") if ":" in line)
facts["no_new_privs"] = status["NoNewPrivs"].strip()
facts["cap_eff"] = int(status["CapEff"], 16)
try:
    open("/usr/lib/planted", "w")
    facts["root_fs"] = "writable"
except OSError as exc:
    facts["root_fs"] = exc.strerror
runner = os.stat("/opt/controlplane/runner.py")
facts["runner"] = [oct(stat.S_IMODE(runner.st_mode)), runner.st_uid]
print(json.dumps(facts))
"""


@pytest.fixture(scope="module")
def facts_run(client: docker.DockerClient) -> SandboxResult:
    return run_in_sandbox(client, FACTS_SCRIPT)


@pytest.fixture(scope="module")
def facts(facts_run: SandboxResult) -> dict[str, Any]:
    assert facts_run.exited is not None and facts_run.exited.exit_code == 0, facts_run.explain()
    doc: dict[str, Any] = json.loads(facts_run.stdout.decode().strip().splitlines()[-1])
    return doc


def test_image_config(client: docker.DockerClient) -> None:
    config = client.images.get(IMAGE).attrs["Config"]
    assert config["User"] == "10001:10001"
    assert config["Entrypoint"] == ["/usr/bin/tini", "--"]
    assert config["Cmd"] == ["/usr/bin/python3", "-I", "/opt/controlplane/runner.py"]
    assert config["WorkingDir"] == "/work"
    env = dict(item.split("=", 1) for item in config["Env"])
    assert env["CP_RUNNER_SANDBOX"] == "1"
    assert env["PATH"] == "/usr/local/bin:/usr/bin:/bin"
    assert env["LANG"] == "C.UTF-8"


def test_python_script_streams_come_back_apart(client: docker.DockerClient) -> None:
    code = (
        "import os, sys\n"
        "for i in range(3):\n"
        "    print(f'out {i}', flush=True)\n"
        "    print(f'err {i}', file=sys.stderr, flush=True)\n"
        "print('argv', sys.argv[1:])\n"
        "print('stdin', sys.stdin.read())\n"
        "print('env', os.environ['JETQUERY_HOST'], os.environ['HOME'])\n"
        "os.makedirs('/work/outputs/sub')\n"
        "open('/work/outputs/sub/result.csv', 'w').write('a,b\\n1,2\\n')\n"
        "sys.exit(3)\n"
    )
    res = run_in_sandbox(
        client,
        code,
        args=("a b", "$(id)", "; rm -rf /"),
        env={"JETQUERY_HOST": "tenant.example"},
        input_data=b"the input",
    )
    assert res.exited is not None, res.explain()
    assert res.exited.exit_code == 3
    assert res.exited.signal is None and not res.exited.oom_killed
    assert res.stdout == (
        b"out 0\nout 1\nout 2\nargv ['a b', '$(id)', '; rm -rf /']\nstdin the input\nenv tenant.example /work/home\n"
    )
    assert res.stderr == b"err 0\nerr 1\nerr 2\n"
    assert res.artifacts == {"sub/result.csv": b"a,b\n1,2\n"}
    assert res.started is not None and res.started.pid > 1
    assert res.bad_lines == 0
    assert res.container_exit == 3


def test_shell_script_runs_under_dash(client: docker.DockerClient) -> None:
    code = (
        'echo "hello $1"\n'
        'echo "to stderr" >&2\n'
        'echo "id $(id -u):$(id -g)"\n'
        'printf "b\\na\\n" | sort | tr "\\n" " " | sed "s/ $//"; echo\n'
        "exit 7\n"
    )
    res = run_in_sandbox(client, code, runtime="shell", args=("world",))
    assert res.exited is not None, res.explain()
    assert res.exited.exit_code == 7
    assert res.stdout == b"hello world\nid 10001:10001\na b\n"
    assert res.stderr == b"to stderr\n"


def test_seed_libraries_import(facts: dict[str, Any], facts_run: SandboxResult) -> None:
    # the facts script imports requests, pyodbc, reportlab, openpyxl, ssl, sqlite3, json and zoneinfo
    assert facts["sqlite"] == 42 and facts["json"] and facts["odbc"]
    assert facts["tz"] == "EST"
    assert facts_run.artifacts["report.pdf"].startswith(b"%PDF")
    assert facts_run.artifacts["report.xlsx"].startswith(b"PK")


def test_ca_bundle_has_certificates(facts: dict[str, Any]) -> None:
    assert facts["ca_bundle"] > 100
    assert facts["ca_store"] == facts["ca_bundle"]  # ssl's default context loads the same bundle
    assert facts["requests_ca"] == "/etc/ssl/certs/ca-certificates.crt"


def test_runs_as_the_sandbox_user(facts: dict[str, Any]) -> None:
    assert (facts["uid"], facts["gid"]) == (SANDBOX_UID, SANDBOX_UID)
    assert facts["groups"] in ([], [SANDBOX_UID])
    assert facts["user"] == "sandbox" and facts["home"] == "/work/home"
    assert facts["cwd"] == "/work/code"
    assert facts["sh"] in ("/bin/dash", "/usr/bin/dash")


def test_nothing_to_escalate_with(facts: dict[str, Any]) -> None:
    assert facts["setid"] == []
    assert facts["tools"] == []
    assert facts["no_new_privs"] == "1"
    assert facts["cap_eff"] == 0
    assert facts["root_fs"] == "Read-only file system"
    assert facts["runner"] == ["0o555", 0]


@pytest.mark.parametrize("init", [False, True], ids=["tini-is-pid-1", "engine-init"])
def test_leftover_processes_do_not_cost_the_exit_frame(client: docker.DockerClient, init: bool) -> None:
    """A script that leaves a background child behind: the runner kills it and still reports, also when
    the engine adds its own init (tini is then not pid 1 and must not be killed with the leftovers)."""
    code = "sleep 300 &\nsleep 300 &\necho left two sleepers\n"
    res = run_in_sandbox(client, code, runtime="shell", init=init)
    assert res.exited is not None, res.explain()
    assert res.exited.exit_code == 0
    assert res.stdout == b"left two sleepers\n"
    assert res.container_exit == 0
