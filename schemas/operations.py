"""The one catalogue of tool operations: what each is called, what it may touch, and which class implements it.

Policies validate against it, the LLM prompt offers from it, ``/tools`` lists from
it and the executor registries resolve through it, so adding an operation is one
entry here plus its class (``tests/unit/executors/test_exec_catalogue.py`` ties the
two). It stays pure data: implementations are named as lazy ``"module:Class"``
strings (like faust's ``FactoryMapping``), never imported from ``schemas``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Final

from schemas.records import Risk

_IDENT = re.compile(r"[a-z][a-z0-9_]{0,63}")
_TARGET = re.compile(r"[a-z_][a-z0-9_.]*:[A-Z][A-Za-z0-9_]*")


class OperationKind(StrEnum):
    #: A read-only fact for the RCA, run by the evidence runner as a plan step (never approved, never audited).
    EVIDENCE = "evidence"
    #: A change (or a diagnostic write-up) that runs through the executor lifecycle: approval, risk, audit.
    ACTION = "action"


class QueryForm(StrEnum):
    """How an evidence plan step's query text is written, which decides how a policy may fill it."""

    #: PromQL; every placeholder inside a string literal, escaped by ``policies``.
    PROMQL = "promql"
    #: ``key=value`` pairs separated by spaces (k8s); not escaped, so only name-like variables.
    PAIRS = "pairs"
    #: ``field:"value" AND … AND @timestamp:[now-5m TO now]`` (es); not escaped, so only name-like variables.
    ES_FILTER = "es_filter"
    #: One token: a configured target name or ``host:port`` (netprobe); no spaces at all.
    TARGET = "target"


@dataclass(frozen=True, slots=True)
class Param:
    """One parameter of an operation.

    ``format`` names a ``policies.validate.FORMATS`` rule that a value a policy binds must
    pass; ``None`` means only the implementation's own type checks it (a grammar such as a
    selector, or a parameter only rcaflow itself ever fills). ``required`` mirrors the
    implementation's params model. ``values`` is the closed set of allowed values, when there is one.
    """

    format: str | None
    required: bool = True
    values: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Operation:
    """One operation, declared once.

    Guarantees (checked on construction): evidence is read-only and says how its query
    is written; an action a policy may name gives every parameter a format; the flags
    only appear where they mean something (an inverse is neither offered to a policy nor
    to the LLM).
    """

    tool: str
    operation: str
    kind: OperationKind
    risk: Risk
    description: str
    #: ``"module:Class"``, imported only when the operation is used.
    implementation: str
    params: Mapping[str, Param] = field(default_factory=dict)
    #: Evidence only: how a plan step's query text is written.
    query: QueryForm | None = None
    #: Reached only as the recorded rollback of another action; no policy may name it.
    inverse_only: bool = False
    #: The executor checks the effect and records an inverse, so ``on_failure: undo`` can roll it back.
    undoable: bool = False
    #: Restarts a workload: restarting etcd or Prometheus with it is always high risk.
    restarts_workload: bool = False
    #: Evidence the LLM may ask for. netprobe is withheld because alert text steering it could make
    #: rcaflow probe hosts of an attacker's choosing; k8s.owners adds nothing k8s.describe lacks.
    offered_to_llm: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "params", MappingProxyType(dict(self.params)))
        problems = list(self._problems())
        if problems:
            raise ValueError(f"operation {self.name}: {'; '.join(problems)}")

    def _problems(self) -> Iterable[str]:
        if not (_IDENT.fullmatch(self.tool) and _IDENT.fullmatch(self.operation)):
            yield "tool and operation must be lower-case identifiers"
        if not _TARGET.fullmatch(self.implementation):
            yield f"implementation {self.implementation!r} must be 'module:Class'"
        if not self.description or "\n" in self.description:
            yield "needs a one-line description"
        if self.kind is OperationKind.EVIDENCE:
            if self.risk is not Risk.READ:
                yield "evidence is read-only (risk read)"
            if self.query is None:
                yield "evidence must say how its query is written"
            if self.inverse_only or self.undoable or self.restarts_workload:
                yield "evidence has no inverse and restarts nothing"
        else:
            if self.query is not None or self.offered_to_llm:
                yield "only evidence has a query form or is offered to the LLM as a read"
            if self.inverse_only and (self.undoable or self.restarts_workload):
                yield "an inverse is not named by a policy, so policy flags mean nothing on it"
            if not self.inverse_only and any(p.format is None for p in self.params.values()):
                yield "every parameter of an action a policy may name needs a format"

    @property
    def name(self) -> str:
        return f"{self.tool}.{self.operation}"

    @property
    def family(self) -> str:
        """The ``/tools/{family}`` and backend family; the same as ``tool``."""
        return self.tool

    @property
    def key(self) -> tuple[str, str]:
        return (self.tool, self.operation)

    @property
    def policy_nameable(self) -> bool:
        return not self.inverse_only

    @property
    def formats(self) -> dict[str, str]:
        """Parameter → format, for the parameters that have one (all of them, for a nameable action)."""
        return {name: p.format for name, p in self.params.items() if p.format is not None}


