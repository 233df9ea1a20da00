"""Wiring: build the pieces every process needs from one Settings object."""

from __future__ import annotations

import logging
from pathlib import Path

from policies import PolicySet, load_policies
from producers.mail import TemplateRegistry, load_templates
from schemas.codec import Codec, make_codec
from streams.metrics import StageMetrics
from streams.pipeline import Pipeline
from streams.settings import Settings

logger = logging.getLogger(__name__)


class ConfigurationError(Exception):
    retriable = False


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


def build_templates(paths: list[Path] | None = None) -> TemplateRegistry:
    return load_templates(paths)


def build_pipeline(settings: Settings, metrics: StageMetrics | None = None, *, engines: bool = False) -> Pipeline:
    """``engines``: also build the evidence tools and the LLM stage (only the worker calls them)."""
    evidence = llm = None
    if engines:
        from streams.rca_wiring import build_evidence_runner, build_llm_stage

        evidence, llm = build_evidence_runner(settings), build_llm_stage(settings)
    return Pipeline(
        build_codec(settings),
        build_policies(settings),
        build_templates(),
        cluster_names={tenant: t.cluster_names for tenant, t in settings.tenants.items()},
        topic_prefix=settings.kafka.topic_prefix,
        metrics=metrics,
        evidence=evidence,
        llm=llm,
    )
