"""Build the pieces every process needs from one Settings object: the codec, the policy, the stages."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from policies import PolicySet, load_policies
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
    return Stages(
        context=context,
        policies=policies,
        templates=templates,
        normalize=Normalize(policies, templates, context=context,
                            cluster_names={tenant: t.cluster_names for tenant, t in settings.tenants.items()}),
        dedup=Dedup(policies, context=context),
        rca=Rca(policies, evidence, context=context),
        second_opinion=second_opinion,
        decide=Decide(policies, context=context),
        approval=Approval(context=context),
        audit=Audit(context=context),
    )
