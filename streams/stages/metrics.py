"""Per-stage Prometheus metrics, on an injectable registry so tests use a fresh one.

Every metric here carries ``tenant`` (bounded by the configured tenants: :mod:`schemas.tenant_label`). Stages
do not pass it along: the agent edge notes the tenant of the record in hand (:func:`record_in_hand`, from the
record's key, which always starts with the tenant) in a context variable of the agent's task, and every
count, failure and timing of that record is labelled with it. A caller that knows better (the API, from the
token; a stage, from the decoded record) passes ``tenant=`` explicitly.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram

from schemas.tenant_label import TenantLabels

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
#: A record may wait from milliseconds (keeping up) to hours (a backlog after an outage).
WAIT_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)


@dataclass(frozen=True, slots=True)
class InHand:
    """The record an agent's task is working on: its tenant and when it was written to its topic."""

    tenant: str = ""
    #: The record's Kafka timestamp in seconds since the epoch (None: the broker gave none).
    written_at: float | None = None


_NOTHING_IN_HAND = InHand()
_IN_HAND: ContextVar[InHand | None] = ContextVar("rcaflow_record_in_hand", default=None)


def tenant_of_key(key: bytes | str | None) -> str:
    """The tenant part of an rcaflow record key (``tenant`` or ``tenant:...``)."""
    text = key.decode("utf-8", "replace") if isinstance(key, bytes) else (key or "")
    return text.split(":", 1)[0]


def record_in_hand(key: bytes | str | None, written_at: float | None) -> None:
    """Called by the agent edge for each record it hands to a stage (in the agent's own task)."""
    _IN_HAND.set(InHand(tenant_of_key(key), written_at))


def in_hand() -> InHand:
    return _IN_HAND.get() or _NOTHING_IN_HAND


class StageMetrics:
    """``rcaflow_stage_*``: what each stage took in, how it ended, how long it took and waited, per tenant."""

    def __init__(self, registry: CollectorRegistry = REGISTRY, *, tenants: Collection[str] = ()) -> None:
        #: The configured tenants: the only values a ``tenant`` label takes (anything else is ``_other``).
        self.tenant_label = TenantLabels.of(tenants)
        self.processed = Counter(
            "rcaflow_stage_processed_total",
            "Records a stage finished, by outcome (ok, dead_letter, duplicate, replayed, dropped) and tenant.",
            ["stage", "outcome", "tenant"],
            registry=registry,
        )
        self.failed = Counter(
            "rcaflow_stage_failed_total",
            "Records a stage could not handle (sent to dead-letter), by error type and tenant.",
            ["stage", "error_type", "tenant"],
            registry=registry,
        )
        self.latency = Histogram(
            "rcaflow_stage_latency_seconds",
            "Time a stage spent on one record, by tenant.",
            ["stage", "tenant"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.wait = Histogram(
            "rcaflow_stage_wait_seconds",
            "How long a record waited on its input topic before its stage took it (from the record's Kafka "
            "timestamp), by tenant: consumer lag in time, per tenant.",
            ["stage", "tenant"],
            buckets=WAIT_BUCKETS,
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
            "Tokens the LLM second opinion spent, by model and tenant.",
            ["model", "tenant"],
            registry=registry,
        )
        self.llm_latency = Histogram(
            "rcaflow_llm_latency_seconds",
            "LLM answer time per incident (all calls of one analysis), by model and tenant.",
            ["model", "tenant"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.llm_errors = Counter(
            "rcaflow_llm_errors_total",
            "LLM second opinions without a usable answer, by kind (unavailable, circuit_open, context_overflow, "
            "request, invalid_answer) and tenant; unavailable ones are retried.",
            ["kind", "tenant"],
            registry=registry,
        )
        self.actions = Counter(
            "rcaflow_actions_total",
            "Action state changes written, by state, risk and tenant.",
            ["state", "risk", "tenant"],
            registry=registry,
        )
        # Mail outcomes of the normalize stage (reasons: producers/mail/not_alert.py, producers/mail/row_check.py).
        self.mail_not_alert = Counter(
            "rcaflow_mail_not_alert_total",
            "Mails that are not alerts (kept in dead-letter, never triaged), by reason (delivery_report, "
            "auto_reply, calendar_invite, newsletter, no_alert_evidence) and tenant.",
            ["reason", "tenant"],
            registry=registry,
        )
        self.mail_rows_rejected = Counter(
            "rcaflow_mail_rows_rejected_total",
            "Rows of alert mails that are not alerts (a pod name in the alert column, no severity ...), by reason "
            "and tenant; the mail's other rows go on.",
            ["reason", "tenant"],
            registry=registry,
        )

    def tenant(self, tenant: str | None = None) -> str:
        """The label value for ``tenant``, or, when None, for the record in hand."""
        return self.tenant_label(in_hand().tenant if tenant is None else tenant)

    def count(self, stage: str, outcome: str, *, tenant: str | None = None) -> None:
        self.processed.labels(stage=stage, outcome=outcome, tenant=self.tenant(tenant)).inc()

    def fail(self, stage: str, error_type: str, *, tenant: str | None = None) -> None:
        self.failed.labels(stage=stage, error_type=error_type, tenant=self.tenant(tenant)).inc()

    @contextmanager
    def timed(self, stage: str, *, tenant: str | None = None) -> Iterator[None]:
        """Times ``stage`` on the record in hand; also how long that record waited for it, when known."""
        start = time.perf_counter()
        record = in_hand()
        label = self.tenant(tenant)
        if record.written_at is not None and tenant is None:
            self.wait.labels(stage=stage, tenant=label).observe(max(0.0, time.time() - record.written_at))
        try:
            yield
        finally:
            self.latency.labels(stage=stage, tenant=label).observe(time.perf_counter() - start)
