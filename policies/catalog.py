"""The fixed table of tools and operations the policy file may name, and the format of each parameter.

The executors implement exactly these; a policy cannot invent a tool, a parameter, or a weaker
format for a parameter than the one given here.
"""

from __future__ import annotations

from typing import Final

ACTION_PARAMS: Final[dict[tuple[str, str], dict[str, str]]] = {
    ("k8s", "rollout_restart"): {"namespace": "dns1123_label", "kind": "dns1123_label", "name": "dns1123_subdomain"},
    ("k8s", "delete_pod"): {"namespace": "dns1123_label", "pod": "dns1123_subdomain"},
    ("k8s", "scale"): {
        "namespace": "dns1123_label",
        "kind": "dns1123_label",
        "name": "dns1123_subdomain",
        "replicas": "small_int",
    },
    ("k8s", "annotate_pod"): {
        "namespace": "dns1123_label",
        "pod": "dns1123_subdomain",
        "key": "annotation_key",
        "value": "safe_text",
    },
    ("http", "reload"): {"target": "dns1123_label"},
    ("alertmanager", "silence"): {
        "alertname": "alert_name",
        "cluster": "label_value",
        "namespace": "dns1123_label",
        "workload": "dns1123_subdomain",
        "duration": "duration",
        "comment": "safe_text",
    },
    ("diagnostics", "collect"): {"namespace": "dns1123_label", "workload": "dns1123_subdomain"},
}
"""(tool, operation) -> {param name: format name in policies.validate.FORMATS}; every param is required."""

KIND_VALUES: Final[dict[tuple[str, str], frozenset[str]]] = {
    ("k8s", "rollout_restart"): frozenset({"deployment", "statefulset", "daemonset"}),
    ("k8s", "scale"): frozenset({"deployment", "statefulset"}),
}
"""Allowed values of the ``kind`` parameter per operation."""

UNDOABLE_OPERATIONS: Final = frozenset({("k8s", "rollout_restart"), ("k8s", "scale")})
"""Operations whose executor checks the effect and records an inverse, so ``on_failure: undo`` can roll them back."""

RESTART_OPERATIONS: Final = frozenset({("k8s", "rollout_restart"), ("k8s", "delete_pod")})
"""Operations that restart a workload; restarting etcd or Prometheus with them is always high risk."""

EVIDENCE_OPERATIONS: Final[dict[str, frozenset[str]]] = {
    "prom": frozenset({"query", "query_range"}),
    "k8s": frozenset({"pods", "events", "logs", "describe"}),
    "es": frozenset({"search", "count"}),
}
"""Read-only evidence tools (served by ``/tools/{prom,k8s,es}``) and their operations."""

CONTEXT_NAMES: Final = frozenset({"alert", "status", "severity", "labels", "count", "times"})
"""Names a precondition or threshold may read besides evidence ids (from the incident's event)."""

VAR_SOURCES: Final = frozenset({"alert", "tenant", "severity", "status", "alert_class", "incident_id"})
"""Plain variable sources besides ``labels.<name>`` and ``annotations.<name>``."""
