"""The contract every sandbox engine implements, and the frozen values that cross it.

A run's life as a backend sees it::

    execution = await backend.launch(spec)        # create + start one fresh sandbox; idempotent per run id
    async for frame in execution.frames():        # the runner's frames (see protocol.py) until it is done
        ...
    outcome = await execution.finish()            # exit status, OOM, usage; the sandbox is removed

``stop(handle)`` kills and removes a sandbox and is safe to call twice or on one that is gone.
``list_sandboxes()`` finds every sandbox carrying our labels (reconcile after a restart) and
``attach(handle)`` picks up one that outlived the control plane. Engines translate their own states
into ``SandboxState``; nothing above this layer sees a Docker or Kubernetes status string.
"""

from __future__ import annotations

import abc
import enum
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime

from controlplane.backends.protocol import Frame, encode_bundle
from controlplane.core.states import NetworkMode

LABEL_MANAGED = "io.controlplane.managed"
LABEL_RUN = "io.controlplane.run-id"
LABEL_TENANT = "io.controlplane.tenant-id"
LABEL_AUTOMATION = "io.controlplane.automation-id"
LABEL_INSTALLATION = "io.controlplane.installation"  # which installation made it (store/installation.py)

# Layout inside every sandbox (the image and the runner agree on these paths).
SANDBOX_WORK = "/work"  # tmpfs: code/, outputs/, home/, input
SANDBOX_CODE = "/work/code"
SANDBOX_OUTPUTS = "/work/outputs"
SANDBOX_INPUT = "/work/input"
SANDBOX_HOME = "/work/home"
SANDBOX_FILES = "/mnt/files"  # the tenant's files, read-only
SANDBOX_ARCHIVE = "/mnt/archive"  # the tenant's scratch archive, read-write, retention-cleaned
RUNNER_PATH = "/opt/controlplane/runner.py"


@dataclass(frozen=True)
class Resources:
    cpus: float
    memory_mb: int
    pids: int
    tmp_mb: int = 64
    work_mb: int = 128
    nofile: int = 1024


@dataclass(frozen=True)
class RunSpec:
    """Everything a backend needs to start one run; built by the services layer from a run row."""

    run_id: str
    tenant_id: str
    automation_id: str
    image: str
    runtime: str
    entrypoint: str
    files: Mapping[str, bytes]
    args: tuple[str, ...]
    env: Mapping[str, str]
    input: bytes
    resources: Resources
    network: NetworkMode
    deadline_seconds: float
    outputs_max_files: int = 100
    outputs_max_bytes: int = 20 * 1024 * 1024
    labels: Mapping[str, str] = field(default_factory=dict)
    installation: str = ""  # set by the backend that launches it (Backend.installation)

    def sandbox_labels(self) -> dict[str, str]:
        """What marks a sandbox as this run's on every engine: its own labels plus managed, run, tenant,
        automation and installation (which the platform's win over any of the same name)."""
        mine = {LABEL_INSTALLATION: self.installation} if self.installation else {}
        return {
            **self.labels,
            LABEL_MANAGED: "true",
            LABEL_RUN: self.run_id,
            LABEL_TENANT: self.tenant_id,
            LABEL_AUTOMATION: self.automation_id,
            **mine,
        }

    def bundle(self, *, linger_seconds: float) -> bytes:
        """The stdin bundle the runner reads (backends/protocol.py): code, args, env, input, output limits."""
        return encode_bundle(
            runtime=self.runtime,
            entrypoint=self.entrypoint,
            files=dict(self.files),
            args=list(self.args),
            env=dict(self.env),
            input_data=self.input,
            max_files=self.outputs_max_files,
            max_bytes=self.outputs_max_bytes,
            linger_seconds=linger_seconds,
        )


@dataclass(frozen=True)
class RunHandle:
    run_id: str
    tenant_id: str
    ref: str  # engine-side name of the sandbox (container name, Job name)


class SandboxState(enum.StrEnum):
    PENDING = "pending"  # created, not yet running
    RUNNING = "running"
    EXITED = "exited"
    MISSING = "missing"  # the engine has no such sandbox


@dataclass(frozen=True)
class SandboxInfo:
    handle: RunHandle
    state: SandboxState
    exit_code: int | None = None
    oom_killed: bool = False
    started_at: datetime | None = None
    finished_at: datetime | None = None


@dataclass(frozen=True)
class Usage:
    cpu_seconds: float = 0.0
    memory_peak_bytes: int = 0
    net_rx_bytes: int = 0
    net_tx_bytes: int = 0


