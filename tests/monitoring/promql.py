"""Read the metric names out of PromQL (dashboard panels, alert rules) and check them against what a
control plane really exports, so a renamed metric breaks a test instead of a dashboard."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "monitoring" / "grafana" / "controlplane-dashboard.json"
RULES = ROOT / "monitoring" / "prometheus" / "controlplane-rules.yaml"
RULE_TESTS = ROOT / "monitoring" / "prometheus" / "tests"

_KEYWORDS = {"bool", "and", "or", "unless", "offset", "inf", "nan", "atan2", "group_left", "group_right"}
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_SUFFIXES = (("_bucket", {"histogram"}), ("_count", {"histogram", "summary"}), ("_sum", {"histogram", "summary"}))


def metric_names(expr: str) -> set[str]:
    """Metric (or recording rule) names a PromQL expression selects: identifiers that are not functions,
    aggregations, keywords, label names in grouping clauses, label matchers or durations."""
    label_values = re.fullmatch(r"\s*label_values\(\s*([A-Za-z_:][A-Za-z0-9_:]*)\s*(?:\{[^}]*\})?\s*,.*\)\s*", expr)
    if label_values:  # Grafana's variable query: label_values(metric, label)
        return {label_values.group(1)}
    text = re.sub(r'"(?:\\.|[^"\\])*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = _GROUPING.sub(" ", text)
    text = re.sub(r"\$\w+", " ", text)
    names = set()
    for match in re.finditer(r"(?<![\w.])[A-Za-z_:][A-Za-z0-9_:]*", text):
        if text[match.end() :].lstrip().startswith("("):
            continue  # a function or an aggregation
        if match.group(0).lower() not in _KEYWORDS:
            names.add(match.group(0))
    return names


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def panels(dash: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dash["panels"]:
        yield panel
        yield from panel.get("panels", [])


def dashboard_exprs(dash: dict[str, Any] | None = None) -> list[tuple[str, str]]:
    """(where, expr) for every panel target and every query variable."""
    dash = dash or dashboard()
    out = [(p["title"], t["expr"]) for p in panels(dash) for t in p.get("targets", [])]
    for var in dash.get("templating", {}).get("list", []):
        if var.get("type") == "query":
            query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
            out.append((f"variable {var['name']}", query))
    return out


def rules() -> list[dict[str, Any]]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


def rule_exprs() -> list[tuple[str, str]]:
    return [(rule.get("alert") or rule["record"], rule["expr"]) for rule in rules()]


def exported(exposition: str) -> tuple[dict[str, str], set[str]]:
    """Family name -> type and the sample names of a /metrics text."""
    families: dict[str, str] = {}
    samples: set[str] = set()
    for family in text_string_to_metric_families(exposition):
        families[family.name] = family.type
        samples.update(s.name for s in family.samples)
    return families, samples


def is_exported(name: str, families: dict[str, str], samples: set[str]) -> bool:
    """A series name the exposition declares: a sample seen, or a declared family with no sample yet (a
    labelled counter nobody incremented), with the _bucket/_count/_sum/_total suffixes of its type."""
    if name in samples:
        return True
    for suffix, types in _SUFFIXES:
        if name.endswith(suffix) and families.get(name.removesuffix(suffix)) in types:
            return True
    if name.endswith("_total") and families.get(name.removesuffix("_total")) == "counter":
        return True
    return families.get(name) in {"gauge", "untyped"}


def grafana_to_promql(expr: str) -> str:
    """A panel query as Prometheus itself can run it: Grafana's variables replaced by plain values."""
    return (
        expr.replace("$__rate_interval", "1m")
        .replace("$__range", "1h")
        .replace("$__interval", "15s")
        .replace('=~"$tenant"', '=~".*"')
    )
