"""Per-stage Prometheus metrics, on an injectable registry so tests use a fresh one."""

from __future__ import annotations

import time
from collections.abc import Collection, Iterator
from contextlib import contextmanager

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class StageMetrics:
    """``rcaflow_stage_*``: what each stage took in, how it ended, and how long it took."""

    def __init__(self, registry: CollectorRegistry = REGISTRY, *, tenants: Collection[str] = ()) -> None:
        #: The configured tenants: the only values a ``tenant`` label takes (anything else is "other").
        self.tenants = frozenset(tenants)
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
            "From the alert's arrival (received_at) to its first RCA result, by tenant.",
            ["tenant"],
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
        self.llm_errors = Counter(
            "rcaflow_llm_errors_total",
            "LLM second opinions without a usable answer, by kind (unavailable, circuit_open, context_overflow, "
            "request, invalid_answer); unavailable ones are retried.",
            ["kind"],
            registry=registry,
        )
        self.actions = Counter(
            "rcaflow_actions_total",
            "Action state changes written, by state and risk.",
            ["state", "risk"],
            registry=registry,
        )
        # Mail outcomes of the normalize stage (reasons: producers/mail/not_alert.py, producers/mail/row_check.py).
        self.mail_not_alert = Counter(
            "rcaflow_mail_not_alert_total",
            "Mails that are not alerts (kept in dead-letter, never triaged), by reason (delivery_report, "
            "auto_reply, calendar_invite, newsletter, no_alert_evidence).",
            ["reason"],
            registry=registry,
        )
        self.mail_rows_rejected = Counter(
            "rcaflow_mail_rows_rejected_total",
            "Rows of alert mails that are not alerts (a pod name in the alert column, no severity ...), by reason; "
            "the mail's other rows go on.",
            ["reason"],
            registry=registry,
        )

    def tenant_label(self, tenant: str) -> str:
        """``tenant`` when configured, else "other": a record's tenant field must not grow the label set."""
        return tenant if tenant in self.tenants else "other"

    @contextmanager
    def timed(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.latency.labels(stage).observe(time.perf_counter() - start)
