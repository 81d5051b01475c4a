"""Each tenant's FILES (read-only in runs) and ARCHIVE (read-write, size-capped, retention-cleaned) volumes.

Runs never get host bind mounts. A tenant owns two docker named volumes, ``cp-files-<tenant>`` and
``cp-archive-<tenant>``, labelled with the tenant id; every run of the tenant mounts FILES read-only at
/mnt/files and ARCHIVE read-write at /mnt/archive, with ``nocopy`` so the image never overwrites their
ownership.

ARCHIVE must not be able to fill the host's disk. When the control plane is root next to a local engine
(losetup and mkfs.ext4 present), ARCHIVE is a sparse ext4 image of ``archive_size_mb`` under
``<data_dir>/archives/<tenant>.img`` on a loop device, exposed as a local-driver volume
(``type=ext4, device=/dev/loopN``): a run writing past the cap gets ENOSPC and the host does not notice.
The loop device is found again with ``losetup -j`` (or re-attached after a reboot) and the volume is
re-pointed when the device number changed, so call ``mounts_for`` for every launch (never cache its
answer): it is what guarantees a volume names its own tenant's loop device. Elsewhere ARCHIVE falls
back to a plain named volume, with a warning that it is not capped.

Everything that touches volume contents (filling FILES, the retention sweep, fixing ownership) happens in a
short-lived, hardened container from the sandbox image: no network, read-only root, no capabilities beyond
what the step needs, never a walk over host paths.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import logging
import os
import re
import shutil
import subprocess
import tarfile
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path, PurePosixPath
from typing import Any

import docker
import docker.errors
from docker.types import Mount

from controlplane.backends.base import LABEL_MANAGED, LABEL_TENANT, SANDBOX_ARCHIVE, SANDBOX_FILES
from controlplane.core.errors import BackendError, Conflict, LaunchFailed, SandboxImageMissing, ValidationFailed
from controlplane.core.settings import Settings

log = logging.getLogger(__name__)

LABEL_VOLUME = "io.controlplane.volume"  # files | archive
LABEL_HELPER = "io.controlplane.helper"  # on the short-lived containers that work on volumes
_SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
_LOCAL_ENGINE = ("http+docker://localhost", "http+docker://localunixsocket")
_MOUNT_OPTIONS = "nosuid,nodev"
HELPER_TIMEOUT_SECONDS = 300

# The helpers' programs live in the sandbox image (sandbox-images/python/volume_*.py), where lint, types
# and tests see them.
_TOOLS = "/opt/controlplane"
_CLEAR = ["/usr/bin/python3", "-I", f"{_TOOLS}/volume_clear.py", "/mnt/files"]
_SWEEP = ["/usr/bin/python3", "-I", f"{_TOOLS}/volume_sweep.py"]
_OWN = ["/usr/bin/python3", "-I", f"{_TOOLS}/volume_own.py"]


def volume_slug(tenant_id: str) -> str:
    """The tenant id when it is a safe name, else a stable hash of it (volume names and image files)."""
    if _SAFE_ID.fullmatch(tenant_id):
        return tenant_id
    return "t" + hashlib.sha256(tenant_id.encode()).hexdigest()[:32]


class TenantVolumes:
    def __init__(self, client: docker.DockerClient, settings: Settings) -> None:
        self._client = client
        self._settings = settings
        self._dir = Path(settings.data_dir).resolve() / "archives"
        uid, _, gid = settings.sandbox_user.partition(":")
        self._uid, self._gid = int(uid), int(gid or uid)
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()
        self.uncapped_reason = self._why_uncapped()
        if self.uncapped_reason and settings.tenant_volumes:
            log.warning("tenant ARCHIVE volumes are NOT size-capped: %s", self.uncapped_reason)

    @property
    def capped(self) -> bool:
        return self.uncapped_reason is None

    # --- public interface -------------------------------------------------------------------------------

    def mounts_for(self, tenant_id: str) -> list[Mount]:
        if not self._settings.tenant_volumes:
            return []
        try:
            with self._tenant_lock(tenant_id):
                files = self._ensure_files(tenant_id)
                archive = self._ensure_archive(tenant_id)
        except docker.errors.DockerException as exc:
            raise LaunchFailed(f"tenant volumes could not be prepared: {exc}") from exc
        return [
            Mount(target=SANDBOX_FILES, source=files, type="volume", read_only=True, no_copy=True),
            Mount(target=SANDBOX_ARCHIVE, source=archive, type="volume", read_only=False, no_copy=True),
        ]

    def put_files(self, tenant_id: str, files: Mapping[str, bytes]) -> None:
        """Replace the tenant's FILES with ``files`` (relative paths; written root-owned, world-readable)."""
        payload = _tar_of(files)
        try:
            with self._tenant_lock(tenant_id):
                volume = self._ensure_files(tenant_id)
                mount = Mount(target=SANDBOX_FILES, source=volume, type="volume", no_copy=True)
                # root without capabilities: it owns what it wrote before, and nothing else is possible.
                with self._helper(tenant_id, _CLEAR, [mount], "0:0") as c:
                    _finish(c, "clearing FILES")
                    if not c.put_archive(SANDBOX_FILES, payload):
                        raise BackendError(f"writing FILES of tenant {tenant_id!r} failed")
        except docker.errors.DockerException as exc:
            raise BackendError(f"writing FILES of tenant {tenant_id!r} failed: {exc}") from exc

    def clean_archive(self, tenant_id: str, *, older_than_days: int) -> int:
        """Delete ARCHIVE files last modified more than ``older_than_days`` ago; return how many."""
        if older_than_days < 0:
            raise ValidationFailed("older_than_days must not be negative")
        try:
            with self._tenant_lock(tenant_id):
                if not self._archive_exists(tenant_id):
                    return 0
                volume = self._ensure_archive(tenant_id)
                mount = Mount(target=SANDBOX_ARCHIVE, source=volume, type="volume", no_copy=True)
                cmd = [*_SWEEP, str(older_than_days), SANDBOX_ARCHIVE]
                with self._helper(tenant_id, cmd, [mount], self._settings.sandbox_user) as c:
                    out = _finish(c, "cleaning ARCHIVE")
        except docker.errors.DockerException as exc:
            raise BackendError(f"cleaning ARCHIVE of tenant {tenant_id!r} failed: {exc}") from exc
        report = json.loads(out.strip().splitlines()[-1])
        if report["errors"]:
            log.warning("ARCHIVE sweep of tenant %s: %d entries could not be removed", tenant_id, report["errors"])
        return int(report["removed"])

    def remove(self, tenant_id: str) -> None:
        """Delete both volumes, detach the loop device and delete the image file."""
        slug = volume_slug(tenant_id)
        with self._tenant_lock(tenant_id):
            for name in (f"cp-files-{slug}", f"cp-archive-{slug}"):
                try:
                    self._client.volumes.get(name).remove()
                except docker.errors.NotFound:
                    pass
                except docker.errors.APIError as exc:
                    if exc.status_code == 409:
                        raise Conflict(f"volume {name} is still in use by a run") from exc
                    raise BackendError(f"removing volume {name} failed: {exc}") from exc
            image = self._image(tenant_id)
            if image.exists() or self.capped:
                for device in _loops_of(image):
                    _run(["losetup", "-d", device])
                image.unlink(missing_ok=True)
                image.with_suffix(".lock").unlink(missing_ok=True)

    # --- FILES --------------------------------------------------------------------------------------------

    def _ensure_files(self, tenant_id: str) -> str:
        name = f"cp-files-{volume_slug(tenant_id)}"
        try:
            self._client.volumes.get(name)
        except docker.errors.NotFound:
            self._client.volumes.create(name, driver="local", labels=self._labels(tenant_id, "files"))
        return name

    # --- ARCHIVE ------------------------------------------------------------------------------------------

    def _archive_exists(self, tenant_id: str) -> bool:
        try:
            self._client.volumes.get(f"cp-archive-{volume_slug(tenant_id)}")
            return True
        except docker.errors.NotFound:
            return self._image(tenant_id).exists()

    def _ensure_archive(self, tenant_id: str) -> str:
        name = f"cp-archive-{volume_slug(tenant_id)}"
        try:
            volume = self._client.volumes.get(name)
        except docker.errors.NotFound:
            volume = None
        if not self.capped:
            if volume is None:
                created = self._client.volumes.create(name, driver="local", labels=self._labels(tenant_id, "archive"))
                try:
                    self._chown_archive(tenant_id, name)
                except BaseException:
                    created.remove(force=True)  # never leave a root-owned ARCHIVE behind
                    raise
            return name
        current = (volume.attrs.get("Options") or {}).get("device") if volume is not None else None
        if volume is not None and not current:
            log.warning("ARCHIVE volume %s predates the size cap; it stays uncapped", name)
            return name
        with self._file_lock(tenant_id):
            device = self._attach(self._image(tenant_id))
            if volume is not None:
                if current == device:
                    return name
                # The device number changed (a reboot): the volume must never point at another tenant's
                # image, so it is re-created on this one; the data lives in the image, not the volume.
                log.info("ARCHIVE volume %s pointed at %s, now %s", name, current, device)
                volume.remove()
            self._client.volumes.create(
                name,
                driver="local",
                driver_opts={"type": "ext4", "device": device, "o": _MOUNT_OPTIONS},
                labels=self._labels(tenant_id, "archive"),
            )
        return name

    def _attach(self, image: Path) -> str:
        """The loop device backing ``image``, attaching it (and first creating the image) when needed."""
        if not image.exists():
            self._dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            tmp = image.with_suffix(".img.tmp")
            with open(tmp, "wb") as f:  # sparse: blocks are allocated as the tenant writes
                f.truncate(self._settings.archive_size_mb * 1024 * 1024)
            os.chmod(tmp, 0o600)
            owner = f"root_owner={self._uid}:{self._gid}"
            _run(["mkfs.ext4", "-F", "-q", "-m", "0", "-E", owner, "-L", "cp-archive", str(tmp)])
            os.replace(tmp, image)
        devices = _loops_of(image)
        if devices:
            return devices[0]
        return _run(["losetup", "--find", "--show", str(image)]).strip()

    def _chown_archive(self, tenant_id: str, volume: str) -> None:
        """A fresh plain volume is root's; hand its top directory to the sandbox user (CAP_CHOWN only)."""
        mount = Mount(target=SANDBOX_ARCHIVE, source=volume, type="volume", no_copy=True)
        cmd = [*_OWN, SANDBOX_ARCHIVE, str(self._uid), str(self._gid)]
        with self._helper(tenant_id, cmd, [mount], "0:0", cap_add=["CHOWN"]) as c:
            _finish(c, "preparing ARCHIVE")

    # --- plumbing -----------------------------------------------------------------------------------------

    def _why_uncapped(self) -> str | None:
        if os.geteuid() != 0:
            return "the control plane does not run as root (loop devices need it)"
        for tool in ("losetup", "mkfs.ext4"):
            if shutil.which(tool) is None:
                return f"{tool} is not installed"
        if not Path("/dev/loop-control").exists():
            return "no loop devices (/dev/loop-control is missing)"
        base_url = str(getattr(getattr(self._client, "api", None), "base_url", ""))
        if base_url not in _LOCAL_ENGINE:
            return f"the docker engine is not local ({base_url}); loop devices would be on another machine"
        return None

    def _image(self, tenant_id: str) -> Path:
        return self._dir / f"{volume_slug(tenant_id)}.img"

    def _labels(self, tenant_id: str, kind: str) -> dict[str, str]:
        return {LABEL_MANAGED: "true", LABEL_TENANT: tenant_id, LABEL_VOLUME: kind}

    @contextlib.contextmanager
    def _tenant_lock(self, tenant_id: str) -> Iterator[None]:
        with self._locks_guard:
            lock = self._locks.setdefault(tenant_id, threading.Lock())
        with lock:
            yield

    @contextlib.contextmanager
    def _file_lock(self, tenant_id: str) -> Iterator[None]:
        """Across processes: two control planes never create or attach the same image at once."""
        self._dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        with open(self._image(tenant_id).with_suffix(".lock"), "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield

    @contextlib.contextmanager
    def _helper(
        self, tenant_id: str, command: list[str], mounts: list[Mount], user: str, *, cap_add: list[str] | None = None
    ) -> Iterator[Any]:
        """A created (not started) hardened container; removed on the way out whatever happens."""
        name = f"cp-volhelper-{volume_slug(tenant_id)[:40]}-{uuid.uuid4().hex[:8]}"
        try:
            container = self._client.containers.create(
                self._settings.sandbox_image,
                command=command,
                name=name,
                user=user,
                read_only=True,
                cap_drop=["ALL"],
                cap_add=cap_add,
                security_opt=["no-new-privileges"],
                network_mode="none",
                tmpfs={"/tmp": "size=16m,mode=1777"},  # noqa: S108 - the helper's own tmpfs
                mounts=mounts,
                mem_limit="128m",
                memswap_limit="128m",
                pids_limit=64,
                labels={LABEL_TENANT: tenant_id, LABEL_HELPER: "volumes"},
            )
        except docker.errors.ImageNotFound as exc:
            raise SandboxImageMissing(f"sandbox image {self._settings.sandbox_image} is missing") from exc
        try:
            yield container
        finally:
            with contextlib.suppress(docker.errors.DockerException):
                container.remove(force=True)


def _finish(container: Any, what: str) -> str:
    """Start the helper, wait for it, return its stdout; raise BackendError unless it exited 0."""
    container.start()
    try:
        status = container.wait(timeout=HELPER_TIMEOUT_SECONDS)
    except Exception as exc:  # docker-py's read timeout surfaces as a requests error
        with contextlib.suppress(docker.errors.DockerException):
            container.kill()
        raise BackendError(f"{what} did not finish in {HELPER_TIMEOUT_SECONDS}s") from exc
    out: bytes = container.logs(stdout=True, stderr=False)
    if status.get("StatusCode") != 0:
        err: bytes = container.logs(stdout=False, stderr=True)
        raise BackendError(f"{what} failed (exit {status.get('StatusCode')}): {err.decode(errors='replace')[-500:]}")
    return out.decode(errors="replace")


def _tar_of(files: Mapping[str, bytes]) -> bytes:
    """A tar of ``files`` with their parent directories: root-owned, 0644/0755, no '..' or absolute paths."""
    dirs: set[str] = set()
    entries: list[tuple[str, bytes]] = []
    for raw, content in files.items():
        path = PurePosixPath(raw)
        if not raw or raw.startswith("/") or "\0" in raw or any(p in ("..", ".") for p in path.parts) or not path.parts:
            raise ValidationFailed(f"file name {raw!r} is not a relative path inside FILES")
        name = path.as_posix()
        dirs.update(parent.as_posix() for parent in path.parents if parent.as_posix() != ".")
        entries.append((name, content))
    clashes = dirs & {name for name, _ in entries}
    if clashes:
        raise ValidationFailed(f"{sorted(clashes)[0]!r} is both a file and a directory")
    buf = io.BytesIO()
    now = time.time()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for d in sorted(dirs, key=lambda d: d.count("/")):
            info = tarfile.TarInfo(d)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, now
            tar.addfile(info)
        for name, content in entries:
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(content), 0o644, now
            tar.addfile(info, io.BytesIO(content))
    return buf.getvalue()


def _loops_of(image: Path) -> list[str]:
    if shutil.which("losetup") is None:
        return []
    out = _run(["losetup", "-j", str(image)])
    return [line.split(":", 1)[0] for line in out.splitlines() if line.startswith("/dev/")]


def _run(argv: list[str]) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    if proc.returncode != 0:
        raise LaunchFailed(f"{' '.join(argv)} exited {proc.returncode}: {proc.stderr.strip()[:400]}")
    return proc.stdout
