"""A real Kubernetes control plane on loopback for the k8s_real tests: etcd, kube-apiserver, kube-controller-manager,
kube-scheduler and kwok (fake nodes and kubelets, so pods become Ready and rollouts complete).

The binaries come from ``tests/support/k8s/build.sh`` (a version-stamped cache under ~/.cache/rcaflow). Everything
a run writes (certificates, etcd data, logs, kubeconfig) is in one temporary folder; every port is a free loopback
port; every process is started here and stopped here by its own pid.

Authentication is what a cluster does: the API server's certificate is signed by a CA made for the run; people
are static bearer tokens (``admin`` in system:masters, ``nobody`` with no rights at all); ServiceAccount tokens are
real signed JWTs from the TokenRequest API, authorised by RBAC.

Run by hand: ``python -m tests.support.k8s.cluster`` starts one, prints its kubeconfig and waits for Ctrl-C.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

logger = logging.getLogger(__name__)

K8S_VERSION = "1.37.2"
KWOK_VERSION = "0.8.0"
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok", "kubectl")
BUILD_SCRIPT = Path(__file__).with_name("build.sh")
#: The node kwok plays the kubelet of; pods are scheduled onto it.
NODE = "kwok-node-0"
#: Every container on a kwok node serves this log (kwok's ClusterLogs); CRI log format.
POD_LOG_LINES = ("rcaflow k8s_real: starting", "cannot parse rules file /etc/rules/a.yaml: line 3",
                 "cannot parse rules file /etc/rules/a.yaml: line 3", "ready")

T = TypeVar("T")


class ClusterError(RuntimeError):
    """The control plane did not come up; the message carries the tail of the failing component's log."""


def cache_dir() -> Path:
    root = Path(os.environ.get("RCAFLOW_CACHE", Path.home() / ".cache" / "rcaflow"))
    return root / f"k8s-v{K8S_VERSION}"


def bin_dir() -> Path:
    return Path(os.environ.get("RCAFLOW_K8S_BIN", cache_dir() / "bin"))


def missing_binaries() -> list[str]:
    """The components that are not built (or built for another version)."""
    missing = []
    for name in COMPONENTS:
        want = f"v{KWOK_VERSION}" if name == "kwok" else f"v{K8S_VERSION}"
        path, stamp = bin_dir() / name, bin_dir() / f".{name}.version"
        if not os.access(path, os.X_OK) or (stamp.exists() and stamp.read_text().strip() != want):
            missing.append(name)
    if not (cache_dir() / "stages-fast.yaml").is_file() and "RCAFLOW_K8S_BIN" not in os.environ:
        missing.append("stages-fast.yaml")
    return missing


def _free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _wait(what: str, probe: Callable[[], T | None], timeout_s: float, alive: Callable[[], None],
          every_s: float = 0.1) -> T:
    deadline = time.monotonic() + timeout_s
    while True:
        alive()
        result = probe()
        if result:
            return result
        if time.monotonic() > deadline:
            raise ClusterError(f"{what}: not ready within {timeout_s:g} s")
        time.sleep(every_s)


# ----------------------------------------------------------------------------- certificates


