"""How one run's container is configured: every hardening option in one pure function.

Kept apart from the engine calls so a reviewer sees the whole sandbox policy on one screen, and so unit
tests can check it without a Docker engine. ``container_config`` returns plain keyword arguments for
docker-py's ``create_container`` and ``create_host_config``; nothing here talks to the engine.

Policy (see design.md, "Sandboxes"): non-root user, read-only root file system, two sized tmpfs mounts
(``/work`` may exec, ``/tmp`` may not), all capabilities dropped, no-new-privileges, never privileged, no
binds (only the extra ``Mount`` objects a caller hands in, e.g. tenant volumes), memory == memory+swap,
CPU/pids limits, nofile/core/fsize ulimits, bounded json-file logs, no environment from the control plane.
The image brings its own init (tini) and runner.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from controlplane.backends.base import (
    SANDBOX_WORK,
    RunSpec,
)
from controlplane.core.settings import Settings
from controlplane.core.states import NetworkMode

if TYPE_CHECKING:
    from docker.types import Mount

MIB = 1024 * 1024
SHM_MB = 16
OOM_SCORE_ADJ = 500  # on a host-wide OOM the kernel picks a sandbox before the control plane
HOSTNAME = "sandbox"


class NetworkProvider(Protocol):
    """Plug point for runs with network=api|egress (``docker_network.NetworkManager`` fits). Blocking
    methods: the backend calls them in its thread pool."""

    def ensure(self) -> None:
        """Create networks and firewall rules; called from ``DockerBackend.prepare``."""

    def network_for(self, mode: NetworkMode) -> str:
        """Docker network name for ``mode``; raise LaunchFailed when that mode is not available."""

    def api_host(self, mode: NetworkMode) -> str | None:
        """host:port a run on ``mode`` uses to reach the API."""

    def listen_addresses(self) -> list[tuple[str, int]]:
        """Addresses the API must also listen on for runs to reach it."""


class MountProvider(Protocol):
    """Plug point for tenant volumes (FILES read-only, ARCHIVE read-write); never host bind mounts.
    Blocking: the backend calls it in its thread pool."""

    def mounts_for(self, tenant_id: str) -> list[Mount]:
        """Mounts for a run of ``tenant_id``; called for every launch (``docker_volumes.TenantVolumes``)."""


@dataclass(frozen=True)
class ContainerConfig:
    name: str
    create: dict[str, Any]  # keyword arguments of APIClient.create_container (without host_config)
    host: dict[str, Any]  # keyword arguments of APIClient.create_host_config


def container_name(settings: Settings, run_id: str) -> str:
    return settings.container_prefix + run_id


def container_config(
    spec: RunSpec,
    settings: Settings,
    *,
    network_mode: str,
    mounts: list[Mount] | None = None,
) -> ContainerConfig:
    """Create/host-config arguments for ``spec``'s one container. ``mounts``: extra docker.types.Mount."""
    import docker.types  # the registry imports this module only when the docker extra is installed

    uid, _, gid = settings.sandbox_user.partition(":")
    gid = gid or uid
    res = spec.resources
    memory = f"{res.memory_mb}m"
    # a single file may fill a tmpfs (ENOSPC) but never exceed the largest one (SIGXFSZ past it); one MiB
    # above the largest, or a file filling an empty tmpfs of exactly that size would get EFBIG, not ENOSPC
    fsize = (max(res.work_mb, res.tmp_mb) + 1) * MIB
    log_bytes = max(2 * settings.log_max_bytes, MIB)
    host: dict[str, Any] = {
        "privileged": False,
        "read_only": True,
        "tmpfs": {
            SANDBOX_WORK: f"rw,exec,nosuid,nodev,size={res.work_mb}m,uid={uid},gid={gid},mode=0700",
            # /work already allows exec; /tmp does not, so a dropped binary needs a deliberate step
            "/tmp": f"rw,noexec,nosuid,nodev,size={res.tmp_mb}m,mode=1777",  # noqa: S108 - inside the sandbox
        },
        "mounts": list(mounts or []),
        "binds": None,
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges:true"],
        "network_mode": network_mode,
        "ipc_mode": "private",
        "mem_limit": memory,
        "memswap_limit": memory,
        "nano_cpus": int(res.cpus * 1_000_000_000),
        "pids_limit": res.pids,
        "ulimits": [
            docker.types.Ulimit(name="nofile", soft=res.nofile, hard=res.nofile),
            docker.types.Ulimit(name="core", soft=0, hard=0),
            docker.types.Ulimit(name="fsize", soft=fsize, hard=fsize),
        ],
        "oom_score_adj": OOM_SCORE_ADJ,
        "shm_size": f"{SHM_MB}m",
        "init": False,  # the image's entrypoint is tini
        "log_config": docker.types.LogConfig(type="json-file", config={"max-size": str(log_bytes), "max-file": "2"}),
        "auto_remove": False,  # finish() reads the exit status first, then removes
    }
    create: dict[str, Any] = {
        "image": spec.image or settings.sandbox_image,
        "hostname": HOSTNAME,
        "user": f"{uid}:{gid}",
        "labels": spec.sandbox_labels(),
        "environment": None,  # nothing of ours leaks in; the runner builds the script's env from the bundle
        "stdin_open": True,  # with detach=False docker-py also sets StdinOnce: EOF on our stdin closes theirs
        "tty": False,
        "detach": False,
    }
    return ContainerConfig(name=container_name(settings, spec.run_id), create=create, host=host)
