"""incidents → rca-result: the policy's triage over fresh evidence, published at once (the LLM comes after)."""

from __future__ import annotations

from collections.abc import Mapping

from executors.evidence import EvidenceRunner, plan_from_triage
from executors.evidence.runner import ReadTarget
from policies import PolicySet, triage
from policies.tenant_scope import TenantScope
from schemas.records import Incident
from schemas.topics import RCA_RESULT
from streams.stages.core import Out, StageContext, StageResult

STAGE = "rca"


class Rca:
    """Runs the class's evidence plan (when evidence backends are configured); the thresholds pick the diagnosis."""

    def __init__(
        self,
        policies: PolicySet,
        evidence: EvidenceRunner | None = None,
        *,
        scopes: Mapping[str, TenantScope],
        context: StageContext | None = None,
    ) -> None:
        self.policies = policies
        self.evidence = evidence
        #: tenant → scope: the evidence of one tenant's alert never reads outside that tenant's namespaces.
        self.scopes = scopes
        self.context = context or StageContext()

    async def __call__(self, incident: Incident) -> StageResult:
        if incident.count > 1:
            # A count update of an incident that was already analysed; nothing new to diagnose.
            self.context.count(STAGE, "duplicate")
            return StageResult([], "duplicate")
        now = self.context.now()
        result = triage(incident, self.policies, now)
        cls = self.policies.get(incident.alert_class)
        if self.evidence is not None and cls is not None:
            plan = plan_from_triage([step.id for step in cls.spec.evidence], result.evidence)
            labels = incident.event.labels
            target = ReadTarget(self.scopes[incident.tenant], cluster=labels.get("cluster") or None,
                                namespace=labels.get("namespace") or None)
            report = await self.evidence.run(plan, now=now, target=target)
            measured = triage(incident, self.policies, now, evidence_values=report.values)
            result = measured.model_copy(
                update={"evidence": [*report.evidence, *measured.evidence[len(plan):]]}
            )
        metrics = self.context.metrics
        if metrics:
            metrics.end_to_end.observe(max(0.0, (self.context.now() - incident.event.received_at).total_seconds()))
        self.context.count(STAGE, "ok")
        return StageResult([Out(RCA_RESULT, f"{incident.tenant}:{incident.incident_id}", result)])
