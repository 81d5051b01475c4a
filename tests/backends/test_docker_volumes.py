"""Tenant FILES/ARCHIVE volumes against the real engine: read-only files, persistence, isolation between
tenants, the size cap (ENOSPC inside, nothing outside), retention cleaning and complete removal."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from controlplane.backends.docker.volumes import TenantVolumes, _tar_of, volume_slug
from controlplane.core.errors import ValidationFailed
from controlplane.core.settings import Settings

IMAGE = os.environ.get("CP_SANDBOX_IMAGE", "controlplane-sandbox-python:1")
TEST_LABEL = "io.controlplane.test"
CAP_MB = 8
HARDENING: dict[str, Any] = {
    "user": "10001:10001",
    "read_only": True,
    "cap_drop": ["ALL"],
    "security_opt": ["no-new-privileges"],
    "tmpfs": {"/tmp": "size=16m"},
    "network_mode": "none",
    "pids_limit": 64,
    "mem_limit": "128m",
}


def _docker_client() -> Any:
    try:
        import docker

        client = docker.from_env(timeout=60)
        client.ping()
        client.images.get(IMAGE)
    except Exception as exc:
        reason = f"docker engine or image {IMAGE} not available: {exc}"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return client


class Harness:
    def __init__(self, client: Any, tmp: Path) -> None:
        self.client = client
        self.settings = Settings(data_dir=tmp, archive_size_mb=CAP_MB, sandbox_image=IMAGE)
        self.volumes = TenantVolumes(client, self.settings)
        self.tenants: list[str] = []

    def tenant(self) -> str:
        tenant_id = f"cpt-{uuid.uuid4().hex[:10]}"
        self.tenants.append(tenant_id)
        return tenant_id

    def run(self, tenant_id: str, code: str, *argv: str) -> tuple[int, str, str]:
        """One hardened sandbox of ``tenant_id`` with its mounts, running ``python3 -c code argv...``."""
        container = self.client.containers.create(
            IMAGE,
            command=["/usr/bin/python3", "-c", code, *argv],
            mounts=self.volumes.mounts_for(tenant_id),
            labels={TEST_LABEL: "volumes"},
            **HARDENING,
        )
        try:
            container.start()
            status = container.wait(timeout=120)
            out = container.logs(stdout=True, stderr=False).decode()
            err = container.logs(stdout=False, stderr=True).decode()
            return int(status["StatusCode"]), out, err
        finally:
            container.remove(force=True)

    def json(self, tenant_id: str, code: str, *argv: str) -> Any:
        code_, out, err = self.run(tenant_id, code, *argv)
        assert code_ == 0, err
        return json.loads(out.strip().splitlines()[-1])


@pytest.fixture
def h(tmp_path: Path) -> Iterator[Harness]:
    harness = Harness(_docker_client(), tmp_path)
    try:
        yield harness
    finally:
        for leftover in harness.client.containers.list(all=True, filters={"label": f"{TEST_LABEL}=volumes"}):
            leftover.remove(force=True)
        for tenant_id in harness.tenants:
            harness.volumes.remove(tenant_id)


def _losetup_j(image: Path) -> str:
    return subprocess.run(["losetup", "-j", str(image)], capture_output=True, text=True, check=True).stdout


def _needs_cap(h: Harness) -> None:
    if not h.volumes.capped:
        if os.environ.get("CI"):
            pytest.fail(f"archive cap unavailable in CI: {h.volumes.uncapped_reason}")
        pytest.skip(f"archive cap unavailable: {h.volumes.uncapped_reason}")


READ_FILES = r"""
import errno, json, os
out = {"a": open("/mnt/files/a.txt").read(), "b": open("/mnt/files/dir/b.txt").read(),
       "listing": sorted(os.listdir("/mnt/files")), "owner": os.stat("/mnt/files/a.txt").st_uid,
       "mode": oct(os.stat("/mnt/files/a.txt").st_mode & 0o777)}
for label, action in [("create", lambda: open("/mnt/files/new", "w")),
                      ("modify", lambda: open("/mnt/files/a.txt", "a")),
                      ("delete", lambda: os.unlink("/mnt/files/a.txt")),
                      ("mkdir", lambda: os.mkdir("/mnt/files/d"))]:
    try:
        action(); out[label] = "allowed"
    except OSError as e:
        out[label] = errno.errorcode[e.errno]
for line in open("/proc/self/mountinfo"):
    fields = line.split()
    if fields[4] in ("/mnt/files", "/mnt/archive"):
        out["mount:" + fields[4]] = fields[5].split(",")[0]
