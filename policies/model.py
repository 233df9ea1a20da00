"""The shape of remediation_policies.yaml as pydantic models (structure and types only).

Cross-field rules (references, CEL, regexes, risk floors) live in ``policies.checks`` so that each
error can name its exact field path and line.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer

from policies.correlation_spec import CorrelationSpec
from schemas.records import Approval, Risk

_DURATION = re.compile(r"(?P<n>[0-9]+)(?P<unit>s|m|h|d|w)")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(value: object) -> timedelta:
    """``"90s"``, ``"15m"``, ``"2h"``, ``"1d"`` -> timedelta; anything else is a validation error."""
    if isinstance(value, timedelta):
        return value
    if not isinstance(value, str) or not (match := _DURATION.fullmatch(value.strip())):
        raise ValueError(f"{value!r} is not a duration like 30s, 15m, 2h or 1d")
    return timedelta(seconds=int(match["n"]) * _UNITS[match["unit"]])


def format_duration(value: timedelta) -> str:
    seconds = int(value.total_seconds())
    for unit in ("w", "d", "h", "m"):
        if seconds and seconds % _UNITS[unit] == 0:
            return f"{seconds // _UNITS[unit]}{unit}"
    return f"{seconds}s"


Duration = Annotated[timedelta, BeforeValidator(parse_duration), PlainSerializer(format_duration)]
Identifier = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=64)]
NonEmpty = Annotated[str, Field(min_length=1)]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class VarSpec(_Model):
    """A value taken from the event: first non-empty source wins, then it must have ``format``."""

    sources: list[NonEmpty] = Field(alias="from", min_length=1)
    format: NonEmpty


class Matcher(_Model):
    """One way to recognise a class; every criterion given must hold. Its rank (docs/policies.md) is that
    of its strongest criterion: exact ``alerts``, then ``expr_metrics``, then labels/annotations, then
    name patterns (``name_patterns``, ``alert_contains``, ``alert_regex``)."""

    alerts: list[NonEmpty] = Field(default_factory=list)
    alert_contains: list[NonEmpty] = Field(default_factory=list)
    alert_regex: NonEmpty | None = None
    #: Regexes searched in the alert name (one is enough); from this file only, never from an alert.
    name_patterns: list[NonEmpty] = Field(default_factory=list)
    case_insensitive: bool = False
    #: Metric names the alert's own expression reads (one is enough; ``*`` is a wildcard, and a histogram's
    #: ``_bucket``/``_sum``/``_count`` series count as its name): policies.alert_expression.
    expr_metrics: list[NonEmpty] = Field(default_factory=list)
    labels: dict[str, str] = Field(default_factory=dict)
    labels_any: dict[str, str] = Field(default_factory=dict)
    #: Annotation name -> regex searched in its value (all must hold).
    annotations: dict[str, str] = Field(default_factory=dict)


class EvidenceVariant(_Model):
    """Another form of an evidence step's query, for alerts that lack the labels the first form needs."""

    query: NonEmpty
    alternatives: list[NonEmpty] = Field(default_factory=list)


class EvidenceStep(_Model):
    id: Identifier
    tool: NonEmpty
    operation: NonEmpty
    query: NonEmpty
    #: Further queries for the same number, tried in order while the previous one finds no series: metric names
    #: differ across the versions users run (vmalert 1.79 has ``vmalert_recording_rules_error``, later ones
    #: ``vmalert_recording_rules_errors_total``). The evidence record names the one that answered.
    alternatives: list[NonEmpty] = Field(default_factory=list)
    #: Used in order when the query above reads a variable the alert has no valid value for: the first
    #: variant whose variables are all present is planned (a vmalert alert ``by (job, instance, group)``
    #: has no namespace). Each has its own alternatives.
    variants: list[EvidenceVariant] = Field(default_factory=list)
    description: str = ""


class Threshold(_Model):
    id: Identifier
    expr: NonEmpty
    description: str = ""


class DiagnosisSpec(_Model):
    id: Identifier
    when: list[Identifier] = Field(default_factory=list)
    diagnosis: NonEmpty
    cause: str = ""
    confidence: float = Field(ge=0.0, le=1.0)


class ParamSpec(_Model):
    """One action parameter: bound to the incident (``template``), constant (``value``) or free (choices)."""

    template: NonEmpty | None = None
    value: NonEmpty | None = None
    allowed: list[NonEmpty] | None = None
    pattern: NonEmpty | None = None
    default: NonEmpty | None = None


class ActionSpec(_Model):
    name: Identifier
    description: str = ""
    tool: NonEmpty
    operation: NonEmpty
    params: dict[str, ParamSpec]
    risk: Risk
    approval: Approval
    preconditions: list[NonEmpty] = Field(default_factory=list)
    #: Diagnosis ids for which the policy triage does not propose this action, because that diagnosis says
    #: it would not help (a restart does not make etcd's disk faster). Proposals by the LLM are not affected:
    #: the gate and an approver judge those.
    not_for: list[Identifier] = Field(default_factory=list)
    cooldown: Duration = timedelta(minutes=30)
    approval_ttl: Duration | None = None
    #: May a link that names nobody (no SSO identity, not a per-approver link) decide it? Never for high risk.
    anonymous_approval: bool = False
    #: How an operator undoes it (shown to approvers and in the RCA).
    rollback: str | None = None
    #: "undo": when the action took effect but its check fails (new pods never ready), the executor runs the
    #: tool's recorded inverse by itself; "keep": it only reports the failure.
    on_failure: Literal["keep", "undo"] = "keep"


class ClassPolicy(_Model):
    id: Identifier
    title: NonEmpty
    description: str = ""
    runbooks: list[Annotated[str, Field(pattern=r"^https://\S+$")]] = Field(min_length=1)
    match: list[Matcher] = Field(min_length=1)
    severity: dict[str, NonEmpty] = Field(default_factory=dict)
    dedup_window: Duration | None = None
    vars: dict[Identifier, VarSpec] = Field(default_factory=dict)
    evidence: list[EvidenceStep] = Field(default_factory=list)
    thresholds: list[Threshold] = Field(default_factory=list)
    diagnoses: list[DiagnosisSpec] = Field(min_length=1)
    actions: list[ActionSpec] = Field(default_factory=list)


class Defaults(_Model):
    dedup_window: Duration
    approval_ttl: Duration
    severity: dict[str, NonEmpty] = Field(default_factory=dict)
    vars: dict[Identifier, VarSpec] = Field(default_factory=dict)


class PolicyDocument(_Model):
    version: Literal[1]
    defaults: Defaults
    classes: list[ClassPolicy] = Field(min_length=1)
    #: How incidents are grouped (policies.correlation_spec); absent: every incident is its own group.
    correlation: CorrelationSpec | None = None
