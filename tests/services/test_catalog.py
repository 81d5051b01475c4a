"""The automations directory: the shipped folders load, sync is idempotent, bad folders are reported."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from controlplane.core.filters import ListQuery
from controlplane.services.automations import catalog
from controlplane.services.platform import Platform

REPO_AUTOMATIONS = Path(__file__).resolve().parents[2] / "automations"
SHIPPED = {"A000-run-test", "A002-tools-minimal", "A010-sales-report", "A011-archive-cleanup", "A020-report-demo"}


async def test_shipped_automations_load_and_resync_is_idempotent(platform: Platform) -> None:
    admin = await platform.bootstrap_principal()
    first = await catalog.sync(platform.automations, admin, REPO_AUTOMATIONS)
    assert set(first.created) == SHIPPED and not first.errors, first.summary()
    second = await catalog.sync(platform.automations, admin, REPO_AUTOMATIONS)
    assert set(second.unchanged) == SHIPPED and not second.created and not second.updated
    items, _ = await platform.automations.search(admin, ListQuery(filter='name eq "A011-archive-cleanup"', limit=5))
    cleanup = items[0]
    assert cleanup.network.value == "api" and cleanup.args == ["--days", "30"]
    assert cleanup.schedules[0].cron == "0 3 * * *" and cleanup.run_mode.value == "scheduled"
    items, _ = await platform.automations.search(admin, ListQuery(filter='name eq "A020-report-demo"', limit=5))
    declared = {p.name: p for p in items[0].parameters}  # typed parameters from automation.json
    assert declared["Warehouse"].mandatory and declared["MinQty"].type == "integer" and declared["MinQty"].default == 0


async def test_changed_folder_is_updated_with_a_new_version(platform: Platform, tmp_path: Path) -> None:
    admin = await platform.bootstrap_principal()
    folder = tmp_path / "A123-Thing"
    folder.mkdir()
    (folder / "automation.json").write_text(json.dumps({"description": "v1"}))
    (folder / "main.py").write_text("print(1)")
    assert (await catalog.sync(platform.automations, admin, tmp_path)).created == ["A123-Thing"]
    (folder / "main.py").write_text("print(2)")
    report = await catalog.sync(platform.automations, admin, tmp_path)
    assert report.updated == ["A123-Thing"]
    items, _ = await platform.automations.search(admin, ListQuery(filter='name eq "A123-Thing"', limit=1))
    assert items[0].version == 2


async def test_bad_folders_are_reported_and_the_rest_load(platform: Platform, tmp_path: Path) -> None:
    admin = await platform.bootstrap_principal()
    shutil.copytree(REPO_AUTOMATIONS / "A000-run-test", tmp_path / "A000-run-test")
    bad_name = tmp_path / "MyAutomation"
    bad_name.mkdir()
    (bad_name / "automation.json").write_text("{}")
    no_manifest = tmp_path / "A001-NoManifest"
    no_manifest.mkdir()
    bad_json = tmp_path / "A003-BadJson"
    bad_json.mkdir()
    (bad_json / "automation.json").write_text("{nope")
    unknown_key = tmp_path / "A004-Unknown"
    unknown_key.mkdir()
    (unknown_key / "automation.json").write_text('{"colour": "red"}')
    (unknown_key / "main.py").write_text("")
    too_long = tmp_path / "A005-TooLong"
    too_long.mkdir()
    (too_long / "automation.json").write_text('{"timeoutSeconds": 5000}')
    (too_long / "main.py").write_text("")
    link = tmp_path / "A006-Link"
    link.mkdir()
    (link / "automation.json").write_text("{}")
    (link / "main.py").symlink_to("/etc/passwd")
    report = await catalog.sync(platform.automations, admin, tmp_path)
    assert report.created == ["A000-run-test"]
    assert "A001-YourAutomationName" in report.errors["MyAutomation"]
    assert "missing automation.json" in report.errors["A001-NoManifest"]
    assert "not valid JSON" in report.errors["A003-BadJson"]
    assert "colour" in report.errors["A004-Unknown"]
    assert "840" in report.errors["A005-TooLong"]
    assert "symlink" in report.errors["A006-Link"]
