"""The docker networks behind a run's network mode, and the host firewall rules that confine them.

Docker alone does not keep a sandbox away from the machine it runs on: a container on any bridge can open
connections to every port the host binds (PostgreSQL, sshd, the API on 0.0.0.0), and a non-internal bridge
reaches the cloud metadata service and private ranges. So each mode gets a bridge with a fixed interface
name and our own iptables chains match on that name:

* ``none``   - ``network_mode="none"``; nothing reachable, nothing to install.
* ``api``    - internal bridge (no route out, icc off); the host accepts from it only TCP to the bridge's
  gateway at the API port. Nothing is forwarded from or to it.
* ``egress`` - masqueraded bridge (icc off); same INPUT treatment; forwarded traffic to the blocked CIDRs
  and to the api subnet is dropped in DOCKER-USER (docker's place for user rules, consulted before its own
  ACCEPTs), new connections into the bridge are dropped, replies keep flowing.

Docker 20.10 forwards a container's external DNS queries from the container's own network namespace, so
on egress the host's upstream resolvers (often private addresses, or 169.254.169.254 on some clouds) get a
narrow DNS-only (port 53) exception; on the internal api bridge external names never resolve.

If the rules cannot be installed, ``ensure()`` records why and the api/egress modes are refused with
``LaunchFailed``; ``none`` always works. The chains are flushed and rebuilt atomically on every ``ensure()``.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import os
import re
import shutil
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import docker.errors

from controlplane.backends.base import LABEL_MANAGED
from controlplane.core.errors import LaunchFailed
from controlplane.core.settings import Settings
from controlplane.core.states import NetworkMode

log = logging.getLogger(__name__)

_DEFAULT_NETWORKS = ("cp-api", "cp-egress")
_BR_NETFILTER = Path("/proc/sys/net/bridge/bridge-nf-call-iptables")
_DNS = ("-p udp -m udp --dport 53", "-p tcp -m tcp --dport 53")


@dataclass(frozen=True)
class SandboxNetwork:
    mode: NetworkMode
    name: str
    subnet: ipaddress.IPv4Network
    gateway: ipaddress.IPv4Address
    bridge: str  # host-side interface name the firewall rules match on
    internal: bool

    def docker_options(self) -> dict[str, str]:
        return {
            "com.docker.network.bridge.name": self.bridge,
            "com.docker.network.bridge.enable_icc": "false",
            "com.docker.network.bridge.enable_ip_masquerade": "false" if self.internal else "true",
        }


def bridge_name(network: str) -> str:
    """Interface name for a network: ``<name>0`` when it fits in 15 characters, else a stable hash."""
    if re.fullmatch(r"[A-Za-z0-9_.-]{1,14}", network):
        return network + "0"
    return "cp-" + hashlib.sha256(network.encode()).hexdigest()[:10]


def upstream_nameservers() -> list[ipaddress.IPv4Address]:
    """The resolvers dockerd forwards external queries to (what it reads from the host's resolv.conf)."""
    found: list[ipaddress.IPv4Address] = []
    for path in (Path("/etc/resolv.conf"), Path("/run/systemd/resolve/resolv.conf")):
        try:
            text = path.read_text()
        except OSError:
            continue
        for line in text.splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[0] == "nameserver":
                try:
                    addr = ipaddress.ip_address(parts[1])
                except ValueError:
                    continue
                if isinstance(addr, ipaddress.IPv4Address) and not addr.is_loopback and addr not in found:
                    found.append(addr)
        if found:  # systemd-resolved's stub (127.0.0.53) only: docker reads the second file
            break
    return found


class NetworkManager:
    def __init__(self, client: docker.DockerClient, settings: Settings) -> None:
        self._client = client
        self._settings = settings
        self._lock = threading.Lock()
        self.networks: dict[NetworkMode, SandboxNetwork] = {}
        for mode, name, subnet, internal in (
            (NetworkMode.API, settings.api_network, settings.api_network_subnet, True),
            (NetworkMode.EGRESS, settings.egress_network, settings.egress_network_subnet, False),
        ):
            net = ipaddress.IPv4Network(subnet)
            gateway = net.network_address + 1
            self.networks[mode] = SandboxNetwork(mode, name, net, gateway, bridge_name(name), internal)
        # Chains are per pair of networks, so a test instance never touches a running control plane's rules.
        pair = (settings.api_network, settings.egress_network)
        tag = "" if pair == _DEFAULT_NETWORKS else "-" + hashlib.sha256("/".join(pair).encode()).hexdigest()[:6]
        self.input_chain = "CP-SANDBOX-INPUT" + tag
        self.forward_chain = "CP-SANDBOX-FWD" + tag
        self._problems: dict[NetworkMode, str] = {
            m: _needs_firewall(m, "the backend has not been prepared yet (ensure() did not run)") for m in self.networks
        }

    # --- public interface -------------------------------------------------------------------------------

    def ensure(self) -> None:
        """Install the firewall, then create (or verify) the networks. Never raises; problems are recorded."""
        with self._lock:
            problem = self._firewall_blocker()
            if problem is None:
                try:
                    self._install_firewall()
                except (OSError, ValueError, subprocess.SubprocessError) as exc:
                    problem = f"installing iptables rules failed: {_describe(exc)}"
            if problem is not None:
                log.warning("network modes api/egress are disabled: %s", problem)
                self._problems = {m: _needs_firewall(m, problem) for m in self.networks}
                return
            self._problems = {}
            for mode, net in self.networks.items():
                try:
                    self._ensure_network(net)
                except (docker.errors.DockerException, OSError) as exc:
                    why = f"its docker network {net.name!r} could not be created: {_describe(exc)}"
                    self._problems[mode] = f"network mode {mode.value!r} is not available: {why}"
                    log.warning("network mode %s is disabled: %s", mode.value, why)
            if not self._bridge_filtering_on():
                why = "bridged traffic is not filtered (net.bridge.bridge-nf-call-iptables is not 1)"
                self._problems = {m: _needs_firewall(m, why) for m in self.networks}
                log.warning("network modes api/egress are disabled: %s", why)

    def network_for(self, mode: NetworkMode) -> str:
        mode = NetworkMode(mode)
        if mode is NetworkMode.NONE:
            return "none"
        problem = self._problems.get(mode)
        if problem is not None:
            raise LaunchFailed(problem)
        return self.networks[mode].name

    def api_host(self, mode: NetworkMode) -> str | None:
        mode = NetworkMode(mode)
        if mode is NetworkMode.NONE:
            return None
        return f"{self.networks[mode].gateway}:{self._settings.port}"

    def listen_addresses(self) -> list[tuple[str, int]]:
        return [
            (str(net.gateway), self._settings.port) for mode, net in self.networks.items() if mode not in self._problems
        ]

    def problem(self, mode: NetworkMode) -> str | None:
        """Why ``mode`` is refused (the LaunchFailed message), or None when it works."""
        return None if NetworkMode(mode) is NetworkMode.NONE else self._problems.get(NetworkMode(mode))

    def teardown(self) -> None:
        """Remove our rules and networks (tests and uninstall; never on a normal stop)."""
        with self._lock:
            self._problems = {m: _needs_firewall(m, "the rules were torn down") for m in self.networks}
            for binary, jumps in (
                ("iptables", (("INPUT", self.input_chain), ("DOCKER-USER", self.forward_chain))),
                ("ip6tables", (("INPUT", self.input_chain), ("FORWARD", self.forward_chain))),
            ):
                if shutil.which(binary) is None:
                    continue
                for chain, target in jumps:
                    while _quiet([binary, "-w", "-D", chain, "-j", target]):
                        pass
                    _quiet([binary, "-w", "-F", target])
                    _quiet([binary, "-w", "-X", target])
            for net in self.networks.values():
                try:
                    self._client.networks.get(net.name).remove()
                except docker.errors.NotFound:
                    pass
                except docker.errors.APIError as exc:
                    log.warning("could not remove network %s: %s", net.name, exc)

    # --- firewall ----------------------------------------------------------------------------------------

    def _firewall_blocker(self) -> str | None:
        if not self._settings.manage_firewall:
            return "CP_MANAGE_FIREWALL is false"
        if os.geteuid() != 0:
            return "the control plane does not run as root"
        for tool in ("iptables", "iptables-restore"):
            if shutil.which(tool) is None:
                return f"{tool} is not installed"
        if not _quiet(["iptables", "-w", "-S", "DOCKER-USER"]):
            return "docker's DOCKER-USER chain is missing (does dockerd run with --iptables=false?)"
        return None

    def rules_v4(self) -> str:
        """The iptables-restore text of our two IPv4 chains (declaring a chain flushes it atomically).

        Written in the order ``iptables -S`` prints, so a listing can be compared with it line by line.
        """
        api, egress = self.networks[NetworkMode.API], self.networks[NetworkMode.EGRESS]
        blocked = [ipaddress.IPv4Network(c, strict=False) for c in self._settings.egress_blocked_cidrs]
        resolvers = upstream_nameservers()
        inp, fwd = self.input_chain, self.forward_chain
        lines = ["*filter", f":{inp} - [0:0]", f":{fwd} - [0:0]"]
        # INPUT from either bridge: only TCP to its own gateway at the API port.
        for net in (api, egress):
            api_port = f"-p tcp -m tcp --dport {self._settings.port}"
            lines.append(f"-A {inp} -d {net.gateway}/32 -i {net.bridge} {api_port} -j ACCEPT")
            if net is egress:  # dockerd's embedded DNS forwards from the run's namespace (a local resolver)
                lines += [f"-A {inp} -d {ns}/32 -i {net.bridge} {dns} -j ACCEPT" for ns in resolvers for dns in _DNS]
            lines.append(f"-A {inp} -i {net.bridge} -j DROP")
        # api: nothing is forwarded from or to it (its gateway is INPUT, covered above).
        lines += [f"-A {fwd} -i {api.bridge} -j DROP", f"-A {fwd} -o {api.bridge} -j DROP"]
        # egress: no run-to-run traffic, nothing new into the bridge (replies keep flowing) ...
        lines += [
            f"-A {fwd} -i {egress.bridge} -o {egress.bridge} -j DROP",
            f"-A {fwd} -o {egress.bridge} -m conntrack ! --ctstate RELATED,ESTABLISHED -j DROP",
        ]
        # ... DNS to the host's own upstream resolvers even when they sit in a blocked range ...
        lines += [
            f"-A {fwd} -d {ns}/32 -i {egress.bridge} {dns} -j RETURN"
            for ns in resolvers
            if any(ns in cidr for cidr in blocked)
            for dns in _DNS
        ]
        # ... and nothing to the blocked ranges or to the api runs.
        lines += [f"-A {fwd} -d {cidr} -i {egress.bridge} -j DROP" for cidr in [*blocked, api.subnet]]
        lines.append("COMMIT")
        return "\n".join(lines) + "\n"

    def rules_v6(self) -> str:
        """Neither network has IPv6; drop IPv6 on their bridges anyway in case a run ever gets an address."""
        inp, fwd = self.input_chain, self.forward_chain
        lines = ["*filter", f":{inp} - [0:0]", f":{fwd} - [0:0]"]
        for net in self.networks.values():
            lines += [f"-A {inp} -i {net.bridge} -j DROP", f"-A {fwd} -i {net.bridge} -j DROP"]
            lines.append(f"-A {fwd} -o {net.bridge} -j DROP")
        lines.append("COMMIT")
        return "\n".join(lines) + "\n"

    def _install_firewall(self) -> None:
        _run(["iptables-restore", "-w", "--noflush"], stdin=self.rules_v4())
        _jump_first("iptables", "INPUT", self.input_chain)
        _jump_first("iptables", "DOCKER-USER", self.forward_chain)
        if Path("/proc/net/if_inet6").exists():
            if shutil.which("ip6tables-restore") is None:
                log.warning("ip6tables is missing: sandbox bridges rely on docker disabling IPv6 in runs")
            else:
                _run(["ip6tables-restore", "-w", "--noflush"], stdin=self.rules_v6())
                _jump_first("ip6tables", "INPUT", self.input_chain)
                _jump_first("ip6tables", "FORWARD", self.forward_chain)
        log.info("sandbox firewall installed (chains %s, %s)", self.input_chain, self.forward_chain)

    def _bridge_filtering_on(self) -> bool:
        """icc=false and our bridge rules only see bridged (run-to-run) packets through br_netfilter."""
        if not _BR_NETFILTER.exists():
            _quiet(["modprobe", "br_netfilter"])
        try:
            if _BR_NETFILTER.read_text().strip() != "1":
                _BR_NETFILTER.write_text("1\n")
            return _BR_NETFILTER.read_text().strip() == "1"
        except OSError:
            return False

    # --- docker networks ---------------------------------------------------------------------------------

    def _ensure_network(self, net: SandboxNetwork) -> None:
        try:
            existing = self._client.networks.get(net.name)
        except docker.errors.NotFound:
            existing = None
        if existing is not None:
            mismatch = self._mismatch(existing.attrs, net)
            if mismatch is None:
                self._no_ipv6_on_bridge(net)
                return
            log.warning("recreating docker network %s: %s", net.name, mismatch)
            existing.remove()  # raises (and the mode stays off) while runs are still attached
        ipam = docker.types.IPAMConfig(
            pool_configs=[docker.types.IPAMPool(subnet=str(net.subnet), gateway=str(net.gateway))]
        )
        self._client.networks.create(
            net.name,
            driver="bridge",
            internal=net.internal,
            options=net.docker_options(),
            ipam=ipam,
            check_duplicate=True,
            labels={LABEL_MANAGED: "true", "io.controlplane.network-mode": net.mode.value},
        )
        log.info("created docker network %s (%s, bridge %s)", net.name, net.subnet, net.bridge)
        self._no_ipv6_on_bridge(net)

    @staticmethod
    def _mismatch(attrs: dict[str, Any], net: SandboxNetwork) -> str | None:
        options: dict[str, Any] = attrs.get("Options") or {}
        configs: list[dict[str, Any]] = (attrs.get("IPAM") or {}).get("Config") or []
        subnets = {str(c.get("Subnet")) for c in configs}
        if attrs.get("Driver") != "bridge":
            return f"driver is {attrs.get('Driver')!r}"
        if bool(attrs.get("Internal")) != net.internal:
            return f"internal is {attrs.get('Internal')!r}, want {net.internal}"
        if subnets != {str(net.subnet)}:
            return f"subnets are {sorted(subnets)}, want {net.subnet}"
        for key, want in net.docker_options().items():
            if key == "com.docker.network.bridge.enable_ip_masquerade" and net.internal:
                continue
            if str(options.get(key, "")).lower() != want:
                return f"option {key} is {options.get(key)!r}, want {want!r}"
        return None

    @staticmethod
    def _no_ipv6_on_bridge(net: SandboxNetwork) -> None:
        """No host IPv6 address on the bridge, so runs have nothing to reach over link-local."""
        knob = Path(f"/proc/sys/net/ipv6/conf/{net.bridge}/disable_ipv6")
        try:
            if knob.exists():
                knob.write_text("1\n")
        except OSError as exc:
            log.info("could not disable IPv6 on %s: %s", net.bridge, exc)


# --- helpers ------------------------------------------------------------------------------------------


def _run(argv: list[str], *, stdin: str | None = None) -> str:
    proc = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=60, check=False)
    if proc.returncode != 0:
        raise subprocess.SubprocessError(f"{' '.join(argv)} exited {proc.returncode}: {proc.stderr.strip()}")
    return proc.stdout


def _quiet(argv: list[str]) -> bool:
    try:
        return subprocess.run(argv, capture_output=True, timeout=60, check=False).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def _jump_first(binary: str, chain: str, target: str) -> None:
    """Make ``-j target`` the first rule of ``chain``, exactly once (rules inserted later stay behind)."""
    rules = [line for line in _run([binary, "-w", "-S", chain]).splitlines() if line.startswith("-A ")]
    positions = [i + 1 for i, line in enumerate(rules) if line.split() == ["-A", chain, "-j", target]]
    if positions[:1] != [1]:
        _run([binary, "-w", "-I", chain, "1", "-j", target])
        positions = [1] + [p + 1 for p in positions]
    for extra in sorted(positions[1:], reverse=True):
        _run([binary, "-w", "-D", chain, str(extra)])


def _needs_firewall(mode: NetworkMode, why: str) -> str:
    return f"network mode {mode.value!r} needs the control plane's firewall rules, which could not be installed: {why}"


def _describe(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:400]
