"""Attacks from inside a run, through a live server, on the real Docker engine (design.md, "Threats").

Each test runs a hostile script through the API and checks two things: the outcome the API reports, and
that no container of the run is left (`docker ps -a --filter name=<prefix><runId>`).

Probes of outside addresses must never send a packet off this machine, even when the sandbox is broken:
with network none a UDP ``connect()`` (which only looks up a route) runs first and TCP is tried only when
there is no route, so it fails before anything is sent; on the api network (which has a default route via
the host) the test first checks that the host's firewall drops everything forwarded from its bridge.
"""

from __future__ import annotations

import ipaddress
import json
import shutil
import subprocess
import threading
import time
from typing import Any

import docker
import httpx
import psutil
import pytest

from controlplane.backends.docker.network import NetworkManager
from controlplane.core.states import NetworkMode
from tests.support.e2e import BASE, Server

pytestmark = pytest.mark.docker

MIB = 1024 * 1024


def codes(run: dict[str, Any]) -> list[str]:
    return [e["code"] for e in run["error"]]


def assert_gone(server: Server, run: dict[str, Any]) -> None:
    assert server.containers(run["id"]) == [], f"a container of run {run['id']} is left"


def run_json(server: Server, name: str, code: str, **kw: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run a probe that prints one JSON document; returns (run, document)."""
    args = kw.pop("args", None)
    aid = server.automation(name, code, **kw)
    run = server.run_sync(aid, **({"args": args} if args is not None else {}))
    assert run["status"] == "finished", (run, server.log_text())
    assert_gone(server, run)
    return run, json.loads(run["stdout"])


# --- deadlines and limits -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "code"),
    [("busy-loop", "while True:\n    pass\n"), ("sleeper", "import time\ntime.sleep(1000)\n")],
    ids=["busy-loop", "sleep-1000"],
)
def test_past_the_deadline_is_killed(server: Server, name: str, code: str) -> None:
    aid = server.automation(name, code, timeoutSeconds=2)
    t0 = time.monotonic()
    run = server.run_sync(aid)
    elapsed = time.monotonic() - t0
    assert run["status"] == "exceeded limit", run
    assert codes(run)[0] == "RUN_TIMEOUT" and run["exitCode"] is None
    assert elapsed < 2 + 3.5, f"the run took {elapsed:.1f}s for a 2s deadline"
    assert_gone(server, run)


def test_memory_bomb_is_out_of_memory(server: Server) -> None:
    code = "chunks = []\nwhile True:\n    chunks.append(b'\\x01' * (16 * 1024 * 1024))\n"
    aid = server.automation("memory-bomb", code, timeoutSeconds=30, resources={"memoryMb": 128})
    run = server.run_sync(aid)
    assert run["status"] == "exceeded limit", run
    assert "OUT_OF_MEMORY" in codes(run) and run["exitCode"] == 137
    assert_gone(server, run)


FORK_BOMB_PY = """\
import os
while True:
    try:
        os.fork()
    except OSError:
        pass
"""
# dash (the image's /bin/sh) rejects ':' as a function name, so the classic bomb is spelled with 'b'
FORK_BOMB_SH = "b(){ b|b& };b\n"


@pytest.mark.parametrize(
    ("runtime", "code"), [("python", FORK_BOMB_PY), ("shell", FORK_BOMB_SH)], ids=["python", "shell"]
)
def test_fork_bomb_is_contained(server: Server, runtime: str, code: str) -> None:
    aid = server.automation("fork-bomb", code, runtime=runtime, timeoutSeconds=10, resources={"pids": 64})
    t0 = time.monotonic()
    run = server.run_sync(aid)
    assert run["status"] in ("finished", "finished with warnings", "failed", "exceeded limit"), run
    assert time.monotonic() - t0 < 10 + 8
    assert_gone(server, run)
    after = server.run_sync(server.automation("after-bomb", "print('fine')\n"))
    assert after["status"] == "finished" and after["stdout"] == "fine\n"
    assert server.client.get("/readyz").status_code == 200


FLOOD = """\
import os
head, tail = b"HEAD-MARKER\\n", b"TAIL-MARKER\\n"
block = (b"0123456789abcdef" * 4096)[:-1] + b"\\n"
blocks = (50 * 1024 * 1024 - len(head) - len(tail)) // len(block)
rest = 50 * 1024 * 1024 - len(head) - len(tail) - blocks * len(block)
def put(data):
    view = memoryview(data)
    while view:
        view = view[os.write(1, view):]
put(head)
for _ in range(blocks):
    put(block)
put(b"x" * rest)
put(tail)
"""


def test_stdout_flood_is_capped_and_server_memory_stays_flat(server: Server) -> None:
    total = 50 * MIB
    aid = server.automation("flood", FLOOD, timeoutSeconds=120)
    proc = psutil.Process(server.pid)
    baseline = proc.memory_info().rss
    peak = baseline
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, proc.memory_info().rss)
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        run = server.run_sync(aid)
    finally:
        done.set()
        sampler.join(5)
    assert run["status"] == "finished", run
    assert run["stdoutBytes"] == total and run["truncated"] is True
    assert run["stdoutInlineTruncated"] is True
    stored = server.logs(aid, run["id"])
    assert MIB <= len(stored) <= MIB + 200, len(stored)
    assert stored.startswith(b"HEAD-MARKER\n0123456789abcdef") and stored.endswith(b"TAIL-MARKER\n")
    assert b"bytes truncated" in stored
    grew = (peak - baseline) / MIB
    assert grew < 60, f"the server's RSS grew by {grew:.0f} MiB during a 50 MiB flood"
    assert_gone(server, run)


# --- network ------------------------------------------------------------------------------------------

PROBES = """\
import json, socket

def route(host, port):
    # UDP connect only looks up a route: nothing is sent
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.connect((host, port))
        return "route"
    except OSError as exc:
        return "no route: %s" % exc.strerror
    finally:
        s.close()

def tcp(host, port, timeout=1.0):
    try:
        socket.create_connection((host, port), timeout=timeout).close()
        return "connected"
    except OSError as exc:
        return "failed: %s" % (exc.strerror or type(exc).__name__)

def outside(host, port):
    r = route(host, port)
    return {"route": r, "tcp": tcp(host, port) if r != "route" else "not tried (a route exists)"}

def default_routes():
    with open("/proc/net/route") as fh:
        rows = [line.split() for line in fh.read().splitlines()[1:]]
    return [r for r in rows if len(r) > 2 and r[1] == "00000000"]
"""

NETWORK_NONE = (
    PROBES
    + """
import sys
port, api_gateway = int(sys.argv[1]), sys.argv[2]
try:
    socket.getaddrinfo("example.com", 80)
    dns = "resolved"
except OSError as exc:
    dns = "failed: %s" % exc
print(json.dumps({
    "dns": dns,
    "internet": outside("1.1.1.1", 53),
    "loopback_api": tcp("127.0.0.1", port),
    "docker0_api": tcp("172.17.0.1", port),
    "api_gateway": tcp(api_gateway, port),
    "default_routes": default_routes(),
    "interfaces": [name for _, name in socket.if_nameindex()],
}))
"""
)


def api_gateway(server: Server) -> str:
    return str(ipaddress.IPv4Network(server.settings_env["CP_API_NETWORK_SUBNET"]).network_address + 1)


def test_network_none_reaches_nothing(server: Server) -> None:
    _, out = run_json(server, "net-none", NETWORK_NONE, args=[str(server.port), api_gateway(server)])
    assert out["dns"].startswith("failed"), out
    assert out["internet"]["route"].startswith("no route") and out["internet"]["tcp"].startswith("failed"), out
    for key in ("loopback_api", "docker0_api", "api_gateway"):
        assert out[key].startswith("failed"), (key, out)
    assert out["default_routes"] == [] and out["interfaces"] == ["lo"], out


NETWORK_API = (
    PROBES
    + """
import os, urllib.request
from concurrent.futures import ThreadPoolExecutor
host = os.environ["JETQUERY_HOST"]
gateway = host.rsplit(":", 1)[0]
req = urllib.request.Request(
    "http://%s/api/v1/automations" % host, headers={"Authorization": "Bearer " + os.environ["JETQUERY_TOKEN"]}
)
with urllib.request.urlopen(req, timeout=10) as resp:
    api = resp.status
targets = {
    "metadata": ("169.254.169.254", 80),
    "internet": ("1.1.1.1", 53),
    "postgres_on_gateway": (gateway, 5432),
    "ssh_on_gateway": (gateway, 22),
}
with ThreadPoolExecutor(len(targets)) as pool:
    tried = {k: pool.submit(tcp, *hp) for k, hp in targets.items()}
print(json.dumps({"host": host, "api": api, **{k: f.result() for k, f in tried.items()}}))
"""
)


def assert_api_bridge_is_sealed(server: Server) -> None:
    """The probes below send SYNs towards outside addresses; make sure first that the host drops them.

    A run on the api network has a default route via its gateway (the host), so what keeps its packets
    on this machine is the firewall: our forward chain first in DOCKER-USER, dropping everything from the
    bridge. Without it the test fails here instead of probing.
    """
    client = docker.from_env()
    try:
        manager = NetworkManager(client, server.settings())
    finally:
        client.close()
    bridge, chain = manager.networks[NetworkMode.API].bridge, manager.forward_chain

    def rules(name: str) -> list[str]:
        proc = subprocess.run(["iptables", "-w", "-S", name], capture_output=True, text=True, timeout=30, check=False)
        assert proc.returncode == 0, f"iptables -S {name}: {proc.stderr}"
        return [line for line in proc.stdout.splitlines() if line.startswith("-A ")]

    assert rules("FORWARD")[0] == "-A FORWARD -j DOCKER-USER"
    assert rules("DOCKER-USER")[0] == f"-A DOCKER-USER -j {chain}"
    assert f"-A {chain} -i {bridge} -j DROP" in rules(chain)


def test_network_api_reaches_only_the_api(server: Server) -> None:
    assert_api_bridge_is_sealed(server)
    _, out = run_json(server, "net-api", NETWORK_API, network="api")
    assert out["host"] == f"{api_gateway(server)}:{server.port}"
    assert out["api"] == 200
    for key in ("metadata", "internet", "postgres_on_gateway", "ssh_on_gateway"):
        assert out[key].startswith("failed"), (key, out)


# --- privileges, secrets, mounts ----------------------------------------------------------------------

INSIDE = """\
import glob, json, os
status = dict(line.split(":", 1) for line in open("/proc/self/status").read().splitlines() if ":" in line)
writes = {}
for d in ("/", "/usr", "/etc", "/opt/controlplane"):
    try:
        with open(os.path.join(d, "pwned"), "w") as fh:
            fh.write("x")
        writes[d] = "written"
    except OSError as exc:
        writes[d] = exc.errno
environs = {}
for path in glob.glob("/proc/[0-9]*/environ"):
    try:
        environs[path] = open(path, "rb").read().decode(errors="replace")
    except OSError as exc:
        environs[path] = "unreadable: %s" % exc.strerror
print(json.dumps({
    "NoNewPrivs": status["NoNewPrivs"].strip(),
    "CapEff": status["CapEff"].strip(),
    "CapPrm": status["CapPrm"].strip(),
    "CapBnd": status["CapBnd"].strip(),
    "Uid": status["Uid"].split(),
    "Gid": status["Gid"].split(),
    "writes": writes,
    "sockets": {p: os.path.exists(p) for p in ("/var/run/docker.sock", "/run/docker.sock")},
    "env": dict(os.environ),
    "environs": environs,
    "mountinfo": open("/proc/self/mountinfo").read().splitlines(),
}))
"""
VIRTUAL_FS = {"overlay", "proc", "sysfs", "tmpfs", "devpts", "mqueue", "cgroup", "cgroup2", "shm"}
DOCKER_FILES = {"/etc/resolv.conf", "/etc/hostname", "/etc/hosts"}


def docker_root() -> str:
    proc = subprocess.run(
        ["docker", "info", "--format", "{{.DockerRootDir}}"], capture_output=True, text=True, timeout=30, check=True
    )
    return proc.stdout.strip()


def test_no_privileges_no_secrets_no_host_paths(server: Server) -> None:
    _, out = run_json(server, "inside", INSIDE)
    assert out["NoNewPrivs"] == "1"
    assert out["CapEff"] == "0000000000000000" and out["CapPrm"] == "0000000000000000"
    assert out["CapBnd"] == "0000000000000000"
    assert out["Uid"] == ["10001"] * 4 and out["Gid"] == ["10001"] * 4
    assert out["writes"] == {"/": 30, "/usr": 30, "/etc": 30, "/opt/controlplane": 30}  # EROFS
    assert out["sockets"] == {"/var/run/docker.sock": False, "/run/docker.sock": False}
    assert "/proc/1/environ" in out["environs"] and not out["environs"]["/proc/1/environ"].startswith("unreadable")
    seen = json.dumps(out["env"]) + json.dumps(out["environs"])
    for name, secret in server.canaries.items():
        assert secret not in seen, f"{name} leaked into the run"
        assert name not in out["env"]
    assert server.token not in seen and server.database_url not in seen
    assert not any(k.startswith("CP_") and k != "CP_RUNNER_SANDBOX" for k in out["env"]), out["env"]

    root = docker_root()
    host_paths = []
    for line in out["mountinfo"]:
        left, _, right = line.partition(" - ")
        fields, fstype = left.split(), right.split()[0]
        mount_root, mount_point, options = fields[3], fields[4], fields[5].split(",")
        if mount_point in ("/", "/mnt/files", *DOCKER_FILES):
            assert "ro" in options, f"{mount_point} is writable: {line}"
        if fstype in VIRTUAL_FS:
            continue
        if mount_point in DOCKER_FILES and mount_root.startswith(f"{root}/containers/"):
            continue  # docker's own per-container resolv.conf/hostname/hosts (read-only, checked above)
        if mount_point in ("/mnt/files", "/mnt/archive") and (
            mount_root == "/" or mount_root.startswith(f"{root}/volumes/cp-")
        ):
            continue  # the tenant's named volumes (ARCHIVE: a loop-mounted image, root "/")
        host_paths.append(line)
    assert host_paths == [], "host paths are mounted into the run:\n" + "\n".join(host_paths)
    points = {line.split(" - ")[0].split()[4] for line in out["mountinfo"]}
    assert {"/", "/work", "/tmp", "/proc", "/mnt/files", "/mnt/archive"} <= points


SETUID = """\
import ctypes, json, os, subprocess
found = subprocess.run(
    ["find", "/", "-xdev", "(", "-perm", "-4000", "-o", "-perm", "-2000", ")", "-print"],
    capture_output=True, text=True,
).stdout.split()
attempts = {}
for name, call in (
    ("setuid", lambda: os.setuid(0)),
    ("setgid", lambda: os.setgid(0)),
    ("setresuid", lambda: os.setresuid(0, 0, 0)),
    ("setgroups", lambda: os.setgroups([0])),
    ("chown", lambda: os.chown("/work", 0, 0)),
):
    try:
        call()
        attempts[name] = "succeeded"
    except OSError as exc:
        attempts[name] = exc.errno
libc = ctypes.CDLL(None, use_errno=True)
attempts["unshare_userns"] = ctypes.get_errno() if libc.unshare(0x10000000) != 0 else "succeeded"
# a setuid copy of python in /work (nosuid, and no-new-privileges) must not give anything either
with open("/usr/bin/python3", "rb") as src, open("/work/py", "wb") as dst:
    dst.write(src.read())
os.chmod("/work/py", 0o4755)
child = subprocess.run(["/work/py", "-c", "import os; print(os.geteuid())"], capture_output=True, text=True)
status = dict(line.split(":", 1) for line in open("/proc/self/status").read().splitlines() if ":" in line)
print(json.dumps({
    "setuid_files": found,
    "attempts": attempts,
    "child_euid": child.stdout.strip(),
    "uid": status["Uid"].split(),
    "CapEff": status["CapEff"].strip(),
}))
"""


def test_no_setuid_files_and_no_escalation(server: Server) -> None:
    _, out = run_json(server, "setuid", SETUID)
    assert out["setuid_files"] == [], out["setuid_files"]
    assert all(v in (1, 22) for v in out["attempts"].values()), out["attempts"]  # EPERM (EINVAL for odd ones)
    assert out["child_euid"] == "10001"
    assert out["uid"] == ["10001"] * 4 and out["CapEff"] == "0000000000000000"


# --- outputs and files --------------------------------------------------------------------------------

SYMLINKS = """\
import os
out = os.environ["JETQUERY_OUTPUTS"]
os.makedirs(os.path.join(out, "sub"), exist_ok=True)
os.symlink("/etc/passwd", os.path.join(out, "leak"))
os.symlink("/etc", os.path.join(out, "etcdir"))
os.symlink("/etc/shadow", os.path.join(out, "sub", "shadow"))
with open(os.path.join(out, "ok.txt"), "w") as fh:
    fh.write("fine")
print("planted")
"""


def test_symlinks_in_outputs_are_not_followed(server: Server) -> None:
    aid = server.automation("symlinks", SYMLINKS)
    run = server.run_sync(aid)
    assert run["status"] in ("finished", "finished with warnings"), run
    assert {a["path"] for a in run["artifacts"]} == {"ok.txt"}
    for art in run["artifacts"]:
        assert b"root:" not in server.client.get(art["href"]).content
    skipped = [e for e in run["error"] if e["code"] == "ARTIFACTS_SKIPPED"]
    assert skipped, run["error"]
    for name in ("leak", "etcdir", "sub/shadow"):
        assert name in skipped[0]["detail"], skipped
    r = server.client.get(f"{BASE}/{aid}/runs/{run['id']}/artifacts/leak")
    assert r.status_code == 404
    assert_gone(server, run)


PERSIST = """\
import json, os, sys
paths = ["/work/x", "/tmp/y", os.path.join(os.environ["HOME"], "z"), "/work/outputs/../w"]
if sys.argv[1] == "write":
    for p in paths:
        with open(p, "w") as fh:
            fh.write("left behind")
print(json.dumps({"home": os.environ["HOME"], "exists": {p: os.path.exists(p) for p in paths}}))
"""


def test_nothing_persists_between_runs(server: Server) -> None:
    aid = server.automation("persist", PERSIST)
    first = server.run_sync(aid, args=["write"])
    assert first["status"] == "finished", first
    wrote = json.loads(first["stdout"])
    assert all(wrote["exists"].values()) and wrote["home"].startswith("/work")
    second = server.run_sync(aid, args=["check"])
    assert second["status"] == "finished", second
    assert not any(json.loads(second["stdout"])["exists"].values()), second["stdout"]
    assert_gone(server, first)
    assert_gone(server, second)


DISK_FILL = """\
import errno, json, os
report = {}
for path in ("/tmp/fill", "/work/fill"):
    written = 0
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    block = b"\\0" * (1024 * 1024)
    try:
        while True:
            written += os.write(fd, block)
    except OSError as exc:
        report[path] = {"errno": exc.errno, "error": exc.strerror, "written": written}
    finally:
        os.close(fd)
print(json.dumps(report))
"""


def test_disk_fill_is_enospc_inside_only(server: Server) -> None:
    before = shutil.disk_usage("/").used
    _, out = run_json(server, "disk-fill", DISK_FILL, timeoutSeconds=60)
    after = shutil.disk_usage("/").used
    for path in ("/tmp/fill", "/work/fill"):
        assert out[path]["errno"] == 28, out  # ENOSPC
        assert 32 * MIB <= out[path]["written"] <= 64 * MIB, out
    assert after - before < 40 * MIB, f"host disk use grew by {(after - before) / MIB:.0f} MiB"


ZOMBIES = """\
import os, time
for _ in range(50):
    if os.fork() == 0:
        os._exit(0)
time.sleep(1)
print("left 50 zombies")
"""


def test_zombies_do_not_hold_up_the_run(server: Server) -> None:
    aid = server.automation("zombies", ZOMBIES, timeoutSeconds=30)
    t0 = time.monotonic()
    run = server.run_sync(aid)
    assert run["status"] == "finished" and run["stdout"] == "left 50 zombies\n", run
    assert time.monotonic() - t0 < 8
    assert_gone(server, run)


# --- tenancy and roles --------------------------------------------------------------------------------


def test_other_tenants_missing_tokens_and_viewers(server: Server) -> None:
    aid = server.automation("private", "print('mine')\n")
    run = server.run_sync(aid)
    eve = server.user_token("admin", tenant="other", user="eve")
    viewer = server.user_token("viewer")
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {eve}"}) as as_eve:
        assert as_eve.get(BASE).status_code == 200
        assert aid not in {a["id"] for a in as_eve.get(BASE).json()["data"]}
        missing = as_eve.get(f"{BASE}/does-not-exist")
        for path in (f"{BASE}/{aid}", f"{BASE}/{aid}/runs", f"{BASE}/{aid}/runs/{run['id']}"):
            r = as_eve.get(path)
            assert r.status_code == 404, (path, r.text)
            assert r.json()["errors"][0]["code"] == missing.json()["errors"][0]["code"]
        assert as_eve.get(f"{BASE}/{aid}/runs/{run['id']}/logs").status_code == 404
        assert as_eve.post(f"{BASE}/{aid}/runs", json={"context": "api_sync"}).status_code == 404
    with httpx.Client(base_url=server.url) as anonymous:
        assert anonymous.get(BASE).status_code == 401
        assert anonymous.post(f"{BASE}/{aid}/runs", json={"context": "api_sync"}).status_code == 401
        bad = anonymous.get(BASE, headers={"Authorization": "Bearer cp_not_a_token"})
        assert bad.status_code == 401
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {viewer}"}) as as_viewer:
        assert as_viewer.get(f"{BASE}/{aid}/runs/{run['id']}").status_code == 200
        r = as_viewer.post(f"{BASE}/{aid}/runs", json={"context": "api_sync"})
        assert r.status_code == 403, r.text
    listed = server.client.get(f"{BASE}/{aid}/runs").json()["data"]
    assert [r["id"] for r in listed] == [run["id"]], "a refused request started a run"
