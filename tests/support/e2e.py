"""A real ``controlplane serve`` as a subprocess, on the real Docker engine, for end-to-end tests.

Every server gets its own port, data directory, database (SQLite in its data directory, or a fresh
PostgreSQL database), container name prefix and docker networks on random subnets inside 10.214.0.0/16,
so the NetworkManager uses hash-suffixed firewall chains of its own: servers started by the tests never
fight with each other or with a developer's ``make run`` over networks or iptables rules. Two canary
secrets sit in the server's environment; the attack tests prove they never reach a run.

Stopping is what a person does: Ctrl-C (SIGINT). The process must exit 0 in time and leave no container
with its prefix; then the test removes what the server made on the machine (networks, firewall chains,
tenant volumes and their loop devices, the PostgreSQL database). Nothing here skips: a missing engine,
image or PostgreSQL is a failure with the reason in its message.
"""

from __future__ import annotations

import os
import random
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import docker
import httpx
import pytest
import sqlalchemy
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.engine import make_url

from controlplane.backends.docker.network import NetworkManager
from controlplane.backends.docker.volumes import TenantVolumes
from controlplane.core.settings import Settings
from tests.support.pg import drop_database, fresh_database, postgres_url

ROOT = Path(__file__).resolve().parents[2]
_VENV_CLI = ROOT / ".venv" / "bin" / "controlplane"
CLI = _VENV_CLI if _VENV_CLI.exists() else Path(sys.executable).with_name("controlplane")
BASE = "/api/v1/automations"
FINAL = {"finished", "finished with warnings", "failed", "stopped", "exceeded limit", "not started"}
READY_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_subnets(count: int = 2) -> list[str]:
    """Random /24s in 10.214.0.0/16 that no docker network uses yet."""
    used: set[str] = set()
    client = docker.from_env()
    try:
        for net in client.networks.list():
            for cfg in (net.attrs.get("IPAM") or {}).get("Config") or []:
                used.add(str(cfg.get("Subnet")))
    finally:
        client.close()
    candidates = [f"10.214.{i}.0/24" for i in range(1, 255) if f"10.214.{i}.0/24" not in used]
    return random.sample(candidates, count)


