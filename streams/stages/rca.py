"""incidents → rca-result: the policy's triage over fresh evidence, published at once (the LLM comes after).

Also the LLM's evidence round (:class:`LlmEvidence`): reads the model asks for run through the same
kind of runner and the same tenant scope as the policy's plan.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime

from executors.errors import InvalidParamsError
from executors.evidence import EvidenceRunner, PlannedStep, plan_from_triage
from executors.evidence.runner import ReadTarget
from executors.evidence.tenant_routing import TenantEvidenceRunner
from executors.llm import EvidenceFetcher, EvidenceRequest, ToolBudget
from policies import PolicySet, triage
from policies.tenant_scope import TenantScope
from policies.triage import alternative_queries
from schemas.operations import EVIDENCE, by_family
from schemas.records import Evidence, EvidenceStatus, Incident
from schemas.topics import RCA_RESULT
from streams.stages.core import Out, StageContext, StageResult

STAGE = "rca"

logger = logging.getLogger(__name__)

#: Evidence operations the model may ask for (the catalogue's ``offered_to_llm``): never netprobe, never an action.
LLM_OPERATIONS: frozenset[tuple[str, str]] = frozenset(op.key for op in EVIDENCE if op.offered_to_llm)


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
            plan = plan_from_triage([step.id for step in cls.spec.evidence], result.evidence,
                                    alternative_queries(incident, self.policies))
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
            waited = (self.context.now() - incident.event.received_at).total_seconds()
            metrics.end_to_end.labels(metrics.tenant(incident.tenant)).observe(max(0.0, waited))
        self.context.count(STAGE, "ok")
        return StageResult([Out(RCA_RESULT, f"{incident.tenant}:{incident.incident_id}", result)])


def _target(scope: TenantScope, incident: Incident) -> ReadTarget:
    labels = incident.event.labels
    return ReadTarget(scope, cluster=labels.get("cluster") or None, namespace=labels.get("namespace") or None)


class LlmEvidence:
    """The LLM's evidence round: reads the model asked for by catalogue operation, run under the tenant's scope.

    The request is model output, i.e. untrusted. Guarantees, on top of the runner's own (timeouts,
    a budget, the tool's parameter validation):

    - only catalogue evidence offered to the LLM runs (no netprobe, no action), whatever the model names;
    - the tenant scope is checked as for the policy's plan: the alert's namespace must be the tenant's,
      and so must every namespace the query itself names (k8s ``namespace=``, es namespace terms);
    - a query whose namespaces cannot be known before it runs (PromQL can select any namespace) runs
      only for a tenant that may read every namespace; a namespace-scoped tenant gets ``skipped``;
    - ``budget`` bounds the round (``executors.llm.analyse`` enforces calls, rounds and seconds).

    A refused read becomes a ``skipped`` record with the reason, so the model and the on-call reader see it.
    """

    def __init__(self, runner: EvidenceRunner, scopes: Mapping[str, TenantScope], budget: ToolBudget) -> None:
        self.runner = runner
        self.scopes = scopes
        self.budget = budget

    def offered(self, tenant: str) -> dict[str, tuple[str, ...]]:
        """The catalogue evidence offered to the LLM that this tenant's backends can run, tool → operations.

        What the prompt and the JSON schema list, so the model never spends its few reads (and a small
        model its attention) on a backend this deployment does not have; the fetcher still refuses the rest.
        """
        runner = self.runner.runner_for(tenant) if isinstance(self.runner, TenantEvidenceRunner) else self.runner
        return by_family(op for op in EVIDENCE if op.offered_to_llm and op.name in runner.tools)

    def fetcher(self, incident: Incident, now: datetime) -> EvidenceFetcher:
        """The fetcher for one analysis: bound to the incident's tenant, cluster and namespace, pinned to ``now``."""
        target = _target(self.scopes[incident.tenant], incident)

        async def fetch(request: EvidenceRequest) -> Evidence:
            return await self.fetch(request, target, now)

        return fetch

    async def fetch(self, request: EvidenceRequest, target: ReadTarget, now: datetime) -> Evidence:
        step = PlannedStep(id=f"llm:{request.tool}.{request.operation}", tool=request.tool,
                           operation=request.operation, query=request.query)
        why = self._refusal(step, target)
        if why is not None:
            logger.info("LLM evidence request %s not run: %s", step.name[:80], why)
            return Evidence(tool=request.tool[:64], operation=request.operation[:64], query=request.query,
                            status=EvidenceStatus.SKIPPED, summary=f"{step.id[:80]}: not read: {why}")
        report = await self.runner.run([step], now=now, target=target)
        return report.evidence[0]

    def _refusal(self, step: PlannedStep, target: ReadTarget) -> str | None:
        if (step.tool, step.operation) not in LLM_OPERATIONS:
            return "not an evidence operation offered to the LLM"
        tool = self.runner.tools.get(step.name)
        if tool is None:
            return None  # the runner reports it as "not configured in this deployment"
        try:
            namespaces = tool.namespaces_in(step.query)
        except (InvalidParamsError, ValueError):
            return None  # the runner refuses it, saying why
        if namespaces is None:
            whole = target.scope.why_not_read(cluster=target.cluster, namespace=None)
            if whole is not None:
                return (f"{step.name} can read any namespace and the model wrote this query, so it runs only "
                        f"for a tenant that may read every namespace ({whole})")
        return None
