"""The executor's Prometheus metrics: what it started, how each run ended, how long it took, rollbacks.

Label values stay bounded: ``action`` is ``tool.operation`` of a record the verifier already matched
against the policy file (so only the policy's operations appear), ``outcome`` and ``error_type`` come
from rcaflow's own code (state names, exception class names), never from record text, and ``tenant`` is a
configured tenant or ``_other`` (:mod:`schemas.tenant_label`).
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

from schemas.records import ActionEvent, ActionState
from schemas.tenant_label import TenantLabels

#: Actions run from seconds (a silence) to many minutes (a rollout watched until ready).
DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)

_BY_REGISTRY: weakref.WeakKeyDictionary[CollectorRegistry, ExecutorMetrics] = weakref.WeakKeyDictionary()


def action_kind(action: ActionEvent) -> str:
    return f"{action.tool}.{action.operation}"


def outcome_of(action: ActionEvent) -> str:
    """``dry_run`` for a preview, never ``succeeded``: a dry run changed nothing."""
    if action.state is ActionState.SUCCEEDED and action.dry_run:
        return "dry_run"
    return action.state.value


class ExecutorMetrics:
    """``rcaflow_executor_*``; one set per registry (:meth:`on`), however many executors a process builds."""

    def __init__(self, registry: CollectorRegistry = REGISTRY, *, tenants: Iterable[str] = ()) -> None:
        self.tenant = TenantLabels.of(tenants)
        self.started = Counter("rcaflow_executor_actions_started_total",
                               "Actions the executor started (written running), by action, whether a dry run, "
                               "and tenant.", ["action", "dry_run", "tenant"], registry=registry)
        self.finished = Counter("rcaflow_executor_actions_finished_total",
                                "Actions the executor finished, by action, outcome (succeeded, dry_run, failed, "
                                "interrupted) and tenant.", ["action", "outcome", "tenant"], registry=registry)
        self.failures = Counter("rcaflow_executor_action_failures_total",
                                "Actions that ended failed, by action, error type and tenant.",
                                ["action", "error_type", "tenant"], registry=registry)
        self.duration = Histogram("rcaflow_executor_action_duration_seconds",
                                  "From running to the outcome (confirmation included), by action, outcome and "
                                  "tenant.", ["action", "outcome", "tenant"], buckets=DURATION_BUCKETS,
                                  registry=registry)
        self.ledger_actions = Gauge("rcaflow_executor_ledger_actions",
                                    "Started actions the executor remembers to refuse a replayed approval: those "
                                    "started within the longest approval validity (plus clock skew); its memory "
                                    "grows with this, about 0.3 KB each.", registry=registry)
        self.commit_wait = Gauge("rcaflow_executor_commit_wait_seconds",
                                 "How long the executor's offset commits have gone unanswered by the group "
                                 "coordinator (0: none; it grows across commits asked again). Approvals keep "
                                 "running meanwhile; minutes here mean a "
                                 "restart would read much again.", registry=registry)
        self.rollbacks = Counter("rcaflow_executor_rollbacks_total",
                                 "Automatic rollbacks the executor ran, by the rolled-back action, outcome and "
                                 "tenant.", ["action", "outcome", "tenant"], registry=registry)

    @classmethod
    def on(cls, registry: CollectorRegistry = REGISTRY, *, tenants: Iterable[str] = ()) -> ExecutorMetrics:
        """The registry's one set; ``tenants`` (the configured ones) count only when this call creates it."""
        metrics = _BY_REGISTRY.get(registry)
        if metrics is None:
            metrics = _BY_REGISTRY[registry] = cls(registry, tenants=tenants)
        return metrics

    def start(self, running: ActionEvent) -> None:
        self.started.labels(action_kind(running), "true" if running.dry_run else "false",
                            self.tenant(running.tenant)).inc()

    def finish(self, final: ActionEvent, seconds: float | None, error_type: str | None = None, *,
               interrupted: bool = False) -> None:
        """One finished run; ``seconds`` is None when this process did not see it start (a settled leftover).
        ``interrupted``: the run was cut off (stop, crash) and recorded failed without an outcome of its own."""
        kind, tenant = action_kind(final), self.tenant(final.tenant)
        outcome = "interrupted" if interrupted else outcome_of(final)
        error_type = "interrupted" if interrupted else error_type
        self.finished.labels(kind, outcome, tenant).inc()
        if seconds is not None:
            self.duration.labels(kind, outcome, tenant).observe(seconds)
        if final.state is ActionState.FAILED:
            self.failures.labels(kind, error_type or "unknown", tenant).inc()

    def rolled_back(self, original: ActionEvent, rollback: ActionEvent) -> None:
        self.rollbacks.labels(action_kind(original), outcome_of(rollback), self.tenant(original.tenant)).inc()
