"""deploy/kubernetes/base/rbac.yaml grants exactly what rcaflow's operations declare they need: no verb more, none less.

The API server's own answer to the same question (SelfSubjectAccessReview as the executor's ServiceAccount)
is in tests/integration/k8s_real/test_manifests_real.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from executors.tools.k8s_rbac import evidence_permissions, executor_operations, executor_permissions, from_rules
from policies.loader import load_policies

ROOT = Path(__file__).resolve().parents[3]


def _cluster_role(name: str) -> dict[str, Any]:
    docs = [d for d in yaml.safe_load_all((ROOT / "deploy" / "kubernetes" / "base" / "rbac.yaml").read_text()) if d]
    return next(d for d in docs if d["kind"] == "ClusterRole" and d["metadata"]["name"] == name)


def _policy_actions() -> list[tuple[str, str]]:
    return [(a.tool, a.operation) for c in load_policies().document.classes for a in c.actions]


def test_the_executor_role_is_the_union_of_what_the_policys_operations_need() -> None:
    role = _cluster_role("rcaflow-executor")
    assert from_rules(role["rules"]) == executor_permissions(_policy_actions())


def test_the_executor_may_undo_what_it_did() -> None:
    operations = executor_operations(_policy_actions())
    assert {"k8s.undo_restart", "k8s.remove_pod_annotation"} <= operations
    assert not any(name.startswith(("http.", "alertmanager.")) for name in operations)


def test_the_evidence_role_only_reads() -> None:
    granted = from_rules(_cluster_role("rcaflow-evidence")["rules"])
    assert granted == evidence_permissions()
    assert {p.verb for p in granted} <= {"get", "list"}


def test_no_role_uses_wildcards_or_touches_secrets() -> None:
    for name in ("rcaflow-executor", "rcaflow-evidence"):
        for rule in _cluster_role(name)["rules"]:
            for key in ("apiGroups", "resources", "verbs"):
                assert "*" not in rule[key], f"{name}: {rule}"
            assert "secrets" not in rule["resources"]


def test_roles_are_only_granted_per_namespace() -> None:
    docs = [d for f in sorted((ROOT / "deploy" / "kubernetes").rglob("*.yaml"))
            for d in yaml.safe_load_all(f.read_text()) if d]
    assert not [d for d in docs if d["kind"] == "ClusterRoleBinding"]
    bindings = [d for d in docs if d["kind"] == "RoleBinding"]
    assert bindings and all(d["metadata"]["namespace"] != "rcaflow" for d in bindings)
