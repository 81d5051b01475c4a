"""Host-side counters of a container: parsed from procfs/cgroupfs trees, trusted only for the right id."""

from __future__ import annotations

from pathlib import Path

from controlplane.backends.docker.usage import host_usage

CID = "f" * 64
NET_DEV = (  # /proc/<pid>/net/dev: two header lines, then one line per interface
    "Inter-|   Receive ...|  Transmit ...\n"
    " face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets ...\n"
    "    lo:  999999     10    0    0    0     0          0         0   999999     10    0    0    0     0       0 0\n"
    "  eth0:    7509     40    0    0    0     0          0         0     3937     30    0    0    0     0       0 0\n"
)


def tree(tmp: Path, cgroup: str, files: dict[str, str]) -> tuple[Path, Path]:
    proc, root = tmp / "proc", tmp / "cg"
    (proc / "42" / "net").mkdir(parents=True)
    (proc / "42" / "cgroup").write_text(cgroup)
    (proc / "42" / "net" / "dev").write_text(NET_DEV)
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return proc, root


def test_cgroup_v1_counters(tmp_path: Path) -> None:
    groups = f"4:memory:/docker/{CID}\n2:cpuacct:/docker/{CID}\n1:cpu:/docker/{CID}\n"
    proc, root = tree(
        tmp_path,
        groups,
        {
            f"cpuacct/docker/{CID}/cpuacct.usage": "2500000000\n",
            f"memory/docker/{CID}/memory.max_usage_in_bytes": "25174016\n",
        },
    )
    usage = host_usage({"Id": CID, "State": {"Pid": 42}}, proc=proc, cgroup_root=root)
    assert usage is not None
    assert (usage.net_rx_bytes, usage.net_tx_bytes) == (7509, 3937)  # loopback is not the network
    assert usage.cpu_seconds == 2.5 and usage.memory_peak_bytes == 25174016


def test_cgroup_v2_counters(tmp_path: Path) -> None:
    rel = f"system.slice/docker-{CID}.scope"
    proc, root = tree(
        tmp_path,
        f"0::/{rel}\n",
        {f"{rel}/cpu.stat": "usage_usec 1500000\nuser_usec 1\n", f"{rel}/memory.peak": "1048576\n"},
    )
    usage = host_usage({"Id": CID, "State": {"Pid": 42}}, proc=proc, cgroup_root=root)
    assert usage is not None and usage.cpu_seconds == 1.5 and usage.memory_peak_bytes == 1048576


def test_a_pid_of_another_namespace_is_not_trusted(tmp_path: Path) -> None:
    proc, root = tree(tmp_path, "4:memory:/docker/" + "a" * 64 + "\n", {})
    assert host_usage({"Id": CID, "State": {"Pid": 42}}, proc=proc, cgroup_root=root) is None
    assert host_usage({"Id": CID, "State": {"Pid": 0}}, proc=proc, cgroup_root=root) is None
    assert host_usage({"Id": CID, "State": {"Pid": 7}}, proc=proc, cgroup_root=root) is None
