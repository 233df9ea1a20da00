"""Per-tenant wiring: each tenant's effective policy, ingest quota and evidence backends (docs/tenants.md)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry

from executors.evidence import EvidenceRunner
from policies import PolicySet
from producers.intake_budget import BudgetLimit, IntakeBudget
from producers.mail.alert_count import MailCost
from producers.quota import IngestQuota, QuotaLimit
from streams.settings import IngestSettings, Settings, TenantEvidenceSettings

if TYPE_CHECKING:
    from executors.evidence.tenant_routing import TenantEvidenceRunner

logger = logging.getLogger(__name__)


def build_tenant_policies(settings: Settings, base: PolicySet) -> dict[str, PolicySet]:
    """tenant → its effective policy, for tenants with ``policy_overlay``; an overlay that would loosen the
    base is refused here (PolicyFileError naming the field), so the process does not start with it."""
    from policies.tenant_overlay import load_overlay

    return {
        name: load_overlay(base, tenant.policy_overlay, name)
        for name, tenant in settings.tenants.items()
        if tenant.policy_overlay is not None
    }


def build_ingest_quota(settings: Settings, registry: CollectorRegistry | None, *,
                       replicated: bool = True) -> IngestQuota | None:
    """The tenants' ingest quotas and the intake budget, or None when neither is configured (nothing to count or
    wait for). A tenant's burst defaults to ten seconds of its quota, the budget's to five seconds of it: one
    minute's worth let a storming tenant put a minute of alerts in front of everyone else's at once.

    ``replicated=False`` (``rcaflow ingest imap``: one process per mailbox, never replicated) keeps the whole
    budget whatever ``ingest.replicas`` says, so a configuration shared with the API does not divide it."""
    limits = {
        name: QuotaLimit(per_minute=t.ingest.alerts_per_minute,
                         burst=t.ingest.burst if t.ingest.burst is not None
                         else max(1.0, t.ingest.alerts_per_minute / 6))
        for name, t in settings.tenants.items()
        if t.ingest.alerts_per_minute is not None
    }
    budget = None
    if (limit := replica_budget(settings.ingest, settings.ingest.replicas if replicated else 1)) is not None:
        budget = IntakeBudget(limit, weights={name: t.ingest.weight for name, t in settings.tenants.items()})
    if not limits and budget is None:
        return None
    return IngestQuota.build(limits, settings.tenants, registry=registry, budget=budget)


def build_mail_cost(settings: Settings) -> MailCost:
    """What a mail takes from its tenant's quota and the intake budget: its alerts, counted with the worker's
    templates (bundled and ``mail.templates``), so a digest costs what the worker will get from it."""
    from streams.wiring.runtime import build_templates

    return MailCost(build_templates(settings))


def replica_budget(ingest: IngestSettings, replicas: int) -> BudgetLimit | None:
    """This process's part of the intake budget, or None when no budget is set.

    The budget and its burst (default five seconds' worth) are the total of ``replicas`` processes behind
    one load balancer; each enforces its share of both, as Envoy's local rate limit does per replica: no shared
    store on the request path, at the price that uneven balancing admits less than the total. The burst stays at
    least 1 (a replica must admit one alert), so with more replicas than the burst they admit a little more.
    """
    if (per_minute := ingest.budget_alerts_per_minute) is None:
        return None
    burst = ingest.budget_burst if ingest.budget_burst is not None else max(1.0, per_minute / 12)
    return BudgetLimit(per_minute / replicas, max(1.0, burst / replicas))


def tenant_evidence_settings(settings: Settings, own: TenantEvidenceSettings) -> Settings:
    """``settings`` with the tenant's backends in place of the global ones, backend by backend.

    A tenant URL comes with the tenant's login only (the global one is never sent to it), and a tenant
    Kubernetes source replaces every global one (``k8s_api`` takes the first it finds).
    """
    update: dict[str, object] = {}
    if own.prometheus_url:
        update |= {"prometheus_url": own.prometheus_url, "prometheus_auth": own.prometheus_auth}
    if own.elasticsearch_url:
        update |= {"elasticsearch_url": own.elasticsearch_url, "elasticsearch_auth": own.elasticsearch_auth}
    if own.elasticsearch_index:
        update["elasticsearch_index"] = own.elasticsearch_index
    if own.kubeconfig or own.cluster:
        update |= {"kubeconfig": own.kubeconfig, "kube_context": own.kube_context, "cluster": own.cluster,
                   "in_cluster": False}
    return settings.model_copy(update={"evidence": settings.evidence.model_copy(update=update)})


def build_tenant_evidence_runner(
    settings: Settings, default: EvidenceRunner, own: Mapping[str, TenantEvidenceSettings]
) -> TenantEvidenceRunner:
    """The rca stage's runner when some tenants have their own backends: each of those tenants' plans run on
    a toolset of its own (through the same HTTP factory: allow-list, proxy), the rest on ``default``."""
    from executors.evidence.tenant_routing import TenantEvidenceRunner
    from streams.wiring.tools import build_evidence_toolset

    config = settings.evidence
    per_tenant = {
        name: EvidenceRunner(build_evidence_toolset(tenant_evidence_settings(settings, backends)),
                             call_timeout_s=config.call_timeout_s, budget_s=config.budget_s,
                             concurrency=config.concurrency)
        for name, backends in own.items()
    }
    logger.info("tenants with their own evidence backends: %s", ", ".join(sorted(per_tenant)))
    return TenantEvidenceRunner(default, per_tenant)
