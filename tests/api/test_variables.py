"""Tenant variables and secrets over HTTP (fake backend, both databases): the admin API, names, roles,
tenants, encryption at rest and key rotation, what runs receive (JETQUERY_*, the DSN rule), and masking
of secrets in stored output, followed logs, artifact names and the server's log."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import stat
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from cryptography.fernet import Fernet
from sqlalchemy import select

from controlplane.db.tables import TenantVariable
from controlplane.services.platform import Platform
from controlplane.services.tenancy.tenants import configure_tenant
from tests.support.api import assert_envelope
from tests.support.platform import PlatformFactory, client_for, new_token
from tests.support.runs import make, run_sync

VARS = "/api/v1/variables"
SECRETS = "/api/v1/secrets"
BASE = "/api/v1/automations"
SECRET = "hunter2-Very+Secret/Value"
FILE_SECRET = "fileSecret-42xyz"


async def test_variables_crud(api: httpx.AsyncClient) -> None:
    r = await api.put(f"{VARS}/APP_NAME", json={"value": "erp"})
    assert r.status_code == 201, r.text
    first = r.json()
    assert first["name"] == "APP_NAME" and first["value"] == "erp" and first["version"] == 1
    r = await api.put(f"{VARS}/APP_NAME", json={"value": "erp2"})
    assert r.status_code == 200 and r.json()["version"] == 2 and r.json()["value"] == "erp2"
    assert r.json()["createdAt"] == first["createdAt"]
    await api.put(f"{VARS}/OTHER", json={"value": ""})
    listing = (await api.get(VARS)).json()["data"]
    assert [(v["name"], v["value"]) for v in listing] == [("APP_NAME", "erp2"), ("OTHER", "")]
    assert (await api.get(f"{VARS}/APP_NAME")).json()["value"] == "erp2"
    assert (await api.delete(f"{VARS}/APP_NAME")).status_code == 204
    assert_envelope(await api.get(f"{VARS}/APP_NAME"), 404, "NOT_FOUND")
    assert_envelope(await api.delete(f"{VARS}/APP_NAME"), 404, "NOT_FOUND")


async def test_secrets_are_never_returned_and_encrypted_at_rest(platform: Platform, api: httpx.AsyncClient) -> None:
    r = await api.put(f"{SECRETS}/API_KEY", json={"value": SECRET})
    assert r.status_code == 201, r.text
    body = r.json()
    assert set(body) == {"name", "version", "keyId", "masked", "createdAt", "updatedAt"}
    assert body["version"] == 1 and body["masked"] is True and len(body["keyId"]) == 12
    rotated = await api.put(f"{SECRETS}/API_KEY", json={"value": SECRET + "-2"})
    assert rotated.status_code == 200 and rotated.json()["version"] == 2
    await api.put(f"{SECRETS}/PIN", json={"value": "123"})
    for resp in (await api.get(SECRETS), await api.get(f"{SECRETS}/API_KEY"), rotated):
        assert SECRET not in resp.text and "value" not in resp.json()
    listing = (await api.get(SECRETS)).json()["data"]
    assert [(s["name"], s["masked"]) for s in listing] == [("API_KEY", True), ("PIN", False)]
    assert (await api.get(VARS)).json()["data"] == []  # secrets are not variables
    async with platform.sessions() as s:
        row = (await s.execute(select(TenantVariable).where(TenantVariable.name == "API_KEY"))).scalar_one()
    assert row.value is None and row.ciphertext and SECRET.encode() not in row.ciphertext
    assert (await api.delete(f"{SECRETS}/API_KEY")).status_code == 204
    assert_envelope(await api.get(f"{SECRETS}/API_KEY"), 404)


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("lower", "INVALID_NAME"),
        ("1ABC", "INVALID_NAME"),
        ("A-B", "INVALID_NAME"),
        ("A" * 65, "INVALID_NAME"),
        ("JETQUERY_FOO", "INVALID_NAME"),
        ("TOKEN", "RESERVED_NAME"),
        ("HOST", "RESERVED_NAME"),
        ("FILES", "RESERVED_NAME"),
    ],
)
async def test_bad_names_are_422(api: httpx.AsyncClient, name: str, code: str) -> None:
    for base in (VARS, SECRETS):
        assert_envelope(await api.put(f"{base}/{name}", json={"value": "x"}), 422, code)


async def test_bad_values_and_kind_conflicts(api: httpx.AsyncClient) -> None:
    assert_envelope(await api.put(f"{VARS}/BIG", json={"value": "x" * 40000}), 422, "VALUE_TOO_LONG")
    assert_envelope(await api.put(f"{SECRETS}/BIG", json={"value": "x" * 5000}), 422, "VALUE_TOO_LONG")
    assert_envelope(await api.put(f"{VARS}/NUL", json={"value": "a\x00b"}), 422, "INVALID_VALUE")
    assert_envelope(await api.put(f"{VARS}/NOBODY", json={}), 422)
    assert (await api.put(f"{VARS}/SHARED", json={"value": "plain"})).status_code == 201
    assert_envelope(await api.put(f"{SECRETS}/SHARED", json={"value": "secret-value-9"}), 409, "NAME_TAKEN")
    assert_envelope(await api.get(f"{SECRETS}/SHARED"), 404)
    assert_envelope(await api.delete(f"{SECRETS}/SHARED"), 404)
    assert (await api.put(f"{SECRETS}/DSN", json={"value": "SERVER=x;PWD=y"})).status_code == 201  # DSN: allowed


async def test_admin_only_and_tenant_scoped(platform: Platform, api: httpx.AsyncClient) -> None:
    await api.put(f"{SECRETS}/MINE", json={"value": SECRET})
    await api.put(f"{VARS}/MINE_VAR", json={"value": "v"})
    async with client_for(platform, token=None) as anon:
        assert_envelope(await anon.get(SECRETS), 401, "UNAUTHORIZED")
        assert_envelope(await anon.put(f"{VARS}/X", json={"value": "v"}), 401)
    developer = await new_token(platform, role="developer")
    async with client_for(platform, developer) as dev:
        for method, path, body in (
            ("GET", SECRETS, None),
            ("GET", VARS, None),
            ("PUT", f"{SECRETS}/X", {"value": "v"}),
            ("DELETE", f"{VARS}/MINE_VAR", None),
            ("POST", f"{SECRETS}/actions/re-encrypt", None),
        ):
            assert_envelope(await dev.request(method, path, json=body), 403, "FORBIDDEN")
    other = await new_token(platform, role="admin", tenant="other-tenant")
    async with client_for(platform, other) as them:
        assert (await them.get(SECRETS)).json()["data"] == []
        assert (await them.get(VARS)).json()["data"] == []
        assert_envelope(await them.get(f"{SECRETS}/MINE"), 404)
        assert_envelope(await them.delete(f"{VARS}/MINE_VAR"), 404)
        assert (await them.put(f"{SECRETS}/MINE", json={"value": "theirs-1234"})).status_code == 201
    assert (await api.get(f"{SECRETS}/MINE")).json()["version"] == 1


async def test_runs_get_variables_and_secrets_with_the_prefix(platform: Platform, api: httpx.AsyncClient) -> None:
    await api.put(f"{VARS}/APPNAME", json={"value": "erp"})
    await api.put(f"{VARS}/OVERRIDDEN", json={"value": "tenant"})
    await api.put(f"{SECRETS}/API_KEY", json={"value": SECRET})
    r = await api.post(
        BASE, json={"name": "env", "code": "x", "env": {"JETQUERY_OVERRIDDEN": "automation", "OWN": "1"}}
    )
    aid = r.json()["id"]
    await run_sync(api, aid)
    env = platform.backend.launched[-1].env  # type: ignore[attr-defined]
    assert env["JETQUERY_APPNAME"] == "erp" and env["JETQUERY_API_KEY"] == SECRET
    assert env["JETQUERY_OVERRIDDEN"] == "automation" and env["OWN"] == "1"  # the automation's own env wins
    assert "JETQUERY_DSN" not in env and env["JETQUERY_TOKEN"] != SECRET


async def test_dsn_rule(platform: Platform, api: httpx.AsyncClient) -> None:
    aid = await make(api, "dsn")

    async def dsn() -> str | None:
        await run_sync(api, aid)
        return platform.backend.launched[-1].env.get("JETQUERY_DSN")  # type: ignore[attr-defined,no-any-return]

    assert await dsn() is None
    await api.put(f"{VARS}/DSN_SERVER", json={"value": "192.1.1.1"})
    assert await dsn() == "SERVER=192.1.1.1;Trusted_Connection=yes;"
    await api.put(f"{VARS}/DSN_DATABASE", json={"value": "ERP"})
    await api.put(f"{VARS}/DSN_UID", json={"value": "platforma"})
    await api.put(f"{SECRETS}/DSN_PWD", json={"value": "pa;ss}word"})
    assert await dsn() == "SERVER=192.1.1.1;DATABASE=ERP;UID=platforma;PWD={pa;ss}}word};Trusted_Connection=no;"
    await configure_tenant(platform.sessions, platform.settings, tenant="default", dsn="SERVER=configured;")
    assert await dsn() == "SERVER=configured;"  # `tenants configure --dsn` still sets it
    await api.put(f"{SECRETS}/DSN", json={"value": "SERVER=own;PWD=x;"})
    assert await dsn() == "SERVER=own;PWD=x;"  # the tenant's own DSN wins


async def test_secrets_are_masked_in_stored_output_logs_and_artifact_names(
    platform: Platform, api: httpx.AsyncClient
) -> None:
    await api.put(f"{SECRETS}/API_KEY", json={"value": SECRET})
    await api.put(f"{SECRETS}/FILE_KEY", json={"value": FILE_SECRET})
    b64 = base64.b64encode(SECRET.encode()).decode()
    pad = "x" * (8192 - 5)  # the fake backend sends 8192-byte frames: the secret straddles two of them
    stdout = f"{pad}{SECRET} and {b64} and {base64.urlsafe_b64encode(SECRET.encode()).decode()}\n"
    aid = await make(
        api,
        "leaky",
        stdout=stdout,
        stderr=f"Traceback: ValueError({SECRET!r})\n",
        artifacts={f"dump-{FILE_SECRET}.txt": "content", f"{SECRET}/x.txt": "c"},
    )
    run = await run_sync(api, aid)
    run_id = run["id"]
    logs = {
        s: (await api.get(f"{BASE}/{aid}/runs/{run_id}/logs", params={"stream": s})).text for s in ("stdout", "stderr")
    }
    followed = (await api.get(f"{BASE}/{aid}/runs/{run_id}/logs", params={"stream": "stdout", "follow": "true"})).text
    arts = (await api.get(f"{BASE}/{aid}/runs/{run_id}/artifacts")).json()
    whole = json.dumps(run) + logs["stdout"] + logs["stderr"] + followed + json.dumps(arts)
    for form in (SECRET, b64, FILE_SECRET):
        assert form not in whole
    assert logs["stdout"] == f"{pad}*** and *** and ***\n" == followed
    assert logs["stderr"] == "Traceback: ValueError('***')\n"
    assert sorted(a["path"] for a in arts) == ["***/x.txt", "dump-***.txt"]


async def test_server_log_never_shows_a_secret(api: httpx.AsyncClient, caplog: pytest.LogCaptureFixture) -> None:
    value = "log-leak-" + os.urandom(6).hex()
    await api.put(f"{SECRETS}/LOGGED", json={"value": value})
    with caplog.at_level(logging.INFO):
        logging.getLogger("controlplane.test").error("oops: %s", value)
    assert value not in caplog.text and "oops: ***" in caplog.text


async def test_key_file_is_generated_with_0600(platform: Platform) -> None:
    path = Path(platform.settings.data_dir) / "secrets-key"
    assert path.exists() and stat.S_IMODE(path.stat().st_mode) == 0o600
    Fernet(path.read_bytes().strip())  # a valid key


async def test_key_rotation_and_re_encrypt(make_platform: PlatformFactory, sqlite_url: str, tmp_path: Path) -> None:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    first = await make_platform(sqlite_url, secrets_keys=old, data_dir=tmp_path / "d1")
    async with client_for(first) as api:
        await api.put(f"{SECRETS}/ROTATED", json={"value": SECRET})
        old_id = (await api.get(f"{SECRETS}/ROTATED")).json()["keyId"]
    await first.close()
    # the new key first, the old one still there: reads work, new writes use the new key, re-encrypt moves all
    second = await make_platform(sqlite_url, secrets_keys=f"{new},{old}", data_dir=tmp_path / "d2")
    async with client_for(second) as api:
        aid = await make(api, "rot")
        await run_sync(api, aid)
        assert second.backend.launched[-1].env["JETQUERY_ROTATED"] == SECRET  # type: ignore[attr-defined]
        r = await api.post(f"{SECRETS}/actions/re-encrypt")
        assert r.status_code == 200 and r.json()["reEncrypted"] == 1 and r.json()["keyId"] != old_id
        assert (await api.get(f"{SECRETS}/ROTATED")).json()["keyId"] == r.json()["keyId"]
        assert (await api.post(f"{SECRETS}/actions/re-encrypt")).json()["reEncrypted"] == 0
    await second.close()
    third = await make_platform(sqlite_url, secrets_keys=new, data_dir=tmp_path / "d3")  # the old key is gone
    async with client_for(third) as api:
        aid = (await api.get(BASE)).json()["data"][0]["id"]
        await run_sync(api, aid)
        assert third.backend.launched[-1].env["JETQUERY_ROTATED"] == SECRET  # type: ignore[attr-defined]


async def test_bad_key_setting_fails_the_start(make_platform: PlatformFactory, sqlite_url: str) -> None:
    with pytest.raises(Exception, match="32 url-safe base64"):
        await make_platform(sqlite_url, secrets_keys="not-a-key")


def test_cli_re_encrypt(tmp_path: Path, sqlite_url: str) -> None:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("CP_")},
        "CP_DATABASE_URL": sqlite_url,
        "CP_DATA_DIR": str(tmp_path / "data"),
    }
    script = (
        "import asyncio\n"
        "from controlplane.core.settings import Settings\n"
        "from controlplane.db.session import create_engine, session_factory\n"
        "from controlplane.services.tenancy import tenants as tenancy\n"
        "from controlplane.services.tenancy.secrets import SecretService\n"
        "from controlplane.core.auth import Principal\n"
        "from controlplane.core.states import Role\n"
        "async def go():\n"
        "    s = Settings()\n"
        "    e = create_engine(s.database_url)\n"
        "    sessions = session_factory(e)\n"
        "    tid, *_ = await tenancy.bootstrap(s, sessions)\n"
        "    p = Principal(tid, 'default', 'u', Role.ADMIN, token_id='t')\n"
        "    for t in ('A', 'B', 'C'):\n"
        "        await SecretService(s, sessions).put(p, t, 'value-' + t, secret=True)\n"
        "    await e.dispose()\n"
        "asyncio.run(go())\n"
    )
    put = subprocess.run([sys.executable, "-c", script], env={**env, "CP_SECRETS_KEYS": old}, capture_output=True)
    assert put.returncode == 0, put.stderr
    cli = [sys.executable, "-m", "controlplane.cli", "secrets", "re-encrypt"]
    done = subprocess.run(cli, env={**env, "CP_SECRETS_KEYS": f"{new},{old}"}, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "3 secret(s) re-encrypted" in done.stdout
    again = subprocess.run(cli, env={**env, "CP_SECRETS_KEYS": f"{new},{old}"}, capture_output=True, text=True)
    assert "0 secret(s) re-encrypted" in again.stdout
    lost = subprocess.run(
        cli, env={**env, "CP_SECRETS_KEYS": Fernet.generate_key().decode()}, capture_output=True, text=True
    )
    assert lost.returncode != 0 and "decrypt" in lost.stderr


async def test_concurrent_first_writes_of_one_name(api: httpx.AsyncClient) -> None:
    results = await asyncio.gather(*(api.put(f"{SECRETS}/RACE", json={"value": f"value-{i}-xyz"}) for i in range(6)))
    assert sorted(r.status_code for r in results) == [200] * 5 + [201], [r.text for r in results]
    assert (await api.get(f"{SECRETS}/RACE")).json()["version"] == 6
