"""Each tenant's evidence read from its own backends: a plan goes to the runner of the tenant it is for.

Tenants of one deployment may keep their metrics, logs and clusters apart (a vmselect account each, an
Elasticsearch each). The rca stage and the LLM's evidence round already name the tenant in their
:class:`ReadTarget`; routing on it here means no stage can send tenant A's queries to tenant B's backend.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from executors.evidence.runner import EvidenceReport, EvidenceRunner, PlannedStep, ReadTarget


class TenantEvidenceRunner(EvidenceRunner):
    """Runs a plan on its tenant's runner (``per_tenant``), else on ``default`` (the global backends).

    Guarantees: a plan with a target is only ever run by the runner of ``target.scope.tenant`` when that
    tenant has one; without a target (``rcaflow explain``) the default runner runs it.
    """

    def __init__(self, default: EvidenceRunner, per_tenant: Mapping[str, EvidenceRunner]) -> None:
        super().__init__(default.tools, call_timeout_s=default.call_timeout_s, budget_s=default.budget_s,
                         concurrency=default._concurrency)
        self.default = default
        self.per_tenant = dict(per_tenant)

    def runner_for(self, tenant: str | None) -> EvidenceRunner:
        if tenant is None:
            return self.default
        return self.per_tenant.get(tenant, self.default)

    async def run(
        self, steps: Sequence[PlannedStep], *, now: datetime | None = None, target: ReadTarget | None = None
    ) -> EvidenceReport:
        runner = self.runner_for(target.scope.tenant if target is not None else None)
        return await runner.run(steps, now=now, target=target)
