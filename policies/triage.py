"""The policy engine's RCA: a deterministic diagnosis, evidence plan and proposed actions for an incident."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from policies.catalog import EVIDENCE_QUERY_FORMS
from policies.compiled import CompiledClass
from policies.errors import LabelValidationError
from policies.loader import PolicySet
from policies.model import DiagnosisSpec, EvidenceStep
from policies.params import action_id_for, context_for, render_params, variables_for
from policies.render import ResolvedVars, parse_template, render
from schemas.operations import QueryForm
from schemas.records import Engine, Evidence, EvidenceStatus, Incident, ProposedAction, RcaResult

logger = logging.getLogger(__name__)


def triage(
    incident: Incident,
    policies: PolicySet,
    now: datetime,
    evidence_values: Mapping[str, float] | None = None,
) -> RcaResult:
    """Diagnose ``incident`` by its class's policy.

    ``evidence_values`` are the numbers the evidence steps measured, by step id; without them
    (tools not run yet) every step is ``skipped`` with its exact rendered query, and the class's
    fallback diagnosis is used. Actions whose parameters cannot be rendered from valid labels are
    not proposed; the reason is kept as an ``error`` evidence entry so it is audited.
    """
    cls = policies.get(incident.alert_class)
    if cls is None:
        return _unclassified(incident, now)
    values = dict(evidence_values or {})
    variables = variables_for(cls, incident)
    context = context_for(incident)

    evidence = [_evidence_for(step_index, cls, variables, values) for step_index in range(len(cls.spec.evidence))]
    diagnosis = choose_diagnosis(cls, values, context)

    actions: list[ProposedAction] = []
    for spec in cls.spec.actions:
        if diagnosis.id in spec.not_for:
            logger.debug("action %s not proposed: not for diagnosis %s", spec.name, diagnosis.id)
            continue
        checks = [expr.evaluate(context) for expr in cls.preconditions.get(spec.name, [])]
        if not all(result is True for result in checks):
            logger.debug("action %s not proposed: preconditions not met", spec.name)
            continue
        try:
            params = render_params(spec, variables)
        except LabelValidationError as exc:
            logger.info(
                "action %s not proposed: %s",
                spec.name,
                exc.message,
                extra={"incident_id": incident.incident_id, "alert_class": cls.id},
            )
            evidence.append(
                Evidence(
                    tool="policy",
                    operation="render_action",
                    query=spec.name,
                    status=EvidenceStatus.ERROR,
                    summary=f"action {spec.name} not proposed",
                    error=exc.message,
                )
            )
            continue
        actions.append(
            ProposedAction(
                action_id=action_id_for(incident.incident_id, spec.name),
                name=spec.name,
                tool=spec.tool,
                operation=spec.operation,
                params=params,
                risk=spec.risk,
                approval=spec.approval,
                rollback=spec.rollback,
                reason=spec.description,
            )
        )

    return RcaResult(
        tenant=incident.tenant,
        incident_id=incident.incident_id,
        alert_class=cls.id,
        engine=Engine.POLICY,
        diagnosis=diagnosis.diagnosis,
        cause=diagnosis.cause,
        confidence=diagnosis.confidence,
        evidence=evidence,
        actions=actions,
        rollback=[f"{a.name}: {a.rollback}" for a in actions if a.rollback],
        produced_at=now,
        incident=incident,
    )


def alternative_queries(incident: Incident, policies: PolicySet) -> dict[str, tuple[str, ...]]:
    """Each evidence step's ``alternatives``, rendered like its query, by step id.

    An alternative that reads a variable without a valid value is left out: it is never run with an
    unsafe value, and the others still are.
    """
    cls = policies.get(incident.alert_class)
    if cls is None:
        return {}
    variables = variables_for(cls, incident)
    rendered: dict[str, tuple[str, ...]] = {}
    for step in cls.spec.evidence:
        _, alternatives = planned_query(step, variables)
        if not alternatives:
            continue
        promql = EVIDENCE_QUERY_FORMS.get((step.tool, step.operation)) is QueryForm.PROMQL
        rendered[step.id] = tuple(
            render(alt, variables.values, promql=promql) for alt in alternatives
            if all(ph.var in variables.values for ph in parse_template(alt))
        )
    return rendered


def planned_query(step: EvidenceStep, variables: ResolvedVars) -> tuple[str, list[str]]:
    """The step's query and alternatives, or those of its first variant whose variables all have a valid
    value (the alert's labels decide: ``by (job, instance, group)`` has no namespace); the step's own
    query when none has (its evidence then says which variable is missing)."""
    for query, alternatives in ((step.query, step.alternatives),
                                *((v.query, v.alternatives) for v in step.variants)):
        if all(ph.var in variables.values for ph in parse_template(query)):
            return query, list(alternatives)
    return step.query, list(step.alternatives)


def evaluate_thresholds(
    cls: CompiledClass, evidence_values: Mapping[str, float], context: Mapping[str, Any] | None = None
) -> dict[str, bool | None]:
    """Each threshold's outcome over the measured evidence; None when a value it needs is missing."""
    variables: dict[str, Any] = dict(context or {})
    variables.update({key: float(value) for key, value in evidence_values.items()})
    return {name: expr.evaluate(variables) for name, expr in cls.thresholds.items()}


def choose_diagnosis(
    cls: CompiledClass, evidence_values: Mapping[str, float], context: Mapping[str, Any] | None = None
) -> DiagnosisSpec:
    """The first diagnosis whose thresholds all hold; the fallback (last, no ``when``) otherwise."""
    outcomes = evaluate_thresholds(cls, evidence_values, context)
    for diagnosis in cls.spec.diagnoses:
        if all(outcomes.get(name) is True for name in diagnosis.when):
            return diagnosis
    return cls.spec.diagnoses[-1]


def _evidence_for(index: int, cls: CompiledClass, variables: ResolvedVars, values: Mapping[str, float]) -> Evidence:
    step = cls.spec.evidence[index]
    template, _ = planned_query(step, variables)
    needed = [ph.var for ph in parse_template(template) if ph.var not in variables.values]
    if needed:
        return Evidence(
            tool=step.tool,
            operation=step.operation,
            query=template,
            status=EvidenceStatus.ERROR,
            summary=f"{step.id}: not run, the query could not be rendered safely",
            error=variables.problems.get(needed[0], f"no value for {needed[0]}"),
        )
    query = render(template, variables.values,
                   promql=EVIDENCE_QUERY_FORMS.get((step.tool, step.operation)) is QueryForm.PROMQL)
    if step.id in values:
        return Evidence(
            tool=step.tool,
            operation=step.operation,
            query=query,
            status=EvidenceStatus.SUCCESS,
            summary=f"{step.id} = {values[step.id]:g}: {step.description}",
        )
    return Evidence(
        tool=step.tool,
        operation=step.operation,
        query=query,
        status=EvidenceStatus.SKIPPED,
        summary=f"{step.id}: planned, not run yet: {step.description}",
    )


def _unclassified(incident: Incident, now: datetime) -> RcaResult:
    event = incident.event
    return RcaResult(
        tenant=incident.tenant,
        incident_id=incident.incident_id,
        alert_class=incident.alert_class,
        engine=Engine.POLICY,
        diagnosis=(
            f"Unclassified alert {event.alert!r}: no policy class matches it, so no diagnosis "
            "and no automatic action are proposed; a human (or the LLM engine) must look at it."
        ),
        cause="",
        confidence=0.0,
        produced_at=now,
        incident=incident,
    )