print(json.dumps(out))
"""


@pytest.mark.docker
def test_files_are_visible_and_read_only(h: Harness) -> None:
    tenant = h.tenant()
    h.volumes.put_files(tenant, {"old.txt": b"gone soon"})
    h.volumes.put_files(tenant, {"a.txt": b"hello", "dir/b.txt": b"bee"})  # replaces the first set
    result = h.json(tenant, READ_FILES)
    assert result["a"] == "hello" and result["b"] == "bee"
    assert result["listing"] == ["a.txt", "dir"]
    assert result["owner"] == 0 and result["mode"] == "0o644"
    # Refused twice over: the files are root's, and the mount itself is read-only (ro in mountinfo).
    for action in ("create", "modify", "delete", "mkdir"):
        assert result[action] in ("EROFS", "EACCES"), result
    assert result["mount:/mnt/files"] == "ro" and result["mount:/mnt/archive"] == "rw", result


WRITE_ARCHIVE = r"""
import json, os, sys
with open("/mnt/archive/" + sys.argv[1], "w") as f:
    f.write(sys.argv[2])
st = os.stat("/mnt/archive")
print(json.dumps({"owner": st.st_uid, "listing": sorted(os.listdir("/mnt/archive"))}))
"""

READ_ARCHIVE = r"""
import json, os
out = {"archive": {}, "files": sorted(os.listdir("/mnt/files"))}
for name in os.listdir("/mnt/archive"):
    path = os.path.join("/mnt/archive", name)
    if os.path.isfile(path):
        out["archive"][name] = open(path).read()
print(json.dumps(out))
"""


@pytest.mark.docker
def test_archive_persists_between_runs_of_a_tenant(h: Harness) -> None:
    tenant = h.tenant()
    first = h.json(tenant, WRITE_ARCHIVE, "report.csv", "1,2,3")
    assert first["owner"] == 10001
    second = h.json(tenant, READ_ARCHIVE)
    assert second["archive"] == {"report.csv": "1,2,3"}


@pytest.mark.docker
def test_tenants_do_not_see_each_other(h: Harness) -> None:
    a, b = h.tenant(), h.tenant()
    h.volumes.put_files(a, {"secret-of-a.txt": b"A"})
    h.json(a, WRITE_ARCHIVE, "a-archive.txt", "A")
    h.volumes.put_files(b, {"b.txt": b"B"})
    seen_by_b = h.json(b, READ_ARCHIVE)
    assert seen_by_b == {"archive": {}, "files": ["b.txt"]}
    seen_by_a = h.json(a, READ_ARCHIVE)
    assert seen_by_a == {"archive": {"a-archive.txt": "A"}, "files": ["secret-of-a.txt"]}
    sources_a = {m["Source"] for m in h.volumes.mounts_for(a)}
    sources_b = {m["Source"] for m in h.volumes.mounts_for(b)}
    assert not sources_a & sources_b


FILL = r"""
import errno, json
written = 0
try:
    with open("/mnt/archive/fill", "wb") as f:
        chunk = b"x" * (1 << 20)
        while written < 4 * int(__import__("sys").argv[1]) * (1 << 20):
            f.write(chunk)
            f.flush()
            written += len(chunk)
    result = "no error"
except OSError as e:
    result = errno.errorcode[e.errno]
print(json.dumps({"result": result, "written": written}))
"""


@pytest.mark.docker
def test_archive_cap_gives_enospc_inside_only(h: Harness) -> None:
    _needs_cap(h)
    tenant = h.tenant()
    image = h.settings.data_dir.resolve() / "archives" / f"{volume_slug(tenant)}.img"
    h.volumes.mounts_for(tenant)
    result = h.json(tenant, FILL, str(CAP_MB))
    assert result["result"] == "ENOSPC", result
    assert result["written"] <= CAP_MB * (1 << 20)
    # The host gave at most the image's size (allocated blocks), whatever the run tried.
    assert image.stat().st_size == CAP_MB * (1 << 20)
    assert image.stat().st_blocks * 512 <= CAP_MB * (1 << 20)
    # The tenant's next run still starts and can free space again.
    code, _, err = h.run(tenant, "import os; os.unlink('/mnt/archive/fill'); open('/mnt/archive/ok','w').write('ok')")
    assert code == 0, err


MAKE_AGED = r"""
import json, os, subprocess
touch = "/bin/touch" if os.path.exists("/bin/touch") else "/usr/bin/touch"
def make(path, content="x"):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    open(path, "w").write(content)
make("/mnt/archive/old.txt"); make("/mnt/archive/new.txt")
make("/mnt/archive/olddir/old2.txt"); make("/mnt/archive/mixed/new2.txt"); make("/mnt/archive/mixed/old3.txt")
os.symlink("/mnt/files/keep.txt", "/mnt/archive/oldlink")
for p in ["old.txt", "olddir/old2.txt", "olddir", "mixed/old3.txt", "mixed"]:
    subprocess.run([touch, "-d", "40 days ago", "/mnt/archive/" + p], check=True)
subprocess.run([touch, "-h", "-d", "40 days ago", "/mnt/archive/oldlink"], check=True)
subprocess.run([touch, "-d", "2 days ago", "/mnt/archive/new.txt"], check=True)
print(json.dumps("ok"))
"""

LIST = r"""
import json, os
out = []
for root, dirs, files in os.walk("/mnt/archive"):
    for name in dirs + files:
        out.append(os.path.relpath(os.path.join(root, name), "/mnt/archive"))
