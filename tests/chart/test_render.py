"""The chart renders offline (Helm's own engine) with default and non-default values, every object passes
kubernetes-validate --strict from Kubernetes 1.28 up, values.schema.json refuses bad values, and the
monitoring objects carry exactly the files in monitoring/."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
import yaml

from controlplane.core.settings import Settings
from tests.chart.helm import CHART, CRD_KINDS, ROOT, kinds, manifests, one, render, validate_strict

FULL: dict[str, Any] = {
    "replicaCount": 3,
    "image": {"repository": "registry.example/team/controlplane", "tag": "1.2.3", "pullPolicy": "Always"},
    "imagePullSecrets": [{"name": "pull"}],
    "serviceAccount": {"create": False, "name": "existing-sa"},
    "database": {"existingSecret": "pg", "key": "dsn"},
    "secretEnv": [
        {"name": "CP_BOOTSTRAP_TOKEN", "secret": "cp-admin", "key": "token"},
        {"name": "CP_METRICS_TOKEN", "secret": "cp-metrics", "key": "token"},
    ],
    "config": {
        "CP_LOG_LEVEL": "debug",
        "CP_BACKGROUND_CONCURRENCY_TOTAL": 500,
        "CP_K8S_RUNTIME_CLASS": "gvisor",
        "CP_K8S_NODE_SELECTOR": {"pool": "sandbox"},
        "CP_K8S_TOLERATIONS": [{"key": "sandbox", "operator": "Exists", "effect": "NoSchedule"}],
        "CP_K8S_NAMESPACE_PER_TENANT": False,
    },
    "runs": {"namespace": "sandboxes", "createNamespace": False},
    "service": {"type": "LoadBalancer", "port": 80, "annotations": {"a": "b"}},
    "metricsPort": 9100,
    "resources": {"requests": {"cpu": "250m", "memory": "512Mi"}, "limits": {"memory": "2Gi"}},
    "podAnnotations": {"x": "y"},
    "podLabels": {"team": "sre"},
    "nodeSelector": {"pool": "system"},
    "tolerations": [{"key": "system", "operator": "Exists", "effect": "NoSchedule"}],
    "affinity": {
        "podAntiAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {
                    "weight": 100,
                    "podAffinityTerm": {
                        "topologyKey": "kubernetes.io/hostname",
                        "labelSelector": {"matchLabels": {"app.kubernetes.io/name": "controlplane"}},
                    },
                }
            ]
        }
    },
    "topologySpreadConstraints": [
        {
            "maxSkew": 1,
            "topologyKey": "topology.kubernetes.io/zone",
            "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": {"matchLabels": {"app.kubernetes.io/name": "controlplane"}},
        }
    ],
    "priorityClassName": "system-cluster-critical",
    "podDisruptionBudget": {"enabled": True, "maxUnavailable": 1},
    "networkPolicy": {"enabled": True, "dns": {"enabled": False}, "egress": {"cidrs": ["0.0.0.0/0", "::/0"]}},
    "metrics": {
        "serviceMonitor": {"enabled": True, "interval": "15s", "bearerTokenSecret": {"name": "cp-metrics", "key": "t"}},
        "prometheusRule": {"enabled": True, "labels": {"release": "kube-prometheus"}},
    },
    "grafana": {"dashboard": {"enabled": True, "namespace": "monitoring", "labelValue": "yes"}},
}
MINIMAL: dict[str, Any] = {
    "replicaCount": 1,
    "fullnameOverride": "cp-min",
    "podDisruptionBudget": {"enabled": False},
    "networkPolicy": {"enabled": False},
    "grafana": {"dashboard": {"enabled": False}},
    "metrics": {"serviceMonitor": {"enabled": False}, "prometheusRule": {"enabled": False}},
}
CASES = {"defaults": {}, "full": FULL, "minimal": MINIMAL}


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_object_is_valid_for_kubernetes_1_28_and_newer(case: str) -> None:
    docs = manifests(CASES[case])
    assert docs
    for doc in docs:
        assert doc["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"
        if doc["kind"] in CRD_KINDS:
            continue  # no schema shipped for CRDs; test_monitoring_objects checks their structure
        validate_strict(doc)


def test_the_validator_catches_a_typo() -> None:
    """A guard on the guard: --strict really refuses an unknown field."""
    deployment = copy.deepcopy(one(manifests(), "Deployment"))
    deployment["spec"]["template"]["spec"]["containers"][0]["securityContex"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, "1.28.0", strict=True)


def test_defaults_render_what_a_cluster_install_needs() -> None:
    docs = manifests()
    assert kinds(docs) == [
        "ConfigMap",  # settings
        "ConfigMap",  # Grafana dashboard
        "Deployment",
        "Namespace",
        "NetworkPolicy",
        "NetworkPolicy",
        "NetworkPolicy",
        "PodDisruptionBudget",
        "Role",
        "RoleBinding",
        "Secret",  # CP_SIGNING_KEY and CP_SECRETS_KEYS shared by the replicas
        "Service",
        "ServiceAccount",
    ]
    # without the Prometheus Operator's API (offline render) the CRD objects are left out by default
    assert not any(d["kind"] in CRD_KINDS for d in docs)


def test_minimal_leaves_out_the_optional_objects() -> None:
    docs = manifests(MINIMAL)
    assert kinds(docs) == [
        "ConfigMap",
        "Deployment",
        "Namespace",
        "Role",
        "RoleBinding",
        "Secret",
        "Service",
        "ServiceAccount",
    ]
    assert one(docs, "Deployment")["metadata"]["name"] == "cp-min"
    notes = render(MINIMAL)["controlplane/templates/NOTES.txt"]
    assert "networkPolicy.enabled is false" in notes


def test_settings_configmap_names_only_real_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every key is a CP_* setting the Settings class knows; the chart's defaults and the user's config."""
    fields = set(Settings.model_fields)
    for case in CASES.values():
        data = one(manifests(case), "ConfigMap", f"{'cp-min' if case is MINIMAL else 'cp-controlplane'}-config")["data"]
        for key in data:
            assert key.startswith("CP_") and key[3:].lower() in fields, key
    default = one(manifests(), "ConfigMap", "cp-controlplane-config")["data"]
    assert default["CP_BACKEND"] == "kubernetes"
    assert default["CP_K8S_NAMESPACE"] == "controlplane-runs"
    assert default["CP_HOST"] == "0.0.0.0" and default["CP_PORT"] == "8080"
    assert default["CP_PUBLIC_URL"] == "http://cp-controlplane.controlplane.svc:8080"
    full = one(manifests(FULL), "ConfigMap", "cp-controlplane-config")["data"]
    assert full["CP_K8S_NAMESPACE"] == "sandboxes"
    assert full["CP_METRICS_PORT"] == "9100"
    assert full["CP_BACKGROUND_CONCURRENCY_TOTAL"] == "500"
    # structured settings reach the process as the JSON pydantic-settings parses
    assert json.loads(full["CP_K8S_NODE_SELECTOR"]) == {"pool": "sandbox"}
    # ... and the process reads them back from its environment (envFrom) as the chart meant
    for key, value in full.items():
        monkeypatch.setenv(key, value)
    settings = Settings()
    assert settings.k8s_tolerations == FULL["config"]["CP_K8S_TOLERATIONS"]
    assert settings.k8s_runtime_class == "gvisor" and settings.backend == "kubernetes"


