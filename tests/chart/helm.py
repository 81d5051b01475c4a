"""Render charts/controlplane offline with Helm's own engine (helm-python-sdk: libhelm_c, no helm binary,
no cluster) and validate what comes out with kubernetes-validate's strict schemas."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import all_versions

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "controlplane"
RELEASE, NAMESPACE = "cp", "controlplane"
# kinds of the Prometheus Operator (CRDs): kubernetes-validate has no schema for them
CRD_KINDS = {"ServiceMonitor", "PrometheusRule"}


def kube_versions() -> list[str]:
    """Every schema version kubernetes-validate ships from 1.28 on (so nothing we render is older-only)."""
    versions = sorted({v for v in all_versions() if v.startswith("1.")}, key=lambda v: tuple(map(int, v.split("."))))
    chosen = [v for v in versions if tuple(map(int, v.split(".")[:2])) >= (1, 28)]
    assert chosen, f"kubernetes-validate ships no schema >= 1.28: {versions}"
    return chosen


def render(values: dict[str, Any] | None = None, *, namespace: str = NAMESPACE) -> dict[str, str]:
    """Template path -> rendered text (NOTES.txt included)."""
    with helm.Chart.load(CHART) as chart:
        return chart.render(values or {}, name=RELEASE, namespace=namespace, is_install=True)


def manifests(values: dict[str, Any] | None = None, *, namespace: str = NAMESPACE) -> list[dict[str, Any]]:
    """Every object the chart renders for ``values``."""
    docs: list[dict[str, Any]] = []
    for path, text in sorted(render(values, namespace=namespace).items()):
        if path.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                assert isinstance(doc, dict), f"{path}: not a mapping: {doc!r}"
                docs.append(doc)
    return docs


def one(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"want one {kind} {name or ''}, got {[d['metadata']['name'] for d in found]}"
    return found[0]


def kinds(docs: list[dict[str, Any]]) -> list[str]:
    return sorted(d["kind"] for d in docs)


@cache
def _versions() -> tuple[str, ...]:
    return tuple(kube_versions())


def validate_strict(doc: dict[str, Any]) -> None:
    """kubernetes-validate --strict against every shipped version from 1.28 up (fails the test on error)."""
    for version in _versions():
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{doc['kind']}/{doc['metadata']['name']} is invalid for Kubernetes {version}: {exc}")
