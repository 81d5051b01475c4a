"""What the chart grants and forbids: the restricted pod security of the control plane, a Role limited to
what the Job backend needs in the runs namespace only, a Pod Security "restricted" runs namespace, and
NetworkPolicies that leave run pods no network unless their automation asked for egress or the API."""

from __future__ import annotations

import base64
import ipaddress
from typing import Any

from cryptography.fernet import Fernet

from tests.chart.helm import manifests, one, render

MANAGED = {"io.controlplane.managed": "true"}
PRIVATE = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16", "127.0.0.0/8"]


def _pod(docs: list[dict[str, Any]]) -> dict[str, Any]:
    spec: dict[str, Any] = one(docs, "Deployment")["spec"]["template"]["spec"]
    return spec


def test_deployment_is_restricted_and_probed() -> None:
    docs = manifests()
    deployment = one(docs, "Deployment")
    assert deployment["spec"]["replicas"] == 2
    pod = _pod(docs)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = pod["containers"]
    sc = container["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"] == {"drop": ["ALL"]} and sc["runAsNonRoot"] is True
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["image"] == "controlplane:0.1.0"  # no registry host in the defaults
    assert container["imagePullPolicy"] == "IfNotPresent"
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["resources"]["limits"]["memory"] == "1Gi"
    # writable places are emptyDirs with a size limit: the data directory and /tmp
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert set(mounts) == {"/data", "/tmp"}
    assert all("sizeLimit" in volumes[name]["emptyDir"] for name in mounts.values())
    # settings from the ConfigMap, the database URL only from the existing Secret
    assert container["envFrom"] == [{"configMapRef": {"name": "cp-controlplane-config"}}]
    (db,) = [e for e in container["env"] if e["name"] == "CP_DATABASE_URL"]
    assert db["valueFrom"] == {"secretKeyRef": {"name": "controlplane-database", "key": "url"}}
    assert "CP_DATABASE_URL" not in one(docs, "ConfigMap", "cp-controlplane-config")["data"]
    assert pod["serviceAccountName"] == "cp-controlplane"
    # a settings change rolls the pods
    assert "checksum/config" in deployment["spec"]["template"]["metadata"]["annotations"]
    assert one(docs, "PodDisruptionBudget")["spec"]["minAvailable"] == 1


def test_replicas_share_generated_keys_or_an_existing_secret() -> None:
    """Each replica has its own emptyDir: without shared keys one replica could not read the tenant secrets
    another stored, nor check the export URLs another signed."""
    docs = manifests()
    secret = one(docs, "Secret", "cp-controlplane-keys")
    assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    Fernet(base64.b64decode(secret["data"]["secrets-keys"]))  # a valid Fernet key
    assert len(base64.b64decode(secret["data"]["signing-key"])) >= 32
    env = {e["name"]: e for e in _pod(docs)["containers"][0]["env"]}
    assert env["CP_SIGNING_KEY"]["valueFrom"] == {
        "secretKeyRef": {"name": "cp-controlplane-keys", "key": "signing-key"}
    }
    assert env["CP_SECRETS_KEYS"]["valueFrom"] == {
        "secretKeyRef": {"name": "cp-controlplane-keys", "key": "secrets-keys"}
    }
    given = manifests({"keys": {"existingSecret": "our-keys"}})
    assert not [d for d in given if d["kind"] == "Secret"]
    env = {e["name"]: e for e in _pod(given)["containers"][0]["env"]}
    assert env["CP_SECRETS_KEYS"]["valueFrom"]["secretKeyRef"]["name"] == "our-keys"


def test_config_change_changes_the_checksum() -> None:
    a = one(manifests(), "Deployment")["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
    b = one(manifests({"config": {"CP_LOG_LEVEL": "debug"}}), "Deployment")["spec"]["template"]["metadata"]
    assert b["annotations"]["checksum/config"] != a


def test_secret_env_and_service_account_choices() -> None:
    values = {
        "serviceAccount": {"create": False, "name": "given"},
        "secretEnv": [{"name": "CP_BOOTSTRAP_TOKEN", "secret": "admin", "key": "token"}],
        "image": {"repository": "reg.internal/cp", "tag": "9.9"},
    }
    docs = manifests(values)
    assert not [d for d in docs if d["kind"] == "ServiceAccount"]
    pod = _pod(docs)
    assert pod["serviceAccountName"] == "given"
    assert one(docs, "RoleBinding")["subjects"] == [
        {"kind": "ServiceAccount", "name": "given", "namespace": "controlplane"}
    ]
    env = {e["name"]: e for e in pod["containers"][0]["env"]}
    assert env["CP_BOOTSTRAP_TOKEN"]["valueFrom"] == {"secretKeyRef": {"name": "admin", "key": "token"}}
    assert pod["containers"][0]["image"] == "reg.internal/cp:9.9"


def _granted(role: dict[str, Any]) -> dict[tuple[str, str], list[str]]:
    return {
        (group, resource): sorted(rule["verbs"])
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
    }


def test_role_is_only_what_the_backend_needs_in_the_runs_namespace() -> None:
    docs = manifests()
    role, binding = one(docs, "Role"), one(docs, "RoleBinding")
    assert role["metadata"]["namespace"] == binding["metadata"]["namespace"] == "controlplane-runs"
    assert _granted(role) == {
        ("batch", "jobs"): ["create", "delete", "get", "list", "watch"],
        ("", "pods"): ["get", "list", "watch"],
        ("", "pods/log"): ["get"],
        ("", "secrets"): ["create", "delete", "get"],  # the default bundle kind, which the chart sets
        ("", "events"): ["list", "watch"],
    }
    assert one(docs, "ConfigMap", "cp-controlplane-config")["data"]["CP_K8S_BUNDLE_KIND"] == "Secret"
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": role["metadata"]["name"],
    }
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "cp-controlplane", "namespace": "controlplane"}]
    assert not [d for d in docs if d["kind"] in {"ClusterRole", "ClusterRoleBinding"}]