def _write_pki(pki: Path) -> None:
    """A CA for the run, the API server's serving certificate (127.0.0.1, localhost) and the SA signing key."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    def key() -> rsa.RSAPrivateKey:
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def pem_key(k: rsa.RSAPrivateKey) -> bytes:
        return k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                               serialization.NoEncryption())

    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    ca_key = key()
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "rcaflow-k8s-real-ca")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now)
          .not_valid_after(now + dt.timedelta(days=2))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    server_key = key()
    sans = [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost"),
            x509.DNSName("kubernetes"), x509.DNSName("kubernetes.default"), x509.DNSName("kubernetes.default.svc")]
    server = (x509.CertificateBuilder()
              .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]))
              .issuer_name(ca_name).public_key(server_key.public_key()).serial_number(x509.random_serial_number())
              .not_valid_before(now).not_valid_after(now + dt.timedelta(days=2))
              .add_extension(x509.SubjectAlternativeName(sans), critical=False)
              .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
              .sign(ca_key, hashes.SHA256()))
    sa_key = key()
    (pki / "ca.crt").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (pki / "ca.key").write_bytes(pem_key(ca_key))
    (pki / "apiserver.crt").write_bytes(server.public_bytes(serialization.Encoding.PEM))
    (pki / "apiserver.key").write_bytes(pem_key(server_key))
    (pki / "sa.key").write_bytes(pem_key(sa_key))
    (pki / "sa.pub").write_bytes(sa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    for name in ("ca.key", "apiserver.key", "sa.key"):
        (pki / name).chmod(0o600)


# ----------------------------------------------------------------------------- the cluster


@dataclass
class K8sCluster:
    run_dir: Path
    server: str
    ca_file: Path
    admin_token: str
    nobody_token: str
    kubeconfig: Path
    #: Seconds from the start: pki, etcd, apiserver, all (controllers, node Ready, default ServiceAccount).
    timings: dict[str, float] = field(default_factory=dict)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    # ------------------------------------------------------------------ clients for the tests' own setup

    def sync_client(self, token: str | None = None) -> Any:
        """The official sync client as admin (or as ``token``), for arranging and inspecting objects."""
        from kubernetes import client

        configuration = client.Configuration()
        configuration.host = self.server
        configuration.ssl_ca_cert = str(self.ca_file)
        configuration.api_key = {"authorization": f"Bearer {token or self.admin_token}"}
        return client.ApiClient(configuration)

    def kubeconfig_for(self, token: str, path: Path, *, name: str = "user") -> Path:
        path.write_text(yaml.safe_dump(_kubeconfig(self.server, self.ca_file, {name: {"token": token}}, name)))
        return path

    def service_account_token(self, namespace: str, name: str, *, seconds: int = 3600) -> str:
        """A real, signed ServiceAccount token from the TokenRequest API (what a projected volume mounts)."""
        from kubernetes import client

        with self.sync_client() as api:
            request = client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(
                audiences=["https://kubernetes.default.svc"], expiration_seconds=seconds))
            answer = client.CoreV1Api(api).create_namespaced_service_account_token(name, namespace, request)
            return str(answer.status.token)

    def kubectl(self, *args: str, stdin: str | None = None, token: str | None = None) -> str:
        """Run the cached kubectl against this cluster (as admin, or as ``token``); its stdout, or AssertionError."""
        import subprocess as sp

        command = [str(bin_dir() / "kubectl"), f"--kubeconfig={self.kubeconfig}", *args]
        if token:
            command.insert(2, f"--token={token}")
        done = sp.run(command, input=stdin, capture_output=True, text=True, timeout=120, check=False)
        if done.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}")
        return done.stdout

    # ------------------------------------------------------------------ lifecycle

    def alive(self) -> None:
        for name, proc in self.processes.items():
            if proc.poll() is not None:
                raise ClusterError(f"{name} exited with code {proc.returncode}:\n{self.log_tail(name)}")

    def log_tail(self, name: str, lines: int = 30) -> str:
        path = self.run_dir / "logs" / f"{name}.log"
        if not path.exists():
            return "(no log)"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        """Stop what start() started, by pid, newest first: SIGTERM, then SIGKILL after 10 s."""
        for name, proc in reversed(list(self.processes.items())):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    logger.warning("k8s: %s ignored SIGTERM; killing pid %d", name, proc.pid)
                    proc.kill()
                    proc.wait(timeout=10)
        self.processes.clear()


def _kubeconfig(server: str, ca_file: Path, users: dict[str, dict[str, str]], current: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1", "kind": "Config", "current-context": current,
        "clusters": [{"name": "k8s-real", "cluster": {"server": server, "certificate-authority": str(ca_file)}}],
        "users": [{"name": name, "user": user} for name, user in users.items()],
        "contexts": [{"name": name, "context": {"cluster": "k8s-real", "user": name}} for name in users],
    }


def start(run_dir: Path | None = None, *, bins: Path | None = None) -> K8sCluster:
    """Start the control plane and wait until pods can be scheduled and become Ready. Call ``stop()`` after."""
    bins = bins or bin_dir()
    run_dir = run_dir or Path(tempfile.mkdtemp(prefix="rcaflow-k8s-"))
    started = time.monotonic()
    for sub in ("pki", "logs", "etcd"):
        (run_dir / sub).mkdir(parents=True, exist_ok=True)
    pki = run_dir / "pki"
    _write_pki(pki)
    etcd_port, etcd_peer, api_port, cm_port, sched_port, kwok_port = _free_ports(6)
    admin, nobody = secrets.token_hex(16), secrets.token_hex(16)
    (pki / "tokens.csv").write_text(f'{admin},admin,admin-uid,"system:masters"\n{nobody},nobody,nobody-uid,\n')
    (pki / "tokens.csv").chmod(0o600)
    server = f"https://127.0.0.1:{api_port}"
    kubeconfig = run_dir / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(_kubeconfig(server, pki / "ca.crt", {"admin": {"token": admin}}, "admin")))
    cluster = K8sCluster(run_dir=run_dir, server=server, ca_file=pki / "ca.crt", admin_token=admin,
                         nobody_token=nobody, kubeconfig=kubeconfig)
    cluster.timings["pki"] = time.monotonic() - started

    def launch(name: str, *args: str) -> None:
        log = (run_dir / "logs" / f"{name}.log").open("wb")
        cluster.processes[name] = subprocess.Popen(
            [str(bins / name), *args], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            cwd=run_dir, start_new_session=True)
        log.close()

    try:
        launch("etcd", "--name=k8s-real", f"--data-dir={run_dir / 'etcd'}",
               f"--listen-client-urls=http://127.0.0.1:{etcd_port}",
               f"--advertise-client-urls=http://127.0.0.1:{etcd_port}",
               f"--listen-peer-urls=http://127.0.0.1:{etcd_peer}",
               f"--initial-advertise-peer-urls=http://127.0.0.1:{etcd_peer}",
               f"--initial-cluster=k8s-real=http://127.0.0.1:{etcd_peer}", "--listen-metrics-urls=",
               "--unsafe-no-fsync=true", f"--quota-backend-bytes={512 * 1024 * 1024}", "--log-level=warn")
        _wait("etcd", lambda: _http_ok(f"http://127.0.0.1:{etcd_port}/health"), 30, cluster.alive)
        cluster.timings["etcd"] = time.monotonic() - started

        launch("kube-apiserver", f"--etcd-servers=http://127.0.0.1:{etcd_port}",
               "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", f"--secure-port={api_port}",
               f"--tls-cert-file={pki / 'apiserver.crt'}", f"--tls-private-key-file={pki / 'apiserver.key'}",
               f"--client-ca-file={pki / 'ca.crt'}", f"--token-auth-file={pki / 'tokens.csv'}",
               "--authorization-mode=RBAC",
               "--service-account-issuer=https://kubernetes.default.svc",
               f"--service-account-key-file={pki / 'sa.pub'}",
               f"--service-account-signing-key-file={pki / 'sa.key'}",
               "--service-cluster-ip-range=127.0.2.0/24", "--endpoint-reconciler-type=none",
               "--allow-privileged=true", "--profiling=false", f"--cert-dir={run_dir / 'apiserver-certs'}")
        context = ssl.create_default_context(cafile=str(pki / "ca.crt"))
        _wait("kube-apiserver", lambda: _http_ok(f"{server}/readyz", token=admin, context=context), 120,
              cluster.alive)
        cluster.timings["apiserver"] = time.monotonic() - started

        launch("kube-controller-manager", f"--kubeconfig={kubeconfig}", "--bind-address=127.0.0.1",
               f"--secure-port={cm_port}", "--leader-elect=false",
               f"--service-account-private-key-file={pki / 'sa.key'}", f"--root-ca-file={pki / 'ca.crt'}",
               "--use-service-account-credentials=false", "--authentication-skip-lookup=true")
        launch("kube-scheduler", f"--kubeconfig={kubeconfig}", "--bind-address=127.0.0.1",
               f"--secure-port={sched_port}", "--leader-elect=false", "--authentication-skip-lookup=true")
        pod_log = run_dir / "pod.log"
        stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        pod_log.write_text("".join(f"{stamp} stdout F {line}\n" for line in POD_LOG_LINES))
        (run_dir / "kwok-logs.yaml").write_text(yaml.safe_dump({
            "apiVersion": "kwok.x-k8s.io/v1alpha1", "kind": "ClusterLogs", "metadata": {"name": "all-pods"},
            "spec": {"logs": [{"logsFile": str(pod_log), "follow": False}]}}))
        stages = bins / "stages-fast.yaml" if (bins / "stages-fast.yaml").exists() else (
            cache_dir() / "stages-fast.yaml")
        launch("kwok", f"--config={stages}", f"--config={run_dir / 'kwok-logs.yaml'}",
               f"--kubeconfig={kubeconfig}", "--manage-all-nodes=false",
               "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
               "--node-ip=127.0.0.1", f"--node-port={kwok_port}", f"--server-address=127.0.0.1:{kwok_port}",
               "--cidr=127.0.1.0/24")
        _create_node(cluster)
        _wait("a Ready node and the default ServiceAccount", lambda: _schedulable(cluster), 120, cluster.alive,
              every_s=0.2)
        cluster.timings["ready"] = time.monotonic() - started
    except BaseException:
        cluster.stop()
        raise
    logger.info("k8s: control plane ready at %s in %.1f s (%s)", server, cluster.timings["ready"],
                ", ".join(f"{k} {v:.1f}s" for k, v in cluster.timings.items()))
    return cluster


def _http_ok(url: str, *, token: str | None = None, context: ssl.SSLContext | None = None) -> bool:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=2, context=context) as answer:
            return bool(answer.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _create_node(cluster: K8sCluster) -> None:
    from kubernetes import client

    with cluster.sync_client() as api:
        client.CoreV1Api(api).create_node(client.V1Node(metadata=client.V1ObjectMeta(
            name=NODE,
            annotations={"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
            labels={"kubernetes.io/hostname": NODE, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
                    "type": "kwok"})))


def _schedulable(cluster: K8sCluster) -> bool:
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    with cluster.sync_client() as api:
        core = client.CoreV1Api(api)
        try:
            node = core.read_node(NODE)
            core.read_namespaced_service_account("default", "default")
        except ApiException:
            return False
        return any(c.type == "Ready" and c.status == "True" for c in node.status.conditions or [])


def main() -> None:  # pragma: no cover - for a person at a terminal
    logging.basicConfig(level=logging.INFO)
    if missing := missing_binaries():
        raise SystemExit(f"not built: {', '.join(missing)}; run bash {BUILD_SCRIPT}")
    cluster = start()
    print(f"export KUBECONFIG={cluster.kubeconfig}\n# ready in {cluster.timings['ready']:.1f} s; Ctrl-C stops it")
    try:
        signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        cluster.stop()
        shutil.rmtree(cluster.run_dir, ignore_errors=True)


if __name__ == "__main__":  # pragma: no cover
    main()