def docker_names(prefix: str) -> list[str]:
    """Names of containers (running or not) whose name starts with ``prefix`` (`docker ps -a`)."""
    proc = subprocess.run(
        ["docker", "ps", "-a", "--filter", f"name=^/{prefix}", "--format", "{{.Names}}"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return [line for line in proc.stdout.split() if line.startswith(prefix)]


class Server:
    """One control plane process (restartable on the same data directory) plus the helpers tests use."""

    data_dir: Path
    token: str
    prefix: str
    database_url: str
    settings_env: dict[str, str]

    def __init__(
        self,
        workdir: Path,
        *,
        database: str = "sqlite",
        env: dict[str, str] | None = None,
        share: Server | None = None,
        database_port: int | None = None,
    ) -> None:
        """``env``: extra CP_* settings. ``share``: another replica of that server's control plane (same
        database, token, container prefix, networks and data directory - replicas on one engine share
        the tenants' ARCHIVE images there; its own port and log; the owner cleans up). ``database_port``:
        the server reaches its PostgreSQL through this loopback port (a proxy the test controls) while
        the fixture's own clean-up still connects directly."""
        tag = secrets.token_hex(3)
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.data_dir = share.data_dir if share is not None else workdir / "data"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = workdir / "server.log"
        self.port = free_port()
        self.owner = share is None
        self.pg_name: str | None = None
        if share is not None:
            self.token, self.prefix, self.database_url = share.token, share.prefix, share.database_url
            shared = ("CP_API_NETWORK", "CP_EGRESS_NETWORK", "CP_API_NETWORK_SUBNET", "CP_EGRESS_NETWORK_SUBNET")
            networks = {k: share.settings_env[k] for k in shared}
        else:
            self.token = "cpe2e_" + secrets.token_hex(16)
            self.prefix = f"cpe2e-{tag}-"
            if database == "postgres":
                self.pg_name = f"cpe2e_{tag}"
                self.database_url = fresh_database(postgres_url(), self.pg_name)
            else:
                self.database_url = f"sqlite+aiosqlite:///{self.data_dir / 'controlplane.db'}"
            api_subnet, egress_subnet = free_subnets(2)
            networks = {
                "CP_API_NETWORK": f"cpe2e-api-{tag}",
                "CP_EGRESS_NETWORK": f"cpe2e-eg-{tag}",
                "CP_API_NETWORK_SUBNET": api_subnet,
                "CP_EGRESS_NETWORK_SUBNET": egress_subnet,
            }
        served_url = self.database_url
        if database_port is not None:
            served_url = (
                make_url(self.database_url)
                .set(host="127.0.0.1", port=database_port)
                .render_as_string(hide_password=False)
            )
        self.canaries = {
            "CP_TEST_CANARY": "canary-cp-" + secrets.token_hex(12),
            "HOST_SECRET_CANARY": "canary-host-" + secrets.token_hex(12),
        }
        self.settings_env = {
            "CP_HOST": "127.0.0.1",
            "CP_PORT": str(self.port),
            "CP_DATA_DIR": str(self.data_dir),
            "CP_DATABASE_URL": served_url,
            "CP_AUTOMATIONS_DIR": str(ROOT / "automations"),
            "CP_BOOTSTRAP_TOKEN": self.token,
            "CP_CONTAINER_PREFIX": self.prefix,
            **networks,
            "CP_LOG_LEVEL": "info",
            # one admin token drives a whole module: the per-user limits (tests/api/test_rate_limits.py) off
            "CP_RATE_LIMIT_READS_PER_MINUTE": "0",
            "CP_RATE_LIMIT_WRITES_PER_MINUTE": "0",
            **(env or {}),
        }
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("CP_")}
        self.env = {**inherited, **self.settings_env, **self.canaries}
        self.proc: subprocess.Popen[bytes] | None = None
        self.client = httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {self.token}"}, timeout=httpx.Timeout(90.0)
        )
        self._destroyed = False

    # --- process ----------------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None, "the server is not running"
        return self.proc.pid

    def log_text(self, tail: int = 12000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-tail:]
        except OSError:
            return "(no log)"

    def start(self, timeout: float = READY_TIMEOUT) -> None:
        """`controlplane serve`; returns once GET /readyz answers 200."""
        with open(self.log_path, "ab") as log:
            log.write(f"\n===== controlplane serve (port {self.port}) =====\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                [str(CLI), "serve"], env=self.env, cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT
            )
        end = time.monotonic() + timeout
        last = "no answer"
        with httpx.Client(timeout=5.0) as probe:
            while time.monotonic() < end:
                if self.proc.poll() is not None:
                    pytest.fail(f"controlplane serve exited {self.proc.returncode} on start:\n{self.log_text()}")
                try:
                    r = probe.get(f"{self.url}/readyz")
                    if r.status_code == 200:
                        return
                    last = f"{r.status_code} {r.text[:300]}"
                except httpx.HTTPError as exc:
                    last = repr(exc)
                time.sleep(0.2)
        pytest.fail(f"GET /readyz did not answer 200 within {timeout:.0f}s (last: {last}):\n{self.log_text()}")

    def kill(self) -> None:
        """kill -9: no shutdown, no clean-up; reaped at once so its pid is really gone."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(30)

    def metric(self, name: str, **labels: str) -> float:
        """Sum of the samples called ``name`` in GET /metrics (those carrying ``labels``)."""
        r = httpx.get(f"{self.url}/metrics", timeout=10)
        assert r.status_code == 200, r.text
        total = 0.0
        for family in text_string_to_metric_families(r.text):
            for sample in family.samples:
                if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                    total += sample.value
        return total

    def stop(self, timeout: float = STOP_TIMEOUT) -> int:
        """Ctrl-C: SIGINT, then wait. Returns the exit code; fails (after a SIGKILL) when it hangs."""
        proc = self.proc
        if proc is None:
            return 0
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
                self.proc = None
                pytest.fail(f"the server did not exit within {timeout:.0f}s of SIGINT:\n{self.log_text()}")
        self.proc = None
        return int(proc.returncode)

    # --- clean-up ---------------------------------------------------------------------------------------

    def settings(self) -> Settings:
        fields = Settings.model_fields
        values: dict[str, Any] = {k[3:].lower(): v for k, v in self.settings_env.items() if k[3:].lower() in fields}
        return Settings(**values)

    def tenant_ids(self) -> list[str]:
        url = self.database_url.replace("sqlite+aiosqlite://", "sqlite://")
        engine = sqlalchemy.create_engine(url)
        try:
            with engine.connect() as conn:
                return [str(row[0]) for row in conn.execute(sqlalchemy.text("SELECT id FROM tenants"))]
        finally:
            engine.dispose()

    def destroy(self) -> None:
        """Stop (Ctrl-C, exit 0), check no container is left, then remove everything the server made."""
        if self._destroyed:
            return
        self._destroyed = True
        problems: list[str] = []
        try:
            rc = self.stop()
            if rc != 0:
                problems.append(f"the server exited {rc} after SIGINT (want 0):\n{self.log_text()}")
        except BaseException as exc:
            problems.append(f"stopping the server failed: {exc}")
        self.client.close()
        if not self.owner:  # a replica sharing another server's database, prefix and networks
            if problems:
                pytest.fail("\n".join(problems))
            return
        left = docker_names(self.prefix)
        if left:
            problems.append(f"containers left behind after the server stopped: {left}")
            subprocess.run(["docker", "rm", "-f", *left], capture_output=True, timeout=60, check=False)
        settings = self.settings()
        client = docker.from_env()
        try:
            volumes = TenantVolumes(client, settings)
            try:
                tenants = self.tenant_ids()
            except Exception as exc:
                tenants = []
                problems.append(f"reading the tenants failed: {exc}")
            for tenant_id in tenants:
                try:
                    volumes.remove(tenant_id)
                except Exception as exc:
                    problems.append(f"removing the volumes of tenant {tenant_id} failed: {exc}")
            NetworkManager(client, settings).teardown()
        finally:
            client.close()
        if self.pg_name is not None:
            drop_database(postgres_url(), self.pg_name)
        if problems:
            pytest.fail("\n".join(problems))

    # --- API helpers ------------------------------------------------------------------------------------

    def automation(
        self,
        name: str,
        code: str | None = None,
        *,
        runtime: str = "python",
        network: str | None = None,
        timeoutSeconds: int | None = None,
        resources: dict[str, Any] | None = None,
        **extra: Any,
    ) -> str:
        """Create an automation (the name gets a unique suffix); returns its id."""
        body: dict[str, Any] = {"name": f"{name}-{secrets.token_hex(3)}", "runtime": runtime, **extra}
        if code is not None:
            body["code"] = code
        if network is not None:
            body["network"] = network
        if timeoutSeconds is not None:
            body["timeoutSeconds"] = timeoutSeconds
        if resources is not None:
            body["resources"] = resources
        r = self.client.post(BASE, json=body)
        assert r.status_code == 201, r.text
        return str(r.json()["id"])

    def automation_id(self, name: str) -> str:
        r = self.client.get(BASE, params={"filter": f'name eq "{name}"'})
        assert r.status_code == 200, r.text
        found = r.json()["data"]
        assert found, f"no automation named {name}"
        return str(found[0]["id"])

    def run_sync(self, aid: str, **body: Any) -> dict[str, Any]:
        r = self.client.post(f"{BASE}/{aid}/runs", json={"context": "api_sync", **body})
        assert r.status_code == 200, r.text
        run: dict[str, Any] = r.json()
        return run

    def start_run(self, aid: str, **body: Any) -> dict[str, Any]:
        r = self.client.post(f"{BASE}/{aid}/runs", json={"context": "api", **body})
        assert r.status_code == 201, r.text
        run: dict[str, Any] = r.json()
        return run

    def get_run(self, aid: str, run_id: str) -> dict[str, Any]:
        r = self.client.get(f"{BASE}/{aid}/runs/{run_id}")
        assert r.status_code == 200, r.text
        run: dict[str, Any] = r.json()
        return run

    def wait_run(self, aid: str, run_id: str, *, timeout: float = 60.0, until: set[str] = FINAL) -> dict[str, Any]:
        end = time.monotonic() + timeout
        while True:
            run = self.get_run(aid, run_id)
            if run["status"] in until:
                return run
            if time.monotonic() > end:
                pytest.fail(f"run {run_id} is still {run['status']!r} after {timeout:.0f}s:\n{self.log_text()}")
            time.sleep(0.1)

    def logs(self, aid: str, run_id: str, stream: str = "stdout") -> bytes:
        r = self.client.get(f"{BASE}/{aid}/runs/{run_id}/logs", params={"stream": stream})
        assert r.status_code == 200, r.text
        return r.content

    def containers(self, run_id: str = "", *, settle: float = 5.0) -> list[str]:
        """Containers of this server (or of one run) still present once removal had ``settle`` seconds:
        a finished run's sandbox is removed right after its outcome is recorded, not before the answer."""
        deadline = time.monotonic() + settle
        while True:
            names = docker_names(self.prefix + run_id)
            if not names or time.monotonic() >= deadline:
                return names
            time.sleep(0.05)

    def cli(
        self, *args: str, env: dict[str, str] | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """`controlplane ARGS` with the server's environment (plus ``env``)."""
        return subprocess.run(
            [str(CLI), *args],
            env={**self.env, **(env or {})},
            cwd=self.workdir,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def user_token(self, role: str, *, tenant: str | None = None, user: str | None = None) -> str:
        """A token made with `controlplane tokens create` (creating the tenant when asked for one)."""
        args = ["tokens", "create", "--tenant", tenant or "default", "--user", user or f"{role}-{secrets.token_hex(3)}"]
        args += ["--role", role]
        if tenant is not None:
            args.append("--create-tenant")
        proc = self.cli(*args)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout.strip().splitlines()[-1]


def launch(workdir: Path, *, database: str = "sqlite", **options: Any) -> Server:
    """A started server; ``options`` go to ``Server`` (env, share, database_port)."""
    server = Server(workdir, database=database, **options)
    try:
        server.start()
    except BaseException:
        try:
            server.destroy()
        except BaseException as exc:  # the start failure is the news; keep the clean-up's reason visible
            print(f"clean-up after a failed start: {exc}", file=sys.stderr)
        raise
    return server
