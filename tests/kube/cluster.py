"""A real Kubernetes control plane on loopback for the integration tests: etcd, kube-apiserver and
kube-controller-manager, built by scripts/ensure-kube-apiserver.sh (Kubernetes 1.20 from Debian's source).

``ControlPlane.start(bin_dir, workdir)`` generates a CA and a serving certificate (Python cryptography), a
service-account signing key and a static token file, starts the three processes on free loopback ports,
waits for /readyz and for the controllers to act (the ``default`` ServiceAccount appears), and writes
kubeconfigs. ``stop()`` ends them (and is safe to call twice). Their logs stay in the work directory and
their tails are shown when something does not come up.

There is no scheduler and no kubelet: the Job controller creates pods that stay unscheduled, and the tests
play the node by patching pod status (see ``node.py``). Admission runs the usual plugins (NamespaceLifecycle,
ServiceAccount, LimitRanger, ResourceQuota, ...), authorization is RBAC, and the TTLAfterFinished feature
gate (alpha in 1.20) is on, so ``ttlSecondsAfterFinished`` is kept and enforced.
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

ADMIN_TOKEN = "cp-kube-admin-token"  # a throwaway cluster on loopback
CONTROLLER_TOKEN = "cp-kube-controller-manager-token"
BACKEND_TOKEN = "cp-kube-backend-token"  # user controlplane-backend: only what RBAC grants it
BACKEND_USER = "controlplane-backend"
SERVICE_RANGE = "10.96.0.0/24"  # allocated by the API server only: nothing routes it
ADMISSION = (
    "NamespaceLifecycle,LimitRanger,ServiceAccount,DefaultStorageClass,DefaultTolerationSeconds,"
    "Priority,RuntimeClass,ResourceQuota,MutatingAdmissionWebhook,ValidatingAdmissionWebhook"
)
FEATURES = "TTLAfterFinished=true"
CONTROLLERS = "job,ttl-after-finished,garbagecollector,namespace,serviceaccount,serviceaccount-token,resourcequota"
START_SECONDS = 120
# the audit log records the bodies of Job deletions (which propagation policy the backend asked for)
AUDIT_POLICY = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    "omitStages": ["RequestReceived"],
    "rules": [
        {"level": "Request", "verbs": ["delete"], "resources": [{"group": "batch", "resources": ["jobs"]}]},
        {"level": "None"},
    ],
}
# util-linux's setpriv sets PR_SET_PDEATHSIG before exec: the servers get SIGTERM when the test process
# dies, however it dies, so a killed test run leaves no etcd or API server behind
DIE_WITH_PARENT = ["setpriv", "--pdeathsig", "TERM", "--"] if shutil.which("setpriv") else []


class ControlPlaneError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _certificate(
    subject: str, key: ec.EllipticCurvePrivateKey, *, issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer[0].subject if issuer else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
    )
    if issuer is None:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        return builder.sign(key, hashes.SHA256())
    sans: list[x509.GeneralName] = [
        x509.DNSName(n) for n in ("localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc")
    ]
    sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ("127.0.0.1", "10.96.0.1")]
    builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    builder = builder.add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    return builder.sign(issuer[1], hashes.SHA256())


def write_pki(d: Path) -> None:
    """ca.crt, server.crt/key (127.0.0.1 and the in-cluster names), sa.key/sa.pub, tokens.csv."""
    d.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _certificate("controlplane-test-ca", ca_key, issuer=None)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _certificate("kube-apiserver", key, issuer=(ca, ca_key))
    sa = ec.generate_private_key(ec.SECP256R1())
    (d / "ca.crt").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (d / "server.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (d / "server.key").write_bytes(_pem_key(key))
    (d / "sa.key").write_bytes(_pem_key(sa))
    pub = sa.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    (d / "sa.pub").write_bytes(pub)
    (d / "tokens.csv").write_text(
        f'{ADMIN_TOKEN},cp-admin,1,"system:masters"\n'
        f"{CONTROLLER_TOKEN},system:kube-controller-manager,2\n"
        f"{BACKEND_TOKEN},{BACKEND_USER},3\n"
    )
    (d / "audit-policy.json").write_text(json.dumps(AUDIT_POLICY))
    for secret in ("server.key", "sa.key", "tokens.csv"):
        (d / secret).chmod(0o600)


def kubeconfig(server: str, ca_file: Path, token: str, *, user: str) -> str:
    ca = base64.b64encode(ca_file.read_bytes()).decode()
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "loopback", "cluster": {"server": server, "certificate-authority-data": ca}}],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": user, "context": {"cluster": "loopback", "user": user}}],
        "current-context": user,
    }
    return json.dumps(doc, indent=2)  # JSON is YAML


@dataclass
class ControlPlane:
    bin_dir: Path
    workdir: Path
    server: str = ""
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def ca_file(self) -> Path:
        return self.workdir / "pki" / "ca.crt"

    @property
    def admin_kubeconfig(self) -> Path:
        return self.workdir / "admin.kubeconfig"

    def client(self, token: str = ADMIN_TOKEN) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"}
        return httpx.Client(
            base_url=self.server, verify=ssl.create_default_context(cafile=self.ca_file), headers=headers, timeout=30
        )

    @property
    def audit_log(self) -> Path:
        return self.workdir / "audit.log"

    def audit_events(self) -> list[dict[str, Any]]:
        """The API server's audit events so far (Job deletions, with their request bodies)."""
        if not self.audit_log.exists():
            return []
        return [json.loads(line) for line in self.audit_log.read_text().splitlines() if line.strip()]

    def user_kubeconfig(self, name: str, token: str) -> Path:
        path = self.workdir / f"{name}.kubeconfig"
        path.write_text(kubeconfig(self.server, self.ca_file, token, user=name))
        return path

    def _spawn(self, name: str, args: list[str]) -> None:
        log = (self.workdir / f"{name}.log").open("ab")
        self.procs[name] = subprocess.Popen(
            [*DIE_WITH_PARENT, str(self.bin_dir / name), *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()

    def _tail(self, name: str, lines: int = 30) -> str:
        path = self.workdir / f"{name}.log"
        text = path.read_text(errors="replace").splitlines()[-lines:] if path.exists() else []
        return f"--- {path} (last {lines} lines) ---\n" + "\n".join(text)

    def _wait(self, what: str, name: str, ready: Callable[[], bool]) -> None:
        deadline = time.monotonic() + START_SECONDS
        last: object = None
        while time.monotonic() < deadline:
            proc = self.procs[name]
            if proc.poll() is not None:
                raise ControlPlaneError(f"{name} exited with {proc.returncode} before {what}\n{self._tail(name)}")
            try:
                if ready():
                    return
            except (httpx.HTTPError, OSError) as exc:
                last = exc
            time.sleep(0.5)
        raise ControlPlaneError(f"{name}: no {what} within {START_SECONDS}s ({last!r})\n{self._tail(name)}")

    def start(self) -> ControlPlane:
        pki = self.workdir / "pki"
        write_pki(pki)
        etcd_port, peer_port, api_port = free_port(), free_port(), free_port()
        etcd_url = f"http://127.0.0.1:{etcd_port}"
        self._spawn(
            "etcd",
            [
                f"--data-dir={self.workdir / 'etcd'}",
                f"--listen-client-urls={etcd_url}",
                f"--advertise-client-urls={etcd_url}",
                f"--listen-peer-urls=http://127.0.0.1:{peer_port}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}",
                f"--initial-cluster=default=http://127.0.0.1:{peer_port}",
                "--log-level=warn",
                "--logger=zap",
            ],
        )
        self._wait("health", "etcd", lambda: httpx.get(f"{etcd_url}/health", timeout=2).json().get("health") == "true")
        self.server = f"https://127.0.0.1:{api_port}"
        self._spawn(
            "kube-apiserver",
            [
                f"--etcd-servers={etcd_url}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={api_port}",
                "--insecure-port=0",
                f"--cert-dir={pki}",
                f"--tls-cert-file={pki / 'server.crt'}",
                f"--tls-private-key-file={pki / 'server.key'}",
                f"--client-ca-file={pki / 'ca.crt'}",
                f"--token-auth-file={pki / 'tokens.csv'}",
                "--authorization-mode=RBAC",
                "--anonymous-auth=false",
                f"--service-account-key-file={pki / 'sa.pub'}",
                f"--service-account-signing-key-file={pki / 'sa.key'}",
                "--service-account-issuer=https://kubernetes.default.svc",
                "--api-audiences=https://kubernetes.default.svc",
                f"--service-cluster-ip-range={SERVICE_RANGE}",
                "--endpoint-reconciler-type=none",  # endpoints may not hold a loopback address
                f"--enable-admission-plugins={ADMISSION}",
                f"--feature-gates={FEATURES}",
                "--allow-privileged=false",
                "--profiling=false",
                f"--audit-policy-file={pki / 'audit-policy.json'}",
                f"--audit-log-path={self.audit_log}",
                "--audit-log-mode=blocking",
                "--v=1",
            ],
        )
        admin = self.client()
        try:
            self._wait("/readyz", "kube-apiserver", lambda: admin.get("/readyz").status_code == 200)
            self.admin_kubeconfig.write_text(kubeconfig(self.server, self.ca_file, ADMIN_TOKEN, user="cp-admin"))
            cm_config = self.user_kubeconfig("kube-controller-manager", CONTROLLER_TOKEN)
            self._spawn(
                "kube-controller-manager",
                [
                    f"--kubeconfig={cm_config}",
                    f"--controllers={CONTROLLERS}",
                    f"--feature-gates={FEATURES}",
                    f"--service-account-private-key-file={pki / 'sa.key'}",
                    f"--root-ca-file={pki / 'ca.crt'}",
                    "--use-service-account-credentials=true",  # each controller as its own RBAC identity
                    "--leader-elect=false",
                    "--port=0",
                    "--secure-port=0",
                    "--concurrent-gc-syncs=5",
                    "--v=1",
                ],
            )
            sa = "/api/v1/namespaces/default/serviceaccounts/default"
            self._wait("default ServiceAccount", "kube-controller-manager", lambda: admin.get(sa).status_code == 200)
        finally:
            admin.close()
        return self

    def stop(self) -> None:
        for name in ("kube-controller-manager", "kube-apiserver", "etcd"):
            proc = self.procs.pop(name, None)
            if proc is None or proc.poll() is not None:
                continue
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(15)
