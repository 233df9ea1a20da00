"""deploy/kubernetes read as files: what every pod promises (restricted Pod Security, probes), one producer per
mailbox, secrets only referenced, and only settings and commands that exist. The API server's own verdict on the
built overlay is tests/integration/k8s_real/test_manifests_real.py."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.unit.deploy.deploy_checks import command_problem, env_problem

ROOT = Path(__file__).resolve().parents[3]
K8S = ROOT / "deploy" / "kubernetes"
EXAMPLE = K8S / "overlays" / "example"
#: What a Secret's value may be in a file of this repository: nothing, or an obvious placeholder.
PLACEHOLDER = re.compile(r"^(|<[^>]*>|\$\{[A-Z0-9_]+\}|REPLACE_ME|CHANGE_ME)$")
SECRET_WORDS = ("TOKEN", "KEY", "PASSWORD", "SECRET")


def _docs(*roots: Path) -> list[dict[str, Any]]:
    files = sorted(p for root in roots for p in [*root.rglob("*.yaml"), *root.rglob("*.yml")])
    return [d for f in files for d in yaml.safe_load_all(f.read_text()) if isinstance(d, dict)]


def _workloads() -> list[dict[str, Any]]:
    return [d for d in _docs(K8S) if d.get("kind") in ("Deployment", "StatefulSet")]


def _mailboxes() -> dict[str, dict[str, Any]]:
    return {p.parent.name: yaml.safe_load(p.read_text())
            for p in sorted((EXAMPLE / "mailboxes").glob("*/kustomization.yaml"))}


def test_no_file_under_deploy_holds_a_secret_value() -> None:
    docs = _docs(ROOT / "deploy")
    for secret in (d for d in docs if d.get("kind") == "Secret"):
        values = {**(secret.get("data") or {}), **(secret.get("stringData") or {})}
        assert [k for k, v in values.items() if not PLACEHOLDER.match(str(v))] == [], secret["metadata"]["name"]
    for kustomization in (d for d in docs if d.get("kind") in ("Kustomization", "Component")):
        for generator in kustomization.get("secretGenerator") or []:
            assert not (generator.get("literals") or generator.get("files") or generator.get("envs")), generator
        for generator in kustomization.get("configMapGenerator") or []:
            keys = [lit.split("=", 1)[0] for lit in generator.get("literals") or []]
            assert [k for k in keys if any(w in k.upper() for w in SECRET_WORDS)] == [], generator["name"]
    for config_map in (d for d in docs if d.get("kind") == "ConfigMap"):
        assert [k for k in config_map.get("data") or {} if any(w in k.upper() for w in SECRET_WORDS)] == []
    for workload in _workloads():
        for container in workload["spec"]["template"]["spec"]["containers"]:
            literal = [e["name"] for e in container.get("env", []) if "value" in e
                       and any(w in e["name"].upper() for w in SECRET_WORDS)]
            assert literal == [], f"{workload['metadata']['name']}: {literal} must come from a Secret"


def test_the_namespace_enforces_the_restricted_pod_security_standard() -> None:
    namespace = next(d for d in _docs(K8S / "base") if d["kind"] == "Namespace" and d["metadata"]["name"] == "rcaflow")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


@pytest.mark.parametrize("workload", _workloads(), ids=lambda w: w["metadata"]["name"])
def test_every_pod_is_locked_down_and_probed(workload: dict[str, Any]) -> None:
    pod = workload["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    for container in [*pod.get("initContainers", []), *pod["containers"]]:
        context = container["securityContext"]
        assert context["allowPrivilegeEscalation"] is False
        assert context["readOnlyRootFilesystem"] is True
        assert context["capabilities"] == {"drop": ["ALL"]}
        ports = {p["name"] for p in container.get("ports", [])}
        for probe in ("livenessProbe", "readinessProbe"):
            assert container[probe]["httpGet"]["port"] in ports, f"{container['name']}: {probe}"
    volumes = {v["name"] for v in pod.get("volumes", [])} | {
        c["metadata"]["name"] for c in workload["spec"].get("volumeClaimTemplates", [])}
    for container in pod["containers"]:
        assert {m["name"] for m in container.get("volumeMounts", [])} <= volumes
        assert "/tmp" in {m["mountPath"] for m in container.get("volumeMounts", [])}


@pytest.mark.parametrize("workload", _workloads(), ids=lambda w: w["metadata"]["name"])
def test_every_container_runs_a_real_command_with_real_settings(workload: dict[str, Any]) -> None:
    for container in workload["spec"]["template"]["spec"]["containers"]:
        args = [a.replace("$(MAILBOX)", "alerts") for a in container["args"]]
        assert command_problem(args) is None
        names = [e["name"] for e in container.get("env", []) if e["name"] != "MAILBOX"]
        assert [p for n in names if (p := env_problem(n))] == []


def test_the_shared_configuration_names_only_settings() -> None:
    config = next(d for d in _docs(K8S / "base")
                  if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "rcaflow-config")
    assert [p for name in config["data"] if (p := env_problem(name))] == []


def test_a_rollout_never_puts_two_executor_versions_in_one_consumer_group() -> None:
    """Recreate: every old executor stops before a new one starts. Eager (before) and cooperative-sticky (now)
    members cannot share a group (no common rebalance protocol), so a rolling update would leave the new pods
    unable to join while an old one runs (docs/upgrading.md)."""
    executor = next(w for w in _workloads() if w["metadata"]["name"] == "rcaflow-executor")
    assert executor["kind"] == "Deployment"
    assert executor["spec"]["strategy"] == {"type": "Recreate"}

def test_one_producer_per_mailbox_that_never_overlaps_itself() -> None:
    """replicas 1 and Recreate: a rollout stops the old pod before the new one opens an IDLE session."""
    ingest = next(w for w in _workloads() if w["metadata"]["name"] == "rcaflow-ingest-imap")
    assert ingest["kind"] == "Deployment"
    assert ingest["spec"]["replicas"] == 1
    assert ingest["spec"]["strategy"] == {"type": "Recreate"}
    pod = ingest["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False  # no Kubernetes API for a mail reader
    container = pod["containers"][0]
    assert container["args"][container["args"].index("--mailbox") + 1] == "$(MAILBOX)"
    mailbox_env = next(e for e in container["env"] if e["name"] == "MAILBOX")
    assert mailbox_env["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.labels['rcaflow.io/mailbox']"


def test_each_mailbox_of_the_example_names_itself_consistently() -> None:
    mailboxes = _mailboxes()
    assert len(mailboxes) >= 2
    overlay = yaml.safe_load((EXAMPLE / "kustomization.yaml").read_text())
    for name, kustomization in mailboxes.items():
        assert f"mailboxes/{name}" in overlay["resources"]
        assert kustomization["namespace"] == "rcaflow"
        assert kustomization["nameSuffix"] == f"-{name}"
        assert kustomization["labels"] == [{"pairs": {"rcaflow.io/mailbox": name}, "includeSelectors": True}]
        literals = [lit.split("=", 1)[0] for g in kustomization["configMapGenerator"] for lit in g["literals"]]
        assert literals and all(k.startswith(f"RCAFLOW_MAILBOXES__{name}__") for k in literals)
        assert [p for k in literals if (p := env_problem(k))] == []
        assert f"value: rcaflow-mailbox-{name}" in kustomization["patches"][0]["patch"]


def test_every_role_has_a_disruption_budget() -> None:
    budgets = {d["metadata"]["name"]: d["spec"] for d in _docs(K8S / "base") if d["kind"] == "PodDisruptionBudget"}
    assert set(budgets) == {"rcaflow-api", "rcaflow-worker", "rcaflow-executor"}
    assert budgets["rcaflow-api"]["minAvailable"] == 1  # of 2 replicas
    for name in ("rcaflow-worker", "rcaflow-executor"):  # single replicas: a drain may move them
        assert budgets[name]["maxUnavailable"] == 1
