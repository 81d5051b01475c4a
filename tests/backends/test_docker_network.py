"""Attacks from inside real sandbox containers against the networks and firewall of ``docker_network``.

The stage, all built by the fixture and removed afterwards:

* the API stand-in: an HTTP server on each network's gateway at the settings' port (what the control
  plane binds through ``listen_addresses()``);
* the "PostgreSQL" stand-in: a TCP listener on the host at 0.0.0.0 on another port;
* the "internet": a network namespace joined to the host by a veth pair in 198.18.0.0/15 (benchmarking
  range, neither private nor anyone's real host), running a TCP server and a DNS server that answers
  every name; inside it also 169.254.169.254 and an RFC1918 address, routed from the host, so that a
  connection from the host succeeds and any failure from a run is the firewall's doing;
* a victim container listening on each network (what another tenant's run would be).

Every probe container gets the backend's hardening (uid 10001, read-only, cap-drop ALL, no-new-privileges).
"""

from __future__ import annotations

import http.server
import ipaddress
import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from unittest import mock

import pytest

from controlplane.backends.docker import network as docker_network
from controlplane.backends.docker.network import NetworkManager
from controlplane.core.errors import LaunchFailed
from controlplane.core.settings import Settings
from controlplane.core.states import NetworkMode

IMAGE = os.environ.get("CP_SANDBOX_IMAGE", "controlplane-sandbox-python:1")
TEST_LABEL = "io.controlplane.test"
INET_PORT = 8081
HARDENING: dict[str, Any] = {
    "user": "10001:10001",
    "read_only": True,
    "cap_drop": ["ALL"],
    "security_opt": ["no-new-privileges"],
    "tmpfs": {"/tmp": "size=16m"},
    "pids_limit": 64,
    "mem_limit": "128m",
}

# Runs inside the sandbox: try every target concurrently, print one JSON object {target: outcome}.
PROBE = r"""
import json, socket, sys, threading
out = {}
def one(kind, host, port):
    key = f"{kind}:{host}:{port}"
    try:
        if kind == "dns":
            out[key] = "resolved:" + socket.gethostbyname(host)
            return
        s = socket.create_connection((host, port), timeout=3)
        s.settimeout(3)
        if kind == "http":
            s.sendall(b"GET /ping HTTP/1.0\r\nHost: x\r\n\r\n")
        data = b""
        try:
            while len(data) < 4096:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
        except OSError:
            pass
        out[key] = "open:" + data.decode(errors="replace")
    except Exception as e:
        out[key] = "refused:" + type(e).__name__ + ":" + str(e)
threads = [threading.Thread(target=one, args=tuple(t)) for t in json.loads(sys.argv[1])]
[t.start() for t in threads]
[t.join() for t in threads]
v6 = [l.split()[-1] for l in open("/proc/net/if_inet6")] if __import__("os").path.exists("/proc/net/if_inet6") else []
out["ipv6-interfaces"] = ",".join(v6)
print(json.dumps(out))
"""

VICTIM = r"""
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 9000)); s.listen(16)
while True:
    c, _ = s.accept(); c.sendall(b"other-tenant-secret"); c.close()
"""

INET_SERVER = r"""
import socket, sys, threading
def tcp():
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", int(sys.argv[1]))); s.listen(16)
    while True:
        c, a = s.accept(); c.sendall(b"internet:" + a[0].encode()); c.close()
def dns(ip):
    answer = socket.inet_aton(sys.argv[2])
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind((ip, 53))  # replies leave from ip
    while True:
        d, a = s.recvfrom(512)
        print("dns-query-from", a[0], flush=True)
        q = d[12:]; end = q.index(b"\0") + 5
        s.sendto(d[:2] + b"\x81\x80" + d[4:6] + b"\x00\x01\x00\x00\x00\x00" + q[:end]
                 + b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04" + answer, a)
for ip in sys.argv[2:]:
    threading.Thread(target=dns, args=(ip,), daemon=True).start()
tcp()
"""


