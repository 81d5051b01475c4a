"""Benchmark: what a synchronous run through the platform costs over a bare ``docker run --rm``.

N rounds, in shuffled order, of
  (a) ``docker run --rm`` of the sandbox image running a trivial script (same hardening flags), and
  (b) the same script through ``POST /api/v1/automations/{id}/runs`` with context api_sync, against a
      ``controlplane serve`` started here (SQLite, local Docker engine), over loopback HTTP.
Prints p50/p95 of each and the ratio b/a of the medians. Both are measured in the same run, so the
ratio holds on a noisy machine where absolute times do not.

    .venv/bin/python tests/bench/sync_overhead.py [--rounds 30] [--keep]
"""

from __future__ import annotations

import argparse
import os
import random
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import docker
import httpx
from benchlib import remove_containers, remove_tenant_volumes

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = "print('hello from the sandbox')"
IMAGE = os.environ.get("CP_SANDBOX_IMAGE", "controlplane-sandbox-python:1")
TOKEN = "cp_bench_token_" + "x" * 24
HARDENING = [
    "--read-only",
    "--cap-drop",
    "ALL",
    "--security-opt",
    "no-new-privileges",
    "--network",
    "none",
    "--user",
    "10001:10001",
    "--memory",
    "256m",
    "--memory-swap",
    "256m",
    "--pids-limit",
    "128",
    "--tmpfs",
    "/tmp:rw,nosuid,nodev,size=64m",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def raw_docker() -> float:
    t0 = time.perf_counter()
    out = subprocess.run(
        ["docker", "run", "--rm", *HARDENING, "--entrypoint", "/usr/bin/python3", IMAGE, "-c", SCRIPT],
        capture_output=True,
        check=True,
        text=True,
    )
    elapsed = time.perf_counter() - t0
    assert "hello" in out.stdout, out
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--keep", action="store_true", help="keep the server's data directory")
    args = parser.parse_args()
    port = free_port()
    data = Path(tempfile.mkdtemp(prefix="cp-bench-"))
    prefix = f"cpbench-{secrets.token_hex(3)}-"
    env = {
        **os.environ,
        "CP_PORT": str(port),
        "CP_DATA_DIR": str(data),
        "CP_DATABASE_URL": f"sqlite+aiosqlite:///{data}/bench.db",
        "CP_AUTOMATIONS_DIR": str(data / "none"),
        "CP_BOOTSTRAP_TOKEN": TOKEN,
        "CP_CONTAINER_PREFIX": prefix,
        "CP_LOG_LEVEL": "warning",
    }
    server = subprocess.Popen([str(ROOT / ".venv/bin/controlplane"), "serve"], env=env, cwd=data)
    try:
        client = httpx.Client(
            base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60
        )
        for _ in range(300):
            try:
                if client.get("/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        else:
            print("server did not become ready", file=sys.stderr)
            return 1
        automation = client.post("/api/v1/automations", json={"name": "bench", "code": SCRIPT}).json()
        url = f"/api/v1/automations/{automation['id']}/runs"

        def platform_run() -> float:
            t0 = time.perf_counter()
            r = client.post(url, json={"context": "api_sync"})
            elapsed = time.perf_counter() - t0
            assert r.status_code == 200 and r.json()["status"] == "finished", r.text
            return elapsed

        raw_docker(), platform_run()  # warm both paths (image cache, imports, DB)
        plan = ["raw"] * args.rounds + ["platform"] * args.rounds
        random.shuffle(plan)
        times: dict[str, list[float]] = {"raw": [], "platform": []}
        for kind in plan:
            times[kind].append(raw_docker() if kind == "raw" else platform_run())
        a, b = times["raw"], times["platform"]
        print(f"rounds: {args.rounds} each, shuffled")
        for label, values in (("(a) docker run --rm   ", a), ("(b) POST runs api_sync", b)):
            print(f"{label}  p50 {statistics.median(values) * 1000:7.1f} ms   p95 {pct(values, 0.95) * 1000:7.1f} ms")
        p50, p95 = statistics.median(b) / statistics.median(a), pct(b, 0.95) / pct(a, 0.95)
        print(f"ratio b/a  p50 {p50:.3f}   p95 {p95:.3f}")
        return 0
    finally:
        server.terminate()
        server.wait(timeout=30)
        engine = docker.from_env()
        try:
            remove_containers(engine, prefix)
            remove_tenant_volumes(engine, data=data, database=data / "bench.db", prefix=prefix)
        finally:
            engine.close()
        if not args.keep:
            subprocess.run(["rm", "-rf", str(data)], check=False)


if __name__ == "__main__":
    sys.exit(main())
