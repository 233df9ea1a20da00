"""rca-result (policy) → rca-result (llm): the LLM's second opinion on an incident the policy already triaged.

Lives in the composition root because it joins the policy (what a class
allows) with the LLM client (executors/llm): the model only ever sees, and can
only propose, what the policy offers for the class; its answer then goes
through ``decide`` again like any other result.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence

from executors.llm import AllowedAction, AllowedParam, ClassBrief, LlmClient, LlmFailure, PastIncident, analyse
from policies import PolicySet, action_id_for
from policies.compiled import CompiledClass
from policies.errors import LabelValidationError
from policies.params import context_for, render_params, variables_for
from policies.runbooks import runbook_link
from schemas.errors import TransientError
from schemas.records import ActionEvent, ActionState, Engine, Incident, RcaResult, Risk
from schemas.topics import ACTIONS, RCA_RESULT
from streams.errors import StreamsError
from streams.stages.core import Out, StageContext, StageResult
from streams.stages.rca import LlmEvidence

STAGE = "llm"

logger = logging.getLogger(__name__)


class ModelUnavailableError(StreamsError, TransientError):
    """The model did not answer (down, 5xx, rate-limited, timed out, circuit open) after the client's own retries.

    Transient: the worker waits and asks again, so an outage delays the second opinion instead of
    silently skipping it. A reply that came but is unusable is not this: that keeps the triage.
    """

    retriable = True


def policy_diagnosis(cls: CompiledClass, triaged: RcaResult | None) -> str | None:
    """The id of the diagnosis the policy's triage chose (by its text, unique within a class), or None."""
    if triaged is None or triaged.engine is not Engine.POLICY:
        return None
    return next((d.id for d in cls.spec.diagnoses if d.diagnosis == triaged.diagnosis), None)


def brief_for(cls: CompiledClass, incident: Incident, triaged: RcaResult | None = None) -> ClassBrief:
    """The policy's view of the class for this incident, as data for the LLM prompt and gate.

    Bound parameters become their single rendered value; actions whose preconditions fail or whose
    parameters cannot be rendered safely are not offered at all, nor (given the policy's own
    ``triaged`` result) actions whose ``not_for`` names the diagnosis the evidence chose: the model
    may not propose a restart the evidence says would not help (the gate drops it as not offered).
    """
    variables = variables_for(cls, incident)
    context = context_for(incident)
    diagnosis = policy_diagnosis(cls, triaged)
    allowed: list[AllowedAction] = []
    for spec in cls.spec.actions:
        if diagnosis is not None and diagnosis in spec.not_for:
            continue
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
        # rcaflow's own runbook of the class first (docs/runbooks/<class>.md: evidence, causes, actions), then upstream.
        runbooks=[runbook_link(cls.id), *cls.spec.runbooks],
        known_causes=known,
        allowed_actions=allowed,
    )


class SecondOpinion:
    """rca-result (engine=policy) → rca-result (engine=llm), or nothing when the model fails."""

    def __init__(
        self,
        client: LlmClient,
        policies: PolicySet,
        *,
        context: StageContext | None = None,
        evidence: LlmEvidence | None = None,
        similar: Callable[[Incident], Awaitable[Sequence[PastIncident]]] | None = None,
    ) -> None:
        self._client = client
        self._policies = policies
        self.context = context or StageContext()
        #: The model's evidence round (reads it asks for); None: the model sees only the policy's evidence.
        self.evidence = evidence
        #: Past resolved incidents of the tenant from the knowledge base (None: no KB configured); never raises.
        self.similar = similar

    async def __call__(self, triaged: RcaResult) -> StageResult:
        """The LLM's answer plus the model's proposals the policy refused (as rejected actions)."""
        if triaged.engine is not Engine.POLICY or (not triaged.actions and triaged.alert_class == "unclassified"):
            return StageResult([], "skipped")
        answer, rejected, why = await self.ask(triaged)
        outs = [Out(ACTIONS, f"{a.tenant}:{a.action_id}", a) for a in rejected]
        metrics = self.context.metrics
        if answer is not None:
            outs.insert(0, Out(RCA_RESULT, f"{answer.tenant}:{answer.incident_id}", answer))
            if metrics:
                model = answer.model or "unknown"
                tenant = metrics.tenant(triaged.tenant)
                metrics.llm_tokens.labels(model=model, tenant=tenant).inc(answer.tokens or 0)
                metrics.llm_latency.labels(model=model, tenant=tenant).observe((answer.latency_ms or 0) / 1000)
        outcome = "ok" if answer is not None else why.split(":", 1)[0]
        self.context.count(STAGE, outcome)
        return StageResult(outs, outcome)

    async def ask(self, triage: RcaResult) -> tuple[RcaResult | None, list[ActionEvent], str]:
        """The LLM's result (None: keep the triage), rejected proposals as audit-worthy events, and why."""
        cls = self._policies.get(triage.alert_class)
        if cls is None:
            return None, [], "unclassified: nothing the policy would let the model propose"
        rounds = self.evidence
        fetch = rounds.fetcher(triage.incident, self.context.now()) if rounds is not None else None
        past = await self.similar(triage.incident) if self.similar is not None else ()
        brief = brief_for(cls, triage.incident, triage)
        if rounds is not None:
            brief = brief.model_copy(update={"evidence_tools": rounds.offered(triage.tenant)})
        outcome = await analyse(self._client, triage.incident, brief, triage.evidence, past,
                                fetch_evidence=fetch, budget=rounds.budget if rounds is not None else None)
        if isinstance(outcome, LlmFailure):
            if metrics := self.context.metrics:
                metrics.llm_errors.labels(kind=outcome.kind, tenant=metrics.tenant(triage.tenant)).inc()
            if outcome.retriable:
                self.context.count(STAGE, f"waiting:{outcome.kind}")
                raise ModelUnavailableError(f"no answer from the LLM for incident {triage.incident_id} "
                                            f"({outcome.kind}): {outcome.reason}")
            # The model answered, but nothing usable (garbage, truncated, wrong shape, too large, refused
            # request): the incident keeps its triage, and the log line is the note saying why.
            logger.warning(
                "LLM gave no usable answer (%s): %s; keeping the policy triage", outcome.kind, outcome.reason,
                extra={"incident_id": triage.incident_id, "tenant": triage.tenant},
            )
            return None, [], f"{outcome.kind}: {outcome.reason}"
        now = self.context.now()
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
