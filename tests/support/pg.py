"""A real PostgreSQL for the integration tests, found or started without anyone's help.

``postgres_url()`` returns ``CP_TEST_DATABASE_URL`` when it is set (CI, a developer's own server) and
otherwise runs ``scripts/ensure-postgres.sh``, which starts the machine's cluster and makes the test role;
``fresh_database()`` gives a test module a database of its own. Neither skips: a missing PostgreSQL is a
failure with the reason in its message, because integration tests must not be skipped in CI.
"""

from __future__ import annotations

import functools
import os
import subprocess
from pathlib import Path

import psycopg
from psycopg import sql
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parents[2]
ENSURE_SCRIPT = ROOT / "scripts" / "ensure-postgres.sh"
ENV_VAR = "CP_TEST_DATABASE_URL"


@functools.cache
def postgres_url() -> str:
    """SQLAlchemy URL (``postgresql+psycopg://…``) of a server the tests may create databases on."""
    url = os.environ.get(ENV_VAR, "").strip()
    if url:
        return url
    proc = subprocess.run(
        ["bash", str(ENSURE_SCRIPT)], cwd=ROOT, capture_output=True, text=True, timeout=300, check=False
    )
    lines = [line.strip() for line in proc.stdout.splitlines() if line.strip()]
    if proc.returncode != 0 or not lines or not lines[-1].startswith("postgresql"):
        raise RuntimeError(
            f"no PostgreSQL for the tests: set {ENV_VAR} or run `make postgres` "
            f"(scripts/ensure-postgres.sh exited {proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
        )
    os.environ[ENV_VAR] = lines[-1]  # child processes (and a second call) reuse it
    return lines[-1]


def admin_conninfo(base_url: str, dbname: str = "postgres") -> str:
    """libpq connection string for ``base_url``'s server and credentials, on database ``dbname``."""
    u = make_url(base_url)
    return psycopg.conninfo.make_conninfo(
        host=u.host or "127.0.0.1",
        port=str(u.port or 5432),
        user=u.username or "",
        password=u.password or "",
        dbname=dbname,
    )


def fresh_database(base_url: str, name: str) -> str:
    """(Re)create database ``name`` on ``base_url``'s server, empty and owned by its user; its URL."""
    with psycopg.connect(admin_conninfo(base_url), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return make_url(base_url).set(database=name).render_as_string(hide_password=False)


def drop_database(base_url: str, name: str) -> None:
    with psycopg.connect(admin_conninfo(base_url), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