@dataclass(frozen=True)
class Outcome:
    exit_code: int | None  # None: the engine could not tell (sandbox vanished)
    oom_killed: bool
    usage: Usage
    finished_at: datetime | None = None
    detail: str | None = None  # engine-side explanation when something odd happened

    def with_detail(self, note: str) -> Outcome:
        """The same outcome with ``note`` added to its detail."""
        return replace(self, detail=f"{self.detail}; {note}" if self.detail else note)


class Execution(abc.ABC):
    """One launched sandbox: its frames, then its outcome."""

    handle: RunHandle

    @abc.abstractmethod
    def frames(self) -> AsyncIterator[Frame]:
        """Frames from the runner until it reports its exit or the sandbox ends."""

    @abc.abstractmethod
    async def finish(self) -> Outcome:
        """Collect exit status and usage, then remove the sandbox. Call once, after ``frames``."""

    async def collect(self) -> Outcome:
        """Like ``finish`` but leaves the sandbox for ``release`` (so a caller can record the outcome
        first). If collecting fails the sandbox is removed before the error propagates."""
        return await self.finish()

    async def release(self) -> None:  # noqa: B027 - engines whose collect() removes need nothing here
        """Remove the sandbox after ``collect``; safe to call twice."""


class SingleUseExecution(Execution):
    """The lifecycle a real engine's sandbox shares (Docker, Kubernetes): the outcome is collected once and
    the sandbox removed once; a removal failure becomes a note in the outcome's detail, and a failure while
    collecting removes the sandbox before the error propagates. Engines supply ``_collect`` and
    ``_remove_sandbox``."""

    _outcome: Outcome | None = None
    _released: bool = False

    @abc.abstractmethod
    async def _collect(self) -> Outcome:
        """Exit status and usage of the ended sandbox."""

    @abc.abstractmethod
    async def _remove_sandbox(self) -> str | None:
        """Remove the sandbox; a failure is logged and returned as a note for the outcome (never raised)."""

    def _before_collect(self) -> None:
        """Called before the outcome is collected (e.g. stop reading the sandbox's stream)."""

    async def finish(self) -> Outcome:
        outcome = await self.collect()
        note = await self._remove()
        if note:
            outcome = self._outcome = outcome.with_detail(note)
        return outcome

    async def collect(self) -> Outcome:
        if self._outcome is not None:
            return self._outcome
        self._before_collect()
        try:
            self._outcome = await self._collect()
        except BaseException:
            await self._remove()
            raise
        return self._outcome

    async def release(self) -> None:
        await self._remove()

    async def _remove(self) -> str | None:
        if self._released:
            return None
        self._released = True
        return await self._remove_sandbox()


class Backend(abc.ABC):
    name: str = "abstract"
    # This installation's id (set by the platform before prepare()): every sandbox carries it as a label,
    # and list_sandboxes() leaves out those another installation made, so installations sharing an engine
    # (and a container prefix) never sweep each other's. Empty: unscoped (a backend used on its own).
    installation: str = ""

    def is_mine(self, labels: Mapping[str, str]) -> bool:
        """Whether a managed sandbox with these labels is this installation's: it carries our id, or none
        at all (made before installations had ids: still ours to re-attach after an upgrade)."""
        theirs = labels.get(LABEL_INSTALLATION, "")
        return not self.installation or theirs in ("", self.installation)

    @abc.abstractmethod
    async def ping(self) -> None:
        """Raise BackendUnavailable unless the engine answers."""

    async def prepare(self) -> None:  # noqa: B027 - optional hook
        """One-time set-up at start (networks, firewall rules, image checks)."""

    @abc.abstractmethod
    async def launch(self, spec: RunSpec) -> Execution:
        """Create and start one fresh sandbox for ``spec``. A retry for the same run id finds the sandbox
        the first attempt created instead of making a second one."""

    @abc.abstractmethod
    async def attach(self, handle: RunHandle) -> Execution:
        """Follow a sandbox that was launched by an earlier process (reconcile)."""

    @abc.abstractmethod
    async def stop(self, handle: RunHandle) -> None:
        """Kill and remove the sandbox. Safe to call twice; a missing sandbox is not an error."""

    @abc.abstractmethod
    async def list_sandboxes(self) -> list[SandboxInfo]:
        """Every sandbox carrying our labels, in any state."""

    async def clean_archive(self, tenant_id: str, *, older_than_days: int) -> int:
        """Delete the tenant's ARCHIVE files older than ``older_than_days``; how many. No archive: 0."""
        return 0

    def extra_listen_addresses(self) -> list[tuple[str, int]]:
        """Addresses the API server must also listen on so runs with network=api can call it back."""
        return []

    def api_host_for_runs(self, network: NetworkMode) -> str | None:
        """host:port a run uses to reach the API (its HOST variable), or None when runs cannot."""
        return None

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release client resources."""