@pytest.mark.parametrize(
    ("values", "complaint"),
    [
        ({"replicaCount": -1}, "replicaCount"),
        ({"config": {"LOG_LEVEL": "x"}}, "LOG_LEVEL"),
        ({"config": {"CP_DATABASE_URL": "sqlite://"}}, "CP_DATABASE_URL"),
        ({"unknown": True}, "unknown"),
        ({"image": {"repository": ""}}, "repository"),
        ({"runs": {"namespace": "Not_A_Name"}}, "namespace"),
        ({"networkPolicy": {"egress": {"except": ["not-a-cidr"]}}}, "except"),
        ({"metrics": {"serviceMonitor": {"enabled": "yes"}}}, "enabled"),
        ({"secretEnv": [{"name": "TOKEN", "secret": "s", "key": "k"}]}, "name"),
        ({"secretEnv": [{"name": "CP_SECRETS_KEYS", "secret": "s", "key": "k"}]}, "name"),
        ({"config": {"CP_BOOTSTRAP_TOKEN": "in-a-configmap"}}, "CP_BOOTSTRAP_TOKEN"),
    ],
)
def test_schema_refuses_bad_values(values: dict[str, Any], complaint: str) -> None:
    with helm.Chart.load(CHART) as chart, pytest.raises(helm.HelmValuesError) as err:
        chart.render(values, name="cp", namespace="controlplane")
    assert complaint in str(err.value)


def test_runs_namespace_must_not_be_the_release_namespace_when_created() -> None:
    with pytest.raises(helm.HelmError, match="must differ"):
        render({"runs": {"namespace": "controlplane"}})
    assert manifests({"runs": {"namespace": "controlplane", "createNamespace": False}})


def test_lint_is_clean() -> None:
    for values in ({}, FULL):
        report = helm.lint(CHART, values, strict=True, kube_version="v1.28.0")
        assert not report["errors"], report
        assert not [m for m in report["messages"] if m["severity"] >= 2], report


def _load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def test_monitoring_objects() -> None:
    """ServiceMonitor and PrometheusRule (CRDs, no shipped schema): their structure, checked here."""
    docs = manifests(FULL)
    service = one(docs, "Service")
    monitor = one(docs, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]} and endpoint["port"] == "metrics"
    assert endpoint["path"] == "/metrics" and endpoint["interval"] == "15s"
    assert endpoint["authorization"] == {"type": "Bearer", "credentials": {"name": "cp-metrics", "key": "t"}}

    rule = one(docs, "PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus"
    assert set(rule["spec"]) == {"groups"}
    assert rule["spec"] == _load(ROOT / "monitoring" / "prometheus" / "controlplane-rules.yaml")
    for group in rule["spec"]["groups"]:
        assert group["name"] and group["rules"]
        for r in group["rules"]:
            assert r["expr"] and (("alert" in r) != ("record" in r)), r
            assert set(r) <= {"alert", "record", "expr", "for", "labels", "annotations"}, r

    dashboard = one(docs, "ConfigMap", "cp-controlplane-dashboard")
    assert dashboard["metadata"]["namespace"] == "monitoring"
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "yes"
    shipped = (ROOT / "monitoring" / "grafana" / "controlplane-dashboard.json").read_text()
    assert json.loads(dashboard["data"]["controlplane-dashboard.json"]) == json.loads(shipped)


def test_chart_copies_equal_the_monitoring_files() -> None:
    """Helm reads only files inside the chart: the copies there must stay byte-identical to monitoring/."""
    pairs = [
        ("monitoring/grafana/controlplane-dashboard.json", "controlplane-dashboard.json"),
        ("monitoring/prometheus/controlplane-rules.yaml", "controlplane-rules.yaml"),
    ]
    for source, copy_name in pairs:
        assert (CHART / "files" / copy_name).read_bytes() == (ROOT / source).read_bytes(), (
            f"charts/controlplane/files/{copy_name} differs from {source}: cp {source} charts/controlplane/files/"
        )