def test_a_configmap_bundle_kind_is_granted_instead_of_secrets() -> None:
    docs = manifests({"config": {"CP_K8S_BUNDLE_KIND": "ConfigMap"}})
    granted = _granted(one(docs, "Role"))
    assert granted[("", "configmaps")] == ["create", "delete", "get"]
    assert ("", "secrets") not in granted
    assert one(docs, "ConfigMap", "cp-controlplane-config")["data"]["CP_K8S_BUNDLE_KIND"] == "ConfigMap"


def test_runs_namespace_enforces_restricted() -> None:
    ns = one(manifests(), "Namespace")
    assert ns["metadata"]["name"] == "controlplane-runs"
    labels = ns["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    assert labels["pod-security.kubernetes.io/warn"] == "restricted"
    assert not [d for d in manifests({"runs": {"createNamespace": False}}) if d["kind"] == "Namespace"]


def _policies(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {
        d["metadata"]["name"].removeprefix("cp-controlplane-runs-"): d for d in docs if d["kind"] == "NetworkPolicy"
    }


def test_run_pods_default_deny() -> None:
    policies = _policies(manifests())
    assert set(policies) == {"default-deny", "egress", "api"}
    assert all(p["metadata"]["namespace"] == "controlplane-runs" for p in policies.values())
    deny = policies["default-deny"]["spec"]
    assert deny["podSelector"] == {"matchLabels": MANAGED}
    assert sorted(deny["policyTypes"]) == ["Egress", "Ingress"]
    assert "egress" not in deny and "ingress" not in deny  # nothing allowed


def test_egress_opt_in_reaches_the_internet_but_not_private_ranges_or_metadata() -> None:
    spec = _policies(manifests())["egress"]["spec"]
    assert spec["podSelector"] == {"matchLabels": {**MANAGED, "io.controlplane.network": "egress"}}
    assert spec["policyTypes"] == ["Egress"] and "ingress" not in spec
    blocks = [peer["ipBlock"] for rule in spec["egress"] for peer in rule["to"] if "ipBlock" in peer]
    assert blocks == [{"cidr": "0.0.0.0/0", "except": [*PRIVATE[:4], "100.64.0.0/10", "127.0.0.0/8"]}]
    metadata = ipaddress.ip_address("169.254.169.254")
    assert any(metadata in ipaddress.ip_network(c) for c in blocks[0]["except"])
    dns = [rule for rule in spec["egress"] if any("podSelector" in p for p in rule["to"])]
    assert dns and {p["port"] for p in dns[0]["ports"]} == {53}


def test_api_opt_in_reaches_only_the_control_plane_port() -> None:
    docs = manifests()
    spec = _policies(docs)["api"]["spec"]
    assert spec["podSelector"] == {"matchLabels": {**MANAGED, "io.controlplane.network": "api"}}
    to_api, to_dns = spec["egress"]
    (peer,) = to_api["to"]
    assert peer["namespaceSelector"] == {"matchLabels": {"kubernetes.io/metadata.name": "controlplane"}}
    pod_labels = one(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert peer["podSelector"]["matchLabels"].items() <= pod_labels.items()
    assert to_api["ports"] == [{"protocol": "TCP", "port": 8080}]
    container_ports = {p["containerPort"] for p in _pod(docs)["containers"][0]["ports"]}
    assert 8080 in container_ports
    assert not any("ipBlock" in p for rule in spec["egress"] for p in rule["to"])
    assert to_dns["to"][0]["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "kube-system"}


def test_dns_can_be_turned_off_and_policies_off() -> None:
    policies = _policies(manifests({"networkPolicy": {"dns": {"enabled": False}}}))
    assert len(policies["api"]["spec"]["egress"]) == 1
    assert len(policies["egress"]["spec"]["egress"]) == 1
    assert not _policies(manifests({"networkPolicy": {"enabled": False}}))


def test_notes_tell_how_to_start() -> None:
    notes = render()["controlplane/templates/NOTES.txt"]
    assert "create secret generic controlplane-database" in notes
    assert "port-forward svc/cp-controlplane" in notes
    assert "runs go to namespace controlplane-runs" in notes
