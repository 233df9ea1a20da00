"""The tools and operations a policy file may name, and the format of each parameter, as policies look them up.

Derived from ``schemas.operations`` (the one catalogue the executors implement and a
test ties to their classes), so a policy cannot invent a tool, a parameter, or a
weaker format for a parameter than the one given there.
"""

from __future__ import annotations

from typing import Final

from schemas.operations import ACTIONS, EVIDENCE, QueryForm, by_family

_NAMEABLE_ACTIONS: Final = tuple(op for op in ACTIONS if op.policy_nameable)

ACTION_PARAMS: Final[dict[tuple[str, str], dict[str, str]]] = {op.key: op.formats for op in _NAMEABLE_ACTIONS}
"""(tool, operation) -> {param name: format name in policies.validate.FORMATS}; a policy must give every param."""

KIND_VALUES: Final[dict[tuple[str, str], frozenset[str]]] = {
    op.key: op.params["kind"].values for op in _NAMEABLE_ACTIONS if "kind" in op.params and op.params["kind"].values
}
"""Allowed values of the ``kind`` parameter per operation."""

UNDOABLE_OPERATIONS: Final[frozenset[tuple[str, str]]] = frozenset(op.key for op in _NAMEABLE_ACTIONS if op.undoable)
"""Operations whose executor checks the effect and records an inverse, so ``on_failure: undo`` can roll them back."""

RESTART_OPERATIONS: Final[frozenset[tuple[str, str]]] = frozenset(
    op.key for op in _NAMEABLE_ACTIONS if op.restarts_workload
)
"""Operations that restart a workload; restarting etcd or Prometheus with them is always high risk."""

EVIDENCE_OPERATIONS: Final[dict[str, frozenset[str]]] = {
    family: frozenset(operations) for family, operations in by_family(EVIDENCE).items()
}
"""Read-only evidence tools (served by ``/tools/{family}``) and their operations."""

EVIDENCE_QUERY_FORMS: Final[dict[tuple[str, str], QueryForm]] = {
    op.key: op.query for op in EVIDENCE if op.query is not None
}
"""How each evidence step's query is written: it decides escaping (PromQL) and which variables may appear."""

CONTEXT_NAMES: Final = frozenset({"alert", "status", "severity", "labels", "count", "times"})
"""Names a precondition or threshold may read besides evidence ids (from the incident's event)."""

VAR_SOURCES: Final = frozenset({"alert", "tenant", "severity", "status", "alert_class", "incident_id"})
"""Plain variable sources besides ``labels.<name>`` and ``annotations.<name>``."""