def _sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, check=check, timeout=60)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))
        return int(s.getsockname()[1])


def _docker_client() -> Any:
    """A reachable engine, or skip (fail in CI: these tests must run there, as root)."""
    reason = None
    if os.geteuid() != 0:
        reason = "needs root (iptables, network namespaces)"
    try:
        import docker

        client = docker.from_env(timeout=60)
        client.ping()
        client.images.get(IMAGE)
    except Exception as exc:
        reason = reason or f"docker engine or image {IMAGE} not available: {exc}"
    if reason:
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return client


def _free_subnets(client: Any, count: int) -> list[str]:
    used = []
    for net in client.networks.list():
        for cfg in (net.attrs.get("IPAM") or {}).get("Config") or []:
            if cfg.get("Subnet") and ":" not in cfg["Subnet"]:
                used.append(ipaddress.ip_network(cfg["Subnet"]))
    found: list[str] = []
    for third in range(200, 250):
        cand = ipaddress.ip_network(f"10.213.{third}.0/24")
        if not any(cand.overlaps(u) for u in used):
            found.append(str(cand))
        if len(found) == count:
            return found
    raise RuntimeError("no free 10.213.x.0/24 subnet for the test networks")


class _ApiHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"control-plane-api"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


class _Banner(threading.Thread):
    """The 'PostgreSQL' stand-in: accepts on 0.0.0.0 and sends a banner."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("0.0.0.0", port))
        self.sock.listen(32)

    def run(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.sendall(b"postgres-banner")


@dataclass
class Stage:
    client: Any
    mgr: NetworkManager
    settings: Settings
    pg_port: int
    inet_ip: str  # the stand-in internet server
    metadata_ip: str  # 169.254.169.254, live in the netns
    private_ip: str  # an RFC1918 address, live in the netns
    host_ips: list[str]  # the host's other addresses (docker0, main interface, ...)
    victims: dict[NetworkMode, str]  # IP of a listening container on each network
    dns_log: str

    def probe(
        self, mode: NetworkMode, targets: list[tuple[str, str, int]], *, dns: str | None = None
    ) -> dict[str, str]:
        kwargs: dict[str, Any] = dict(HARDENING)
        if dns:
            kwargs["dns"] = [dns]
        container = self.client.containers.create(
            IMAGE,
            command=["/usr/bin/python3", "-c", PROBE, json.dumps(targets)],
            network_mode=self.mgr.network_for(mode),
            labels={TEST_LABEL: "network"},
            **kwargs,
        )
        try:
            container.start()
            status = container.wait(timeout=60)
            out = container.logs(stdout=True, stderr=False).decode()
            err = container.logs(stdout=False, stderr=True).decode()
            assert status["StatusCode"] == 0, err
            result: dict[str, str] = json.loads(out.strip().splitlines()[-1])
            return result
        finally:
            container.remove(force=True)


def _host_ips(exclude: set[str]) -> list[str]:
    out = _sh("ip", "-4", "-o", "addr", "show", "scope", "global").stdout
    ips = []
    for line in out.splitlines():
        parts = line.split()
        ifname, addr = parts[1], parts[3].split("/")[0]
        if ifname not in exclude:
            ips.append(addr)
    return ips


@pytest.fixture(scope="module")
def stage() -> Iterator[Stage]:
    client = _docker_client()
    tag = uuid.uuid4().hex[:4]
    api_subnet, egress_subnet = _free_subnets(client, 2)
    api_port, pg_port = _free_port(), _free_port()
    settings = Settings(
        port=api_port,
        api_network=f"cpt-api-{tag}",
        api_network_subnet=api_subnet,
        egress_network=f"cpt-eg-{tag}",
        egress_network_subnet=egress_subnet,
    )
    ns, veth_host, veth_ns = f"cpt-inet-{tag}", f"cpt-h-{tag}", f"cpt-n-{tag}"
    octet = int(tag, 16) % 250 + 2  # another concurrent run of this module picks other addresses
    host_side, ns_side = f"198.18.{octet}.1", f"198.18.{octet}.2"
    metadata_ip, private_ip = "169.254.169.254", f"10.99.{octet}.1"
    dns_log = f"/tmp/cpt-dns-{tag}.log"
    cleanups: list[Any] = []
    try:
        # The "internet" namespace, reachable from the host; it also owns the metadata and a private address.
        _sh("ip", "netns", "add", ns)
        cleanups.append(lambda: _sh("ip", "netns", "del", ns, check=False))
        _sh("ip", "link", "add", veth_host, "type", "veth", "peer", "name", veth_ns)
        cleanups.append(lambda: _sh("ip", "link", "del", veth_host, check=False))
        _sh("ip", "link", "set", veth_ns, "netns", ns)
        _sh("ip", "addr", "add", f"{host_side}/24", "dev", veth_host)
        _sh("ip", "link", "set", veth_host, "up")
        _sh("ip", "-n", ns, "addr", "add", f"{ns_side}/24", "dev", veth_ns)
        _sh("ip", "-n", ns, "link", "set", veth_ns, "up")
        _sh("ip", "-n", ns, "link", "set", "lo", "up")
        for extra in (metadata_ip, private_ip):
            _sh("ip", "-n", ns, "addr", "add", f"{extra}/32", "dev", "lo")
            _sh("ip", "route", "add", f"{extra}/32", "via", ns_side)
            cleanups.append(lambda extra=extra: _sh("ip", "route", "del", f"{extra}/32", check=False))
        _sh("ip", "-n", ns, "route", "add", "default", "via", host_side)
        log_file = open(dns_log, "w")  # closed in cleanup
        server = subprocess.Popen(
            ["ip", "netns", "exec", ns, sys.executable, "-c", INET_SERVER, str(INET_PORT), ns_side, private_ip],
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )

        def stop_server() -> None:
            server.terminate()
            server.wait(10)
            log_file.close()
            os.unlink(dns_log)

        cleanups.append(stop_server)

        # Nameservers docker would forward to; a private one exercises the egress DNS exception.
        patcher = mock.patch.object(docker_network, "upstream_nameservers", lambda: [ipaddress.IPv4Address(private_ip)])
        patcher.start()
        cleanups.append(patcher.stop)

        mgr = NetworkManager(client, settings)
        cleanups.append(mgr.teardown)
        mgr.ensure()
        assert mgr.problem(NetworkMode.API) is None, mgr.problem(NetworkMode.API)
        assert mgr.problem(NetworkMode.EGRESS) is None, mgr.problem(NetworkMode.EGRESS)

        # The API stand-in on every address the control plane is told to bind.
        for ip, port in mgr.listen_addresses():
            httpd = http.server.ThreadingHTTPServer((ip, port), _ApiHandler)
            threading.Thread(target=httpd.serve_forever, daemon=True).start()
            cleanups.append(lambda httpd=httpd: (httpd.shutdown(), httpd.server_close()))
        banner = _Banner(pg_port)
        banner.start()
        cleanups.append(banner.sock.close)

        victims: dict[NetworkMode, str] = {}
        for mode in (NetworkMode.API, NetworkMode.EGRESS):
            victim = client.containers.run(
                IMAGE,
                command=["/usr/bin/python3", "-c", VICTIM],
                network_mode=mgr.network_for(mode),
                labels={TEST_LABEL: "network"},
                detach=True,
                **HARDENING,
            )
            cleanups.append(lambda victim=victim: victim.remove(force=True))
            victim.reload()
            victims[mode] = victim.attrs["NetworkSettings"]["Networks"][mgr.network_for(mode)]["IPAddress"]
            # Control: the victim does listen on that address (checked from inside itself).
            for _ in range(50):
                ok = victim.exec_run(
                    ["/usr/bin/python3", "-c", f"import socket; socket.create_connection(('{victims[mode]}', 9000), 2)"]
                )
                if ok.exit_code == 0:
                    break
                time.sleep(0.1)
            assert ok.exit_code == 0, ok.output

        bridges = {net.bridge for net in mgr.networks.values()} | {veth_host}
        yield Stage(
            client=client,
            mgr=mgr,
            settings=settings,
            pg_port=pg_port,
            inet_ip=ns_side,
            metadata_ip=metadata_ip,
            private_ip=private_ip,
            host_ips=_host_ips(bridges),
            victims=victims,
            dns_log=dns_log,
        )
    finally:
        for undo in reversed(cleanups):
            try:
                undo()
            except Exception as exc:  # keep cleaning
                print("cleanup failed:", exc, file=sys.stderr)
        for leftover in client.containers.list(all=True, filters={"label": f"{TEST_LABEL}=network"}):
            leftover.remove(force=True)


def _gw(stage: Stage, mode: NetworkMode) -> str:
    return str(stage.mgr.networks[mode].gateway)


def _opened(result: dict[str, str], key: str) -> bool:
    return result[key].startswith("open:")


# --- control: the targets are alive ---------------------------------------------------------------------


@pytest.mark.docker
def test_targets_are_reachable_from_the_host(stage: Stage) -> None:
    """Every address the runs must not reach does answer the host, so a failure below is the firewall."""
    for ip, port, expect in [
        (stage.inet_ip, INET_PORT, b"internet"),
        (stage.metadata_ip, INET_PORT, b"internet"),
        (stage.private_ip, INET_PORT, b"internet"),
        (_gw(stage, NetworkMode.API), stage.pg_port, b"postgres-banner"),
        (_gw(stage, NetworkMode.EGRESS), stage.pg_port, b"postgres-banner"),
        *[(ip, stage.pg_port, b"postgres-banner") for ip in stage.host_ips],
    ]:
        with socket.create_connection((ip, port), timeout=3) as s:
            assert s.recv(64).startswith(expect), (ip, port)


# --- the rules themselves -------------------------------------------------------------------------------


@pytest.mark.docker
def test_rules_installed_once_and_first(stage: Stage) -> None:
    mgr = stage.mgr
    mgr.ensure()  # a second start: still one jump each, still first, chains rebuilt identically
    for chain, target in (("INPUT", mgr.input_chain), ("DOCKER-USER", mgr.forward_chain)):
        rules = [r for r in _sh("iptables", "-S", chain).stdout.splitlines() if r.startswith("-A ")]
        assert rules[0] == f"-A {chain} -j {target}"
        assert rules.count(f"-A {chain} -j {target}") == 1
    # What the kernel holds is exactly the text ensure() loaded (nothing stale left from the first start).
    wanted = mgr.rules_v4().splitlines()
    for chain in (mgr.input_chain, mgr.forward_chain):
        listed = [r for r in _sh("iptables", "-S", chain).stdout.splitlines() if r.startswith("-A ")]
        assert listed == [r for r in wanted if r.startswith(f"-A {chain} ")]
    v6_wanted = mgr.rules_v6().splitlines()
    for chain in (mgr.input_chain, mgr.forward_chain):
        listed = [r for r in _sh("ip6tables", "-S", chain).stdout.splitlines() if r.startswith("-A ")]
        assert listed == [r for r in v6_wanted if r.startswith(f"-A {chain} ")]
    api, egress = mgr.networks[NetworkMode.API], mgr.networks[NetworkMode.EGRESS]
    port = stage.settings.port
    assert f"-A {mgr.input_chain} -d {api.gateway}/32 -i {api.bridge} -p tcp -m tcp --dport {port} -j ACCEPT" in wanted
    assert f"-A {mgr.input_chain} -i {api.bridge} -j DROP" in wanted
    for cidr in stage.settings.egress_blocked_cidrs:
        assert f"-A {mgr.forward_chain} -d {cidr} -i {egress.bridge} -j DROP" in wanted
    assert mgr.listen_addresses() == [
        (str(api.gateway), stage.settings.port),
        (str(egress.gateway), stage.settings.port),
    ]
    assert mgr.api_host(NetworkMode.API) == f"{api.gateway}:{stage.settings.port}"
    assert mgr.api_host(NetworkMode.NONE) is None


# --- api ------------------------------------------------------------------------------------------------


@pytest.mark.docker
def test_api_mode_reaches_only_the_api(stage: Stage) -> None:
    gw, port = _gw(stage, NetworkMode.API), stage.settings.port
    host, hport = stage.mgr.api_host(NetworkMode.API).rsplit(":", 1)  # type: ignore[union-attr]
    targets = [
        ("http", host, int(hport)),  # the API: allowed
        ("tcp", gw, stage.pg_port),  # the host's DB port on the gateway
        ("tcp", gw, 22),  # sshd-like
        *[("tcp", ip, stage.pg_port) for ip in stage.host_ips],  # the host's other addresses
        ("tcp", _gw(stage, NetworkMode.EGRESS), port),  # the other bridge's gateway
        ("tcp", stage.victims[NetworkMode.API], 9000),  # another run on the same network
        ("tcp", stage.victims[NetworkMode.EGRESS], 9000),  # a run on the egress network
        ("tcp", "1.1.1.1", 80),
        ("tcp", stage.metadata_ip, INET_PORT),
        ("tcp", stage.inet_ip, INET_PORT),
        ("tcp", stage.private_ip, INET_PORT),
        ("dns", "svc.example.test", 0),  # even through a resolver that answers every name
    ]
    result = stage.probe(NetworkMode.API, targets, dns=stage.private_ip)
    assert _opened(result, f"http:{host}:{hport}") and "control-plane-api" in result[f"http:{host}:{hport}"]
    for kind, ip, p in targets[1:]:
        key = f"{kind}:{ip}:{p}"
        assert not _opened(result, key) and not result[key].startswith("resolved:"), (key, result[key])
    assert result["ipv6-interfaces"] in ("", "lo"), result["ipv6-interfaces"]
    with open(stage.dns_log) as f:
        assert "dns-query-from" not in f.read()  # the query never left the sandbox


# --- egress ---------------------------------------------------------------------------------------------


@pytest.mark.docker
def test_egress_mode_reaches_internet_and_api_but_not_host_metadata_private_or_runs(stage: Stage) -> None:
    gw, port = _gw(stage, NetworkMode.EGRESS), stage.settings.port
    allowed = [
        ("tcp", stage.inet_ip, INET_PORT),  # "the internet"
        ("http", gw, port),  # the API on its own gateway
        ("dns", "svc.example.test", 0),  # DNS via dockerd's resolver to the (private) upstream
    ]
    denied = [
        ("tcp", gw, stage.pg_port),
        ("tcp", gw, 22),
        *[("tcp", ip, stage.pg_port) for ip in stage.host_ips],
        ("tcp", _gw(stage, NetworkMode.API), port),  # the api bridge's gateway
        ("tcp", _gw(stage, NetworkMode.API), stage.pg_port),
        ("tcp", stage.metadata_ip, INET_PORT),
        ("tcp", stage.metadata_ip, 53),
        ("tcp", stage.private_ip, INET_PORT),  # the resolver's address: only port 53 is let through
        ("tcp", stage.victims[NetworkMode.EGRESS], 9000),  # another run on the same network
        ("tcp", stage.victims[NetworkMode.API], 9000),  # a run on the api network
    ]
    result = stage.probe(NetworkMode.EGRESS, allowed + denied, dns=stage.private_ip)
    assert result[f"tcp:{stage.inet_ip}:{INET_PORT}"].startswith("open:internet:"), result
    assert "control-plane-api" in result[f"http:{gw}:{port}"], result
    assert result["dns:svc.example.test:0"] == f"resolved:{stage.inet_ip}", result
    for kind, ip, p in denied:
        key = f"{kind}:{ip}:{p}"
        assert not _opened(result, key), (key, result[key])
    assert result["ipv6-interfaces"] in ("", "lo"), result["ipv6-interfaces"]


# --- none -----------------------------------------------------------------------------------------------


@pytest.mark.docker
def test_none_mode_reaches_nothing(stage: Stage) -> None:
    assert stage.mgr.network_for(NetworkMode.NONE) == "none"
    targets = [
        ("http", _gw(stage, NetworkMode.API), stage.settings.port),
        ("http", _gw(stage, NetworkMode.EGRESS), stage.settings.port),
        ("tcp", stage.inet_ip, INET_PORT),
        ("tcp", stage.metadata_ip, INET_PORT),
        *[("tcp", ip, stage.pg_port) for ip in stage.host_ips],
        ("tcp", stage.victims[NetworkMode.EGRESS], 9000),
        ("dns", "svc.example.test", 0),
    ]
    result = stage.probe(NetworkMode.NONE, targets, dns=stage.private_ip)
    for kind, ip, p in targets:
        key = f"{kind}:{ip}:{p}"
        assert not _opened(result, key) and not result[key].startswith("resolved:"), (key, result[key])


# --- no firewall, no api/egress ---------------------------------------------------------------------------


def test_without_firewall_api_and_egress_are_refused() -> None:
    settings = Settings(manage_firewall=False, api_network="cpt-nofw-api", egress_network="cpt-nofw-eg")
    client = mock.MagicMock()
    mgr = NetworkManager(client, settings)
    mgr.ensure()  # must not raise
    assert mgr.network_for(NetworkMode.NONE) == "none"
    for mode in (NetworkMode.API, NetworkMode.EGRESS):
        with pytest.raises(LaunchFailed) as info:
            mgr.network_for(mode)
        assert str(info.value) == (
            f"network mode '{mode.value}' needs the control plane's firewall rules, which could not be "
            "installed: CP_MANAGE_FIREWALL is false"
        )
    assert mgr.listen_addresses() == []
    client.networks.create.assert_not_called()  # no network without its rules
    if os.geteuid() == 0:
        assert _sh("iptables", "-S", mgr.input_chain, check=False).returncode != 0


def test_not_root_is_recorded_not_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    mgr = NetworkManager(mock.MagicMock(), Settings(api_network="cpt-nr-api", egress_network="cpt-nr-eg"))
    mgr.ensure()
    with pytest.raises(LaunchFailed, match="does not run as root"):
        mgr.network_for(NetworkMode.EGRESS)


def test_before_ensure_modes_are_refused() -> None:
    mgr = NetworkManager(mock.MagicMock(), Settings())
    with pytest.raises(LaunchFailed, match="has not been prepared"):
        mgr.network_for(NetworkMode.API)


def test_rules_text() -> None:
    settings = Settings(egress_blocked_cidrs=["169.254.0.0/16", "10.0.0.0/8"], port=8080)
    mgr = NetworkManager(mock.MagicMock(), settings)
    with mock.patch.object(
        docker_network,
        "upstream_nameservers",
        lambda: [ipaddress.IPv4Address("10.0.0.2"), ipaddress.IPv4Address("9.9.9.9")],
    ):
        text = mgr.rules_v4()
    lines = text.splitlines()
    assert "-A CP-SANDBOX-INPUT -d 10.213.0.1/32 -i cp-api0 -p tcp -m tcp --dport 8080 -j ACCEPT" in lines
    dns_exception = "-A CP-SANDBOX-FWD -d 10.0.0.2/32 -i cp-egress0 -p udp -m udp --dport 53 -j RETURN"
    assert not any("9.9.9.9" in line and "CP-SANDBOX-FWD" in line for line in lines)  # not blocked anyway
    assert lines.index(dns_exception) < lines.index("-A CP-SANDBOX-FWD -d 10.0.0.0/8 -i cp-egress0 -j DROP")
    assert lines[-1] == "COMMIT"


def test_bridge_names_fit_the_kernel_limit() -> None:
    assert docker_network.bridge_name("cp-api") == "cp-api0"
    long = docker_network.bridge_name("a-very-long-network-name")
    assert len(long) <= 15 and long == docker_network.bridge_name("a-very-long-network-name")
