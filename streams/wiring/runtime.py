"""Build the pieces every process needs from one Settings object: the codec, the policy, the stages."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

from policies import PolicySet, load_policies
from policies.tenant_scope import TenantScope, TenantScopes
from producers.mail import TemplateRegistry, bundled_templates_dir, load_templates
from schemas.codec import Codec, make_codec
from streams.errors import ConfigurationError
from streams.settings import Settings
from streams.stages.approval import Approval
from streams.stages.audit import Audit
from streams.stages.core import Clock, StageContext, utcnow
from streams.stages.decide import Decide
from streams.stages.dedup import Dedup
from streams.stages.metrics import StageMetrics
from streams.stages.normalize import Normalize
from streams.stages.rca import Rca
from streams.stages.second_opinion import SecondOpinion
from streams.wiring.decision_keys import optional_approval_keys, optional_decision_keys
from streams.wiring.tenants import build_tenant_policies

logger = logging.getLogger(__name__)

__all__ = ["ConfigurationError"]  # defined in streams.errors; importers reach it here too


def require_bootstrap(settings: Settings) -> str:
    """Single-role processes need a broker; only ``run``/``demo`` start the embedded one."""
    if not settings.bootstrap:
        raise ConfigurationError(
            "KAFKA_BOOTSTRAP_SERVERS is not set. Point it at your Kafka cluster, or use "
            "`rcaflow run` (starts an embedded broker) or `rcaflow broker start`."
        )
    return settings.bootstrap


def build_codec(settings: Settings) -> Codec:
    return make_codec(settings.schema_registry_url)


def build_policies(settings: Settings) -> PolicySet:
    return load_policies(settings.policies_file)


def build_scopes(settings: Settings) -> Mapping[str, TenantScope]:
    """tenant → its scope (namespaces, clusters, senders), from the validated tenant settings.

    ``scopes[tenant]`` answers for any name (``TenantScopes``): a tenant nobody configured gets the
    only tenant's scope in a single-tenant deployment, and nothing at all when there are several.
    """
    return TenantScopes(
        TenantScope(
            tenant=name,
            namespaces=tuple(tenant.namespaces),
            clusters=tuple(tenant.clusters),
            senders=tuple(tenant.senders),
        )
        for name, tenant in settings.tenants.items()
    )


def build_templates(settings: Settings) -> TemplateRegistry:
    """The bundled templates (unless turned off) and then the deployment's own, in the configured order."""
    mail = settings.mail
    paths = [*([bundled_templates_dir()] if mail.bundled_templates else []), *mail.templates]
    if not paths:
        raise ConfigurationError("mail.bundled_templates is false and mail.templates names no template file")
    return load_templates(paths)


@dataclass(frozen=True, slots=True)
class Stages:
    """Every stage of one process, sharing one policy, one clock and one set of metrics."""

    context: StageContext
    policies: PolicySet
    templates: TemplateRegistry
    normalize: Normalize
    dedup: Dedup
    rca: Rca
    #: None when the LLM is off (no API key).
    second_opinion: SecondOpinion | None
    decide: Decide
    approval: Approval
    audit: Audit


def build_stages(
    settings: Settings, metrics: StageMetrics | None = None, *, engines: bool = False, clock: Clock = utcnow
) -> Stages:
    """``engines``: also build the evidence tools and the LLM client (only the worker and explain call them)."""
    context = StageContext(metrics=metrics, clock=clock)
    policies = build_policies(settings)
    templates = build_templates(settings)
    evidence = second_opinion = None
    if engines:
        from streams.wiring.rca import build_evidence_runner, build_second_opinion

        evidence, second_opinion = build_evidence_runner(settings), build_second_opinion(settings, policies, context)
    scopes = build_scopes(settings)
    keys = optional_decision_keys(settings)  # None: approvals go out unsigned (explain); the worker refuses that
    return Stages(
        context=context,
        policies=policies,
        templates=templates,
        normalize=Normalize(policies, templates, scopes=scopes, context=context,
                            cluster_names={tenant: t.cluster_names for tenant, t in settings.tenants.items()}),
        dedup=Dedup(policies, context=context),
        rca=Rca(policies, evidence, scopes=scopes, context=context),
        second_opinion=second_opinion,
        decide=Decide(policies, scopes=scopes, context=context, keys=keys,
                      auto_valid_for=timedelta(minutes=settings.security.auto_approval_valid_minutes),
                      tenant_policies=build_tenant_policies(settings, policies)),
        approval=Approval(context=context, keys=keys, approval_keys=optional_approval_keys(settings)),
        audit=Audit(context=context),
    )
