"""The RBAC rules rcaflow needs in a cluster, computed from what it can be asked to do.

Each Kubernetes operation declares its rules (``rbac`` on the executor and evidence classes). The
executor's Role is the union over the operations the policy file names for the ``k8s`` and
``diagnostics`` tools, and over the operations that only run as their rollbacks; the evidence Role is
the union over the read-only k8s evidence tools. ``deploy/kubernetes/base/rbac.yaml`` holds exactly these
(tests/unit/deploy check it; tests/integration/k8s_real ask the API server with SelfSubjectAccessReview).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from executors.tools.k8s_api import Permission

#: Operations that never appear in a policy but run as the rollback of one that does.
ROLLBACKS = {"k8s.rollout_restart": ("k8s.undo_restart",),
             "k8s.annotate_pod": ("k8s.annotate_pod", "k8s.remove_pod_annotation"),
             "k8s.scale": ("k8s.scale",)}
CLUSTER_TOOLS = ("k8s", "diagnostics")


def executor_operations(policy_actions: Iterable[tuple[str, str]]) -> set[str]:
    """``tool.operation`` names the executor may run in a cluster: the policy's own and their rollbacks."""
    names = {f"{tool}.{operation}" for tool, operation in policy_actions if tool in CLUSTER_TOOLS}
    return names | {undo for name in names for undo in ROLLBACKS.get(name, ())}


def executor_permissions(policy_actions: Iterable[tuple[str, str]]) -> frozenset[Permission]:
    from executors.registry import ToolRegistry

    registry = ToolRegistry()
    needed: set[Permission] = set()
    for name in executor_operations(policy_actions):
        needed |= getattr(registry.executor_class(name), "rbac", frozenset())
    return frozenset(needed)


def evidence_permissions() -> frozenset[Permission]:
    from executors.evidence.k8s import Describe, Events, Logs, Owners, Pods

    return frozenset().union(*(tool.rbac for tool in (Pods, Events, Logs, Owners, Describe)))


def as_rules(needed: Iterable[Permission]) -> list[dict[str, Any]]:
    """RBAC ``rules``: one per API group and verb set, resources sorted (how rbac.yaml is written)."""
    verbs: dict[tuple[str, str], set[str]] = defaultdict(set)
    for p in needed:
        verbs[(p.group, p.resource)].add(p.verb)
    grouped: dict[tuple[str, tuple[str, ...]], list[str]] = defaultdict(list)
    for (group, resource), vs in verbs.items():
        grouped[(group, tuple(sorted(vs)))].append(resource)
    return [{"apiGroups": [group], "resources": sorted(resources), "verbs": list(vs)}
            for (group, vs), resources in sorted(grouped.items())]


def from_rules(rules: Iterable[dict[str, Any]]) -> frozenset[Permission]:
    """The permissions RBAC ``rules`` grant (no wildcards: rcaflow's roles never use them)."""
    return frozenset(Permission(group, resource, verb) for rule in rules for group in rule.get("apiGroups", [])
                     for resource in rule.get("resources", []) for verb in rule.get("verbs", []))