print(json.dumps({"archive": sorted(out), "files": sorted(os.listdir("/mnt/files"))}))
"""


@pytest.mark.docker
def test_clean_archive_removes_only_old_files(h: Harness) -> None:
    tenant = h.tenant()
    assert h.volumes.clean_archive(tenant, older_than_days=30) == 0  # nothing yet, and nothing created
    h.volumes.put_files(tenant, {"keep.txt": b"the symlink's target must survive"})
    h.json(tenant, MAKE_AGED)
    removed = h.volumes.clean_archive(tenant, older_than_days=30)
    assert removed == 4  # old.txt, olddir/old2.txt, mixed/old3.txt, oldlink (the link, not its target)
    listing = h.json(tenant, LIST)
    archive = [p for p in listing["archive"] if not p.startswith("lost+found")]
    assert archive == ["mixed", "mixed/new2.txt", "new.txt"]
    assert listing["files"] == ["keep.txt"]
    assert h.volumes.clean_archive(tenant, older_than_days=1) == 1  # now new.txt (2 days old) too


@pytest.mark.docker
def test_remove_leaves_nothing_behind(h: Harness) -> None:
    tenant = h.tenant()
    h.volumes.put_files(tenant, {"a.txt": b"a"})
    h.json(tenant, WRITE_ARCHIVE, "x", "y")
    slug = volume_slug(tenant)
    image = h.settings.data_dir.resolve() / "archives" / f"{slug}.img"
    if h.volumes.capped:
        assert image.exists() and _losetup_j(image)
    h.volumes.remove(tenant)
    h.volumes.remove(tenant)  # twice is fine
    names = {v.name for v in h.client.volumes.list()}
    assert f"cp-files-{slug}" not in names and f"cp-archive-{slug}" not in names
    assert not image.exists()
    if h.volumes.capped:
        assert _losetup_j(image) == ""


@pytest.mark.docker
def test_archive_reattaches_after_its_loop_device_is_gone(h: Harness, tmp_path: Path) -> None:
    """A reboot detaches loop devices; the next mounts_for attaches the image again (maybe another loopN)
    and re-points the volume, and the data is still there."""
    _needs_cap(h)
    tenant = h.tenant()
    h.json(tenant, WRITE_ARCHIVE, "kept", "across reboots")
    image = h.settings.data_dir.resolve() / "archives" / f"{volume_slug(tenant)}.img"
    old_device = _losetup_j(image).split(":", 1)[0]
    subprocess.run(["losetup", "-d", old_device], check=True)
    # Take the freed device number with something else, as after a reboot.
    squatter = tmp_path / "squatter.img"
    squatter.write_bytes(b"\0" * (1 << 20))
    squat = subprocess.run(["losetup", "--find", "--show", str(squatter)], capture_output=True, text=True, check=True)
    try:
        mounts_before = h.volumes.mounts_for(tenant)
        assert h.volumes.mounts_for(tenant) == mounts_before  # idempotent
        new_device = _losetup_j(image).split(":", 1)[0]
        assert new_device and len(_losetup_j(image).splitlines()) == 1
        volume = h.client.volumes.get(f"cp-archive-{volume_slug(tenant)}")
        assert volume.attrs["Options"]["device"] == new_device
        assert h.json(tenant, READ_ARCHIVE)["archive"] == {"kept": "across reboots"}
    finally:
        subprocess.run(["losetup", "-d", squat.stdout.strip()], check=False)


@pytest.mark.docker
def test_uncapped_fallback_still_gives_a_writable_archive(h: Harness) -> None:
    h.volumes.uncapped_reason = "pretend: not root"
    tenant = h.tenant()
    result = h.json(tenant, WRITE_ARCHIVE, "f", "plain volume")
    assert result["owner"] == 10001
    volume = h.client.volumes.get(f"cp-archive-{volume_slug(tenant)}")
    assert not (volume.attrs.get("Options") or {}).get("device")
    assert h.json(tenant, READ_ARCHIVE)["archive"] == {"f": "plain volume"}


def test_disabled_volumes_mount_nothing(tmp_path: Path) -> None:
    from unittest import mock

    volumes = TenantVolumes(mock.MagicMock(), Settings(data_dir=tmp_path, tenant_volumes=False))
    assert volumes.mounts_for("t1") == []


@pytest.mark.parametrize("name", ["../etc/passwd", "/abs", "a/../../b", "", "a\0b"])
def test_file_names_must_stay_inside(name: str) -> None:
    with pytest.raises(ValidationFailed):
        _tar_of({name: b"x"})


def test_file_and_directory_clash() -> None:
    with pytest.raises(ValidationFailed):
        _tar_of({"a": b"x", "a/b": b"y"})


def test_slug_is_safe_and_stable() -> None:
    assert volume_slug("tenant-1") == "tenant-1"
    odd = volume_slug("Ünïcode/tenant id")
    assert odd == volume_slug("Ünïcode/tenant id") and odd.isalnum()
