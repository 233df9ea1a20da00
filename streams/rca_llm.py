"""The asynchronous second opinion: ask the LLM about an incident the policy already triaged.

Lives in the composition root because it joins the policy (what a class
allows) with the LLM client (executors/llm): the model only ever sees, and can
only propose, what the policy offers for the class; its answer then goes
through ``decide`` again like any other result.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime

from executors.llm import AllowedAction, AllowedParam, ClassBrief, LlmClient, LlmFailure, analyse
from policies import PolicySet, action_id_for
from policies.compiled import CompiledClass
from policies.errors import LabelValidationError
from policies.params import context_for, render_params, variables_for
from schemas.records import ActionEvent, ActionState, Incident, RcaResult, Risk

logger = logging.getLogger(__name__)


def brief_for(cls: CompiledClass, incident: Incident) -> ClassBrief:
    """The policy's view of the class for this incident, as data for the LLM prompt and gate.

    Bound parameters become their single rendered value; actions whose preconditions fail or whose
    parameters cannot be rendered safely are not offered at all.
    """
    variables = variables_for(cls, incident)
    context = context_for(incident)
    allowed: list[AllowedAction] = []
    for spec in cls.spec.actions:
        if not all(expr.evaluate(context) is True for expr in cls.preconditions.get(spec.name, [])):
            continue
        try:
            rendered = render_params(spec, variables)
        except LabelValidationError:
            continue
        params: dict[str, AllowedParam] = {}
        for name, param in spec.params.items():
            if param.template is not None or param.value is not None:
                params[name] = AllowedParam(values=(rendered[name],))
            elif param.allowed is not None:
                params[name] = AllowedParam(values=tuple(param.allowed), default=param.default)
            else:
                pattern = cls.param_patterns.get((spec.name, name))
                params[name] = AllowedParam(pattern=pattern.pattern if pattern else None, default=param.default)
        allowed.append(
            AllowedAction(
                name=spec.name,
                description=spec.description,
                tool=spec.tool,
                operation=spec.operation,
                params=params,
                risk=spec.risk,
                approval=spec.approval,
                rollback=spec.rollback,
            )
        )
    known = [f"{d.id}: {d.diagnosis} Cause: {d.cause}" for d in cls.spec.diagnoses]
    return ClassBrief(
        id=cls.id,
        title=cls.spec.title,
        description=cls.spec.description,
        runbooks=list(cls.spec.runbooks),
        known_causes=known,
        allowed_actions=allowed,
    )


class LlmStage:
    """rca-result (engine=policy) → rca-result (engine=llm), or nothing when the model fails."""

    def __init__(
        self, client: LlmClient, policies: PolicySet, clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    ) -> None:
        self._client = client
        self._policies = policies
        self._clock = clock

    async def second_opinion(self, triage: RcaResult) -> tuple[RcaResult | None, list[ActionEvent], str]:
        """The LLM's result (None: keep the triage), rejected proposals as audit-worthy events, and why."""
        cls = self._policies.get(triage.alert_class)
        if cls is None:
            return None, [], "unclassified: nothing the policy would let the model propose"
        outcome = await analyse(self._client, triage.incident, brief_for(cls, triage.incident), triage.evidence)
        if isinstance(outcome, LlmFailure):
            logger.warning(
                "LLM gave no usable answer (%s): %s; keeping the policy triage", outcome.kind, outcome.reason,
                extra={"incident_id": triage.incident_id, "tenant": triage.tenant},
            )
            return None, [], f"{outcome.kind}: {outcome.reason}"
        now = self._clock()
        result = outcome.to_rca_result(triage.incident, now, triage.evidence)
        rejected = [
            ActionEvent(
                tenant=triage.tenant,
                action_id=action_id_for(triage.incident_id, f"llm-rejected:{r.name}"),
                incident_id=triage.incident_id,
                alert_class=triage.alert_class,
                name=r.name[:120] or "(unnamed)",
                tool="none",
                operation="none",
                risk=Risk.HIGH,
                state=ActionState.REJECTED,
                reason=f"LLM proposal dropped by the policy gate: {r.reason}"[:1000],
                at=now,
            )
            for r in outcome.rejected
        ]
        return result, rejected, "ok"
