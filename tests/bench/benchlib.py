"""What both benchmark scripts need to leave the machine as they found it: the server they start gives
its tenants FILES/ARCHIVE volumes (ARCHIVE on a loop device) and may leave sandboxes behind when
interrupted. Imported as a sibling module (the scripts run as ``python tests/bench/<name>.py``)."""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path

import docker


def remove_containers(client: docker.DockerClient, prefix: str) -> int:
    """Force-remove every container whose name starts with ``prefix``; returns how many."""
    left = [
        c
        for c in client.api.containers(all=True, filters={"name": prefix})
        if any(str(n).lstrip("/").startswith(prefix) for n in c.get("Names") or [])
    ]
    for c in left:
        client.api.remove_container(c["Id"], force=True)
    return len(left)


def remove_tenant_volumes(client: docker.DockerClient, *, data: Path, database: Path, prefix: str) -> None:
    """Remove the FILES/ARCHIVE volumes (and loop device) of every tenant in the server's SQLite database."""
    if not database.exists():
        return
    from controlplane.backends.docker.volumes import TenantVolumes
    from controlplane.core.settings import Settings

    with sqlite3.connect(database) as conn:
        tenants = [str(row[0]) for row in conn.execute("SELECT id FROM tenants")]
    volumes = TenantVolumes(client, Settings(data_dir=data, container_prefix=prefix))
    for tenant_id in tenants:
        try:
            volumes.remove(tenant_id)
        except Exception as exc:
            print(f"removing the volumes of tenant {tenant_id} failed: {exc}", file=sys.stderr)