_NAMESPACE: Final = Param("dns1123_label")
_OBJECT: Final = Param("dns1123_subdomain")
_WORKLOAD_KINDS: Final = frozenset({"deployment", "statefulset", "daemonset"})
_SCALABLE_KINDS: Final = frozenset({"deployment", "statefulset"})
_EV = OperationKind.EVIDENCE
_ACT = OperationKind.ACTION

OPERATIONS: Final[tuple[Operation, ...]] = (
    # -- evidence: read-only facts for the RCA (order: how the LLM prompt lists them)
    Operation("prom", "query", _EV, Risk.READ, "Instant PromQL query at the analysis time; top series by value.",
              "executors.evidence.prom:Query", {"query": Param(None)},
              query=QueryForm.PROMQL, offered_to_llm=True),
    Operation("prom", "query_range", _EV, Risk.READ, "Range PromQL query; min/max/avg/last of the top series.",
              "executors.evidence.prom:QueryRange",
              {"query": Param(None), "range": Param(None, required=False), "step": Param(None, required=False)},
              query=QueryForm.PROMQL, offered_to_llm=True),
    Operation("k8s", "pods", _EV, Risk.READ, "Pods by label selector or name: phase, readiness, restarts, reasons.",
              "executors.evidence.k8s:Pods",
              {"namespace": _NAMESPACE, "selector": Param(None, required=False),
               "name": Param("dns1123_subdomain", required=False)},
              query=QueryForm.PAIRS, offered_to_llm=True),
    Operation("k8s", "events", _EV, Risk.READ, "Events of one object, newest first.",
              "executors.evidence.k8s:Events", {"namespace": _NAMESPACE, "name": _OBJECT},
              query=QueryForm.PAIRS, offered_to_llm=True),
    Operation("k8s", "logs", _EV, Risk.READ, "A pod's log tail, optionally since a duration and filtered by a regex.",
              "executors.evidence.k8s:Logs",
              {"namespace": _NAMESPACE, "pod": _OBJECT, "container": Param("dns1123_subdomain", required=False),
               "tail": Param(None, required=False), "since": Param(None, required=False),
               "grep": Param(None, required=False)},
              query=QueryForm.PAIRS, offered_to_llm=True),
    Operation("k8s", "describe", _EV, Risk.READ, "A pod at a glance: status, restarts, owner chain, newest events.",
              "executors.evidence.k8s:Describe", {"namespace": _NAMESPACE, "pod": _OBJECT},
              query=QueryForm.PAIRS, offered_to_llm=True),
    Operation("k8s", "owners", _EV, Risk.READ, "A pod's controller owner chain up to its workload.",
              "executors.evidence.k8s:Owners", {"namespace": _NAMESPACE, "pod": _OBJECT},
              query=QueryForm.PAIRS),
    Operation("es", "search", _EV, Risk.READ, "Newest matching log lines folded into the most repeated messages.",
              "executors.evidence.es:Search", {"query": Param(None)},
              query=QueryForm.ES_FILTER, offered_to_llm=True),
    Operation("es", "count", _EV, Risk.READ, "Matching log volume by pod, container and minute.",
              "executors.evidence.es:Count", {"query": Param(None)},
              query=QueryForm.ES_FILTER, offered_to_llm=True),
    Operation("netprobe", "dns", _EV, Risk.READ, "Resolve a target's host name; addresses found and latency.",
              "executors.evidence.netprobe:Dns", {"target": Param(None)}, query=QueryForm.TARGET),
    Operation("netprobe", "tcp", _EV, Risk.READ, "Open and close a TCP connection to a target; 1 connected, 0 not.",
              "executors.evidence.netprobe:Tcp", {"target": Param(None)}, query=QueryForm.TARGET),
    Operation("netprobe", "http", _EV, Risk.READ, "GET a configured URL by name; status and latency.",
              "executors.evidence.netprobe:Http", {"target": Param(None)}, query=QueryForm.TARGET),
    # -- actions: run through the executor lifecycle
    Operation("k8s", "rollout_restart", _ACT, Risk.LOW, "Restart a workload's pods as kubectl rollout restart does.",
              "executors.tools.k8s:RolloutRestart",
              {"namespace": _NAMESPACE, "kind": Param("dns1123_label", values=_WORKLOAD_KINDS), "name": _OBJECT},
              undoable=True, restarts_workload=True),
    Operation("k8s", "undo_restart", _ACT, Risk.LOW, "Put a workload's pod-template restart annotations back.",
              "executors.tools.k8s:UndoRestart",
              {"namespace": _NAMESPACE, "kind": Param("dns1123_label", values=_WORKLOAD_KINDS), "name": _OBJECT,
               "restarted_at": Param(None), "previous_action": Param(None)},
              inverse_only=True),
    Operation("k8s", "delete_pod", _ACT, Risk.LOW, "Delete one pod so its controller recreates it.",
              "executors.tools.k8s:DeletePod", {"namespace": _NAMESPACE, "pod": _OBJECT},
              restarts_workload=True),
    Operation("k8s", "scale", _ACT, Risk.LOW, "Set a deployment's or statefulset's replica count.",
              "executors.tools.k8s:Scale",
              {"namespace": _NAMESPACE, "kind": Param("dns1123_label", values=_SCALABLE_KINDS), "name": _OBJECT,
               "replicas": Param("small_int")},
              undoable=True),
    Operation("k8s", "annotate_pod", _ACT, Risk.LOW, "Set one annotation on a pod.",
              "executors.tools.k8s:AnnotatePod",
              {"namespace": _NAMESPACE, "pod": _OBJECT, "key": Param("annotation_key"), "value": Param("safe_text")}),
    Operation("k8s", "remove_pod_annotation", _ACT, Risk.LOW, "Remove an annotation rcaflow set on a pod.",
              "executors.tools.k8s:RemovePodAnnotation",
              {"namespace": _NAMESPACE, "pod": _OBJECT, "key": Param("annotation_key")},
              inverse_only=True),
    Operation("http", "reload", _ACT, Risk.LOW, "POST a configured reload endpoint (by name, never a URL).",
              "executors.tools.http_reload:Reload", {"target": Param("dns1123_label")}),
    Operation("alertmanager", "silence", _ACT, Risk.LOW, "Silence one alert for a bounded duration.",
              "executors.tools.alertmanager:Silence",
              {"alertname": Param("alert_name"), "cluster": Param("label_value", required=False),
               "namespace": Param("dns1123_label", required=False),
               "workload": Param("dns1123_subdomain", required=False),
               "duration": Param("duration", required=False), "comment": Param("safe_text")}),
    Operation("alertmanager", "expire_silence", _ACT, Risk.LOW, "Expire a silence rcaflow created.",
              "executors.tools.alertmanager:ExpireSilence", {"silence_id": Param(None)},
              inverse_only=True),
    Operation("diagnostics", "collect", _ACT, Risk.READ, "Collect a workload's pod state, events and logs.",
              "executors.tools.diagnostics:Collect", {"namespace": _NAMESPACE, "workload": _OBJECT}),
)
"""Every operation rcaflow implements, evidence first, in the order listings show them."""

BY_NAME: Final[Mapping[str, Operation]] = MappingProxyType({op.name: op for op in OPERATIONS})
if len(BY_NAME) != len(OPERATIONS):
    raise ValueError("duplicate operation names in schemas.operations.OPERATIONS")

EVIDENCE: Final[tuple[Operation, ...]] = tuple(op for op in OPERATIONS if op.kind is OperationKind.EVIDENCE)
ACTIONS: Final[tuple[Operation, ...]] = tuple(op for op in OPERATIONS if op.kind is OperationKind.ACTION)


def by_family(operations: Iterable[Operation]) -> dict[str, tuple[str, ...]]:
    """family → its operation names, both in catalogue order (the shape listings and prompts use)."""
    out: dict[str, tuple[str, ...]] = {}
    for op in operations:
        out[op.family] = (*out.get(op.family, ()), op.operation)
    return out


def evidence_families() -> frozenset[str]:
    """The ``/tools/{family}`` names served by evidence tools."""
    return frozenset(op.family for op in EVIDENCE)
