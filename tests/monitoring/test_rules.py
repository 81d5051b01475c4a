"""The alert rules pass `promtool check rules`, their unit tests (`promtool test rules`) pass, and every
alert has a unit test where it fires and one where it stays quiet."""

from __future__ import annotations

import shutil
import subprocess
from collections import defaultdict
from pathlib import Path

import pytest
import yaml

from tests.monitoring.promql import ROOT, RULE_TESTS, RULES, rules

CHART_RULES = ROOT / "charts" / "controlplane" / "files" / "controlplane-rules.yaml"
# what the issue asks SREs be told about, by alert name
WANTED = {
    "ControlPlaneBacklogGrowing",
    "ControlPlaneRunFailureRatioHigh",
    "ControlPlaneRunsStuckPastDeadline",
    "ControlPlaneBackendUnavailable",
    "ControlPlaneReconcileFoundOrphans",
    "ControlPlaneQuotaRejectionsSustained",
}


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.fail("promtool is missing: install Debian's prometheus package (apt-get install prometheus)")
    return found


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool(), *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


def test_check_rules() -> None:
    for path in (RULES, CHART_RULES):
        proc = run("check", "rules", str(path), cwd=path.parent)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "SUCCESS" in proc.stdout


def test_unit_tests_pass() -> None:
    files = sorted(RULE_TESTS.glob("*.yaml"))
    assert files
    proc = run("test", "rules", *(str(f.relative_to(RULES.parent)) for f in files), cwd=RULES.parent)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("SUCCESS") == len(files), proc.stdout


def test_a_broken_expectation_fails(tmp_path: Path) -> None:
    """A guard on the guard: promtool really compares, so a wrong expectation is a failure."""
    (tmp_path / "rules.yaml").write_text(RULES.read_text())
    (tmp_path / "t.yaml").write_text(
        yaml.safe_dump(
            {
                "rule_files": ["rules.yaml"],
                "evaluation_interval": "1m",
                "tests": [
                    {
                        "interval": "1m",
                        "input_series": [{"series": "controlplane_backend_up{instance='a'}", "values": "1x10"}],
                        "alert_rule_test": [
                            {
                                "eval_time": "5m",
                                "alertname": "ControlPlaneBackendUnavailable",
                                "exp_alerts": [{"exp_labels": {"severity": "critical", "instance": "a"}}],
                            }
                        ],
                    }
                ],
            }
        )
    )
    proc = run("test", "rules", "t.yaml", cwd=tmp_path)
    assert proc.returncode != 0 and "FAILED" in proc.stdout + proc.stderr


def test_every_alert_fires_and_stays_quiet_in_some_unit_test() -> None:
    alerts = {rule["alert"] for rule in rules() if "alert" in rule}
    assert alerts >= WANTED, WANTED - alerts
    outcomes: dict[str, set[bool]] = defaultdict(set)
    for path in RULE_TESTS.glob("*.yaml"):
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                outcomes[check["alertname"]].add(bool(check.get("exp_alerts")))
    for alert in sorted(alerts):
        assert outcomes[alert] == {True, False}, f"{alert}: needs a test where it fires and one where it does not"


def test_every_alert_is_explained() -> None:
    for rule in rules():
        if "alert" in rule:
            assert rule["labels"]["severity"] in {"info", "warning", "critical"}, rule["alert"]
            assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule["alert"]
