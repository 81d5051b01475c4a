"""Settings: read from CP_* variables, refuse a root sandbox user, and document themselves in the README."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from pydantic import ValidationError
from pydantic_settings import SettingsError

from controlplane.core.settings import Settings, config_table

REPO_ROOT = Path(__file__).resolve().parents[2]
START = "<!-- config-table:start -->"
END = "<!-- config-table:end -->"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever CP_* variables the shell running the tests has must not leak into them."""
    for name in list(os.environ):
        if name.upper().startswith("CP_"):
            monkeypatch.delenv(name)


# --- environment -------------------------------------------------------------------------------------


def test_defaults_without_environment() -> None:
    s = Settings()
    assert s.port == 8080
    assert s.backend == "docker"
    assert s.sandbox_user == "10001:10001"
    assert s.base_url == "http://127.0.0.1:8080"


def test_cp_variables_are_read(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CP_HOST", "0.0.0.0")
    monkeypatch.setenv("CP_PORT", "9999")
    monkeypatch.setenv("CP_BACKEND", "fake")
    monkeypatch.setenv("CP_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("CP_DATABASE_URL", "postgresql+psycopg://u:p@db/cp")
    monkeypatch.setenv("CP_DEFAULT_CPUS", "0.5")
    monkeypatch.setenv("CP_MANAGE_FIREWALL", "false")
    monkeypatch.setenv("CP_EGRESS_BLOCKED_CIDRS", '["169.254.169.254/32"]')
    monkeypatch.setenv("CP_METRICS_TOKEN", "secret-token")
    monkeypatch.setenv("CP_SANDBOX_USER", "2000:3000")
    s = Settings()
    assert s.host == "0.0.0.0"
    assert s.port == 9999
    assert s.backend == "fake"
    assert s.data_dir == tmp_path
    assert s.database_url == "postgresql+psycopg://u:p@db/cp"
    assert s.default_cpus == 0.5
    assert s.manage_firewall is False
    assert s.egress_blocked_cidrs == ["169.254.169.254/32"]
    assert s.metrics_token == "secret-token"
    assert s.sandbox_user == "2000:3000"
    assert s.base_url == "http://0.0.0.0:9999"


def test_variable_names_are_case_insensitive(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("cp_port", "7000")
    assert Settings().port == 7000


def test_unprefixed_and_unknown_variables_are_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORT", "1234")
    monkeypatch.setenv("CP_NO_SUCH_SETTING", "x")
    assert Settings().port == 8080


def test_keyword_arguments_win_over_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CP_PORT", "7000")
    assert Settings(port=7001).port == 7001


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("CP_PORT", "0"),
        ("CP_PORT", "70000"),
        ("CP_PORT", "eighty"),
        ("CP_BACKEND", "podman"),
        ("CP_DEFAULT_CPUS", "0"),
        ("CP_DEFAULT_MEMORY_MB", "8"),
        ("CP_SYNC_CONCURRENCY_PER_TENANT", "0"),
        ("CP_DATABASE_TIMEOUT_SECONDS", "-1"),
    ],
)
def test_invalid_values_are_refused(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError):
        Settings()


@pytest.mark.parametrize("value", ["not json", "10.0.0.0/8,192.168.0.0/16"])
def test_list_settings_must_be_json(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("CP_EGRESS_BLOCKED_CIDRS", value)
    with pytest.raises(SettingsError):
        Settings()


def test_public_url_is_used_for_links_without_trailing_slash() -> None:
    assert Settings(public_url="https://cp.example.com/").base_url == "https://cp.example.com"


# --- sandbox user ------------------------------------------------------------------------------------


@pytest.mark.parametrize("user", ["0:0", "0:1000", "1000:0", "0", "00:00", "root", "root:root", "0:root", ""])
def test_sandbox_user_refuses_root_and_names(monkeypatch: pytest.MonkeyPatch, user: str) -> None:
    with pytest.raises(ValidationError):
        Settings(sandbox_user=user)
    monkeypatch.setenv("CP_SANDBOX_USER", user)
    with pytest.raises(ValidationError):
        Settings()


@pytest.mark.parametrize(
    "user",
    [
        "nobody",
        "1000:-1",
        "-1:1000",
        " 1000:1000",
        "1000:1000 ",
        "1000:1000:1000",
        "1000:",
        ":1000",
        "1000:users",
        "\u0661\u0660\u0660\u0660:\u0661\u0660\u0660\u0660",  # Arabic-Indic digits: isdigit() but not an id
        "\u00b2:\u00b2",  # superscript two
    ],
)
def test_sandbox_user_must_be_numeric(user: str) -> None:
    with pytest.raises(ValidationError):
        Settings(sandbox_user=user)


@pytest.mark.parametrize("user", ["10001:10001", "1000:1000", "1", "65534:65534"])
def test_sandbox_user_accepts_unprivileged_ids(user: str) -> None:
    # a bare uid gets the same number as its gid, so nothing ever runs with group 0
    assert Settings(sandbox_user=user).sandbox_user == (user if ":" in user else f"{user}:{user}")


# --- groups and documentation ------------------------------------------------------------------------


def test_every_field_has_a_description_and_a_known_group() -> None:
    known = {"server", "storage", "auth", "backend", "limits", "engine", "automations"}
    known |= {"scripting"}  # seed 002: a script's own HTTP response
    known |= {"secrets"}  # tenant variables and secrets; seed 000's tenant hosts
    known |= {"api"}  # per-user rate limits, signed export/debug links
    known |= {"kubernetes"}  # the Kubernetes Job backend
    known |= {"rules"}  # seed 003's automation rules
    known |= {"notifications"}  # seed 001: processes jobs' e-mail (CP_SMTP_*)
    for name, field in Settings.model_fields.items():
        assert field.description and field.description.strip(), name
        assert "|" not in field.description, f"{name}: a pipe would break the README table"
    groups = Settings().groups()
    assert set(groups) <= known
    assert sorted(n for names in groups.values() for n in names) == sorted(Settings.model_fields)


def _table_rows(table: str) -> list[str]:
    return [line for line in table.splitlines() if line.strip()]


def test_config_table_lists_every_field_exactly_once() -> None:
    rows = _table_rows(config_table())
    assert rows[0] == "| Variable | Default | Description |"
    assert rows[1] == "|---|---|---|"
    body = rows[2:]
    names = []
    for row in body:
        m = re.match(r"^\| `(CP_[A-Z0-9_]+)` \| `([^`]*)` \| (.+) \|$", row)
        assert m, row
        names.append(m.group(1))
    expected = [f"CP_{name.upper()}" for name in Settings.model_fields]
    assert names == expected
    assert len(set(names)) == len(names)


def test_config_table_shows_defaults_and_descriptions() -> None:
    table = config_table()
    assert "| `CP_PORT` | `8080` | Port the API listens on. |" in table
    assert "| `CP_METRICS_TOKEN` | `(unset)` |" in table
    assert "| `CP_SANDBOX_USER` | `10001:10001` |" in table
    # list defaults are shown as the JSON the variable must hold, so they can be pasted as they are
    assert '`["169.254.0.0/16","10.0.0.0/8",' in table
    for name, field in Settings.model_fields.items():
        assert f"| `CP_{name.upper()}` |" in table
        assert f"| {field.description} |" in table


def test_config_table_does_not_depend_on_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    before = config_table()
    monkeypatch.setenv("CP_PORT", "9999")
    assert config_table() == before


def test_readme_configuration_table_matches_settings() -> None:
    """The README embeds ``controlplane config-table`` between two markers; regenerate it when this fails."""
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    assert readme.count(START) == 1, f"README.md needs exactly one {START} marker"
    assert readme.count(END) == 1, f"README.md needs exactly one {END} marker"
    block = readme.split(START, 1)[1].split(END, 1)[0]
    assert _table_rows(block) == _table_rows(config_table())
