"""A finished run's counters, read from the host when the engine runs here.

The engine's one-shot stats wait for its collector's next tick (20 ms to 1 s on docker 20.10), which a
synchronous run should not pay. When the control plane shares the engine's host and PID namespace, the
same kernel counters are a file read away: network bytes from ``/proc/<pid>/net/dev`` (the container's
network namespace), CPU and peak memory from its cgroup. The container's id must appear in
``/proc/<pid>/cgroup``, so a PID from another namespace is never trusted. Elsewhere this returns None and
the caller falls back to the engine's stats.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from controlplane.backends.base import Usage

PROC = Path("/proc")
CGROUP = Path("/sys/fs/cgroup")


def host_usage(info: dict[str, Any], *, proc: Path = PROC, cgroup_root: Path = CGROUP) -> Usage | None:
    pid = int((info.get("State") or {}).get("Pid") or 0)
    cid = str(info.get("Id") or "")
    if pid <= 0 or len(cid) < 12:
        return None
    try:
        groups = (proc / str(pid) / "cgroup").read_text()
        net = (proc / str(pid) / "net" / "dev").read_text()
    except OSError:
        return None
    if cid not in groups:
        return None  # not this host's view of that container
    rx, tx = _net(net)
    cpu, mem = _cgroup(groups, cgroup_root)
    return Usage(cpu_seconds=cpu, memory_peak_bytes=mem, net_rx_bytes=rx, net_tx_bytes=tx)


def _net(text: str) -> tuple[int, int]:
    rx = tx = 0
    for line in text.splitlines()[2:]:
        name, _, rest = line.partition(":")
        fields = rest.split()
        if name.strip() == "lo" or len(fields) < 9:
            continue
        rx += int(fields[0])
        tx += int(fields[8])
    return rx, tx


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def _cgroup(groups: str, root: Path) -> tuple[float, int]:
    cpu = 0.0
    mem = 0
    for line in groups.splitlines():
        _, controllers, path = line.split(":", 2)
        rel = path.lstrip("/")
        names = controllers.split(",")
        if controllers == "":  # cgroup v2 unified hierarchy
            stat = _read(root / rel / "cpu.stat") or ""
            for row in stat.splitlines():
                key, _, value = row.partition(" ")
                if key == "usage_usec":
                    cpu = int(value) / 1e6
            peak = _read(root / rel / "memory.peak")
            mem = int(peak) if peak and peak.strip().isdigit() else mem
        if "cpuacct" in names:
            for mount in (",".join(names), "cpuacct", "cpu,cpuacct", "cpuacct,cpu"):
                usage = _read(root / mount / rel / "cpuacct.usage")
                if usage and usage.strip().isdigit():
                    cpu = int(usage) / 1e9
                    break
        if "memory" in names:
            peak = _read(root / "memory" / rel / "memory.max_usage_in_bytes")
            if peak and peak.strip().isdigit():
                mem = int(peak)
    return cpu, mem
