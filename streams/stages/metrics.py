"""Per-stage Prometheus metrics, on an injectable registry so tests use a fresh one."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class StageMetrics:
    """``rcaflow_stage_*``: what each stage took in, how it ended, and how long it took."""

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.processed = Counter(
            "rcaflow_stage_processed_total",
            "Records a stage finished, by outcome (ok, dead_letter, duplicate, replayed, dropped).",
            ["stage", "outcome"],
            registry=registry,
        )
        self.failed = Counter(
            "rcaflow_stage_failed_total",
            "Records a stage could not handle (sent to dead-letter), by error type.",
            ["stage", "error_type"],
            registry=registry,
        )
        self.latency = Histogram(
            "rcaflow_stage_latency_seconds",
            "Time a stage spent on one record.",
            ["stage"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.end_to_end = Histogram(
            "rcaflow_mail_to_rca_seconds",
            "From the alert's arrival (received_at) to its first RCA result.",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.llm_tokens = Counter(
            "rcaflow_llm_tokens_total",
            "Tokens the LLM second opinion spent, by model.",
            ["model"],
            registry=registry,
        )
        self.llm_latency = Histogram(
            "rcaflow_llm_latency_seconds",
            "LLM answer time per incident (all calls of one analysis), by model.",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.actions = Counter(
            "rcaflow_actions_total",
            "Action state changes written, by state and risk.",
            ["state", "risk"],
            registry=registry,
        )

    @contextmanager
    def timed(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.latency.labels(stage).observe(time.perf_counter() - start)
