"""The executor's metrics after real runs on a real broker: started, finished by outcome (dry runs apart), the
duration, failures by error type, and the automatic rollback."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry

from executors import ConfirmPolicy, ToolRegistry
from producers.publisher import KafkaPublisher
from schemas.codec import Codec, make_codec
from schemas.records import ActionEvent, ActionState, Record, Risk
from schemas.topics import ACTIONS
from streams.executor.metrics import ExecutorMetrics
from streams.executor.service import ExecutorService
from streams.wiring.topics_admin import ensure_topics
from tests.integration.flow.conftest import TEST_APPROVER, signed, verifier_for
from tests.integration.flow.helpers import TopicReader
from tests.unit.executors.exec_helpers import k8s_api
from tests.unit.executors.k8s_standin import K8sStandIn

NS = "insight-system"
RESTART = "k8s.rollout_restart"


def _restart(tenant: str, action_id: str, name: str) -> ActionEvent:
    """A signed, approved restart of vmalert's deployment (policy on_failure: undo)."""
    return signed(ActionEvent(
        tenant=tenant, action_id=action_id, incident_id=f"inc-{action_id}", alert_class="vmalert_config_reload_failure",
        name="restart_vmalert", tool="k8s", operation="rollout_restart",
        params={"namespace": NS, "kind": "deployment", "name": name}, risk=Risk.HIGH, state=ActionState.APPROVED,
        dry_run=False, at=datetime.now(UTC), on_failure="undo", approver=TEST_APPROVER))


def _value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples with ``labels`` (whatever their tenant)."""
    return sum(sample.value for family in registry.collect() for sample in family.samples
               if sample.name == name and labels.items() <= sample.labels.items())


def _run(bootstrap: str, codec: Codec, prefix: str, cluster: K8sStandIn, actions: list[ActionEvent], *,
         dry_run: bool, metrics: ExecutorMetrics, done: tuple[str, ...]) -> tuple[list[Record], float]:
    """An executor on ``prefix`` until the actions topic shows each of ``done`` finished (succeeded or rolled
    back); the records on the topic then, and the ledger gauge while the executor still ran."""
    reader = TopicReader(bootstrap, codec, ACTIONS, prefix)
    ledger: list[float] = []

    async def scenario() -> None:
        api = k8s_api(cluster.app())
        publisher = KafkaPublisher(bootstrap, codec, prefix)
        service = ExecutorService(
            bootstrap=bootstrap, codec=codec, publisher=publisher, registry=ToolRegistry({"k8s": api}),
            topic_prefix=prefix, dry_run=dry_run, confirm=ConfirmPolicy(within_s=1.0, every_s=0.05),
            verifier=verifier_for(*{a.tenant for a in actions}), metrics=metrics)
        running = asyncio.create_task(service.run())
        try:
            for action in actions:
                await publisher.publish(ACTIONS, f"{action.tenant}:{action.action_id}", action)

            def finished(records: list[Record]) -> bool:
                ended = {r.action_id for r in records if isinstance(r, ActionEvent)
                         and r.state in (ActionState.SUCCEEDED, ActionState.ROLLED_BACK)}
                return set(done) <= ended

            await asyncio.to_thread(reader.wait_for, finished, 60.0, f"{done} finished")
            ledger.append(_gauge(metrics))
        finally:
            service.stop()
            await running
            publisher.close_sync()
            await api.aclose()

    asyncio.run(scenario())
    records = reader.records
    reader.close()
    return records, ledger[0]


def _gauge(metrics: ExecutorMetrics) -> float:
    """What a scrape reads from the ledger gauge now."""
    return sum(sample.value for family in metrics.ledger_actions.collect() for sample in family.samples)


def test_executor_counts_runs_outcomes_failures_and_rollbacks(broker: object, topic_prefix: str) -> None:
    bootstrap = broker.bootstrap  # type: ignore[attr-defined]
    ensure_topics(bootstrap, topic_prefix, [ACTIONS])
    codec = make_codec(None)
    tenant = f"t-{uuid.uuid4().hex[:6]}"
    cluster = K8sStandIn()
    for name in ("vmalert", "vmalert-ok"):
        cluster.add_workload(NS, "deployments", name, replicas=2)
    cluster.break_rollouts(NS, "deployments", "vmalert")  # its new pods never get ready: failed, then undone
    registry = CollectorRegistry()
    metrics = ExecutorMetrics(registry, tenants=[tenant])

    _records, ledger = _run(bootstrap, codec, topic_prefix, cluster, [_restart(tenant, "act-broken", "vmalert"),
                                                                      _restart(tenant, "act-fine", "vmalert-ok")],
                            dry_run=False, metrics=metrics, done=("act-broken", "act-fine"))

    assert _value(registry, "rcaflow_executor_actions_started_total", action=RESTART, dry_run="false") == 2
    assert _value(registry, "rcaflow_executor_actions_started_total", tenant=tenant) == 2  # the configured tenant
    assert _value(registry, "rcaflow_executor_actions_finished_total", action=RESTART, outcome="succeeded") == 1
    assert _value(registry, "rcaflow_executor_actions_finished_total", action=RESTART, outcome="failed") == 1
    assert _value(registry, "rcaflow_executor_action_failures_total", action=RESTART,
                  error_type="NotConfirmedError") == 1
    assert _value(registry, "rcaflow_executor_rollbacks_total", action=RESTART, outcome="succeeded") == 1
    assert _value(registry, "rcaflow_executor_action_duration_seconds_count", action=RESTART, outcome="succeeded") == 1
    assert _value(registry, "rcaflow_executor_action_duration_seconds_sum", action=RESTART, outcome="failed") > 0
    # The replay check remembers the three runs that started (the two restarts and the rollback), nothing else.
    assert ledger == 3


def test_a_dry_run_is_counted_as_dry_run_never_as_succeeded(broker: object, topic_prefix: str) -> None:
    bootstrap = broker.bootstrap  # type: ignore[attr-defined]
    ensure_topics(bootstrap, topic_prefix, [ACTIONS])
    codec = make_codec(None)
    tenant = f"t-{uuid.uuid4().hex[:6]}"
    cluster = K8sStandIn()
    cluster.add_workload(NS, "deployments", "vmalert", replicas=2)
    registry = CollectorRegistry()

    records, ledger = _run(bootstrap, codec, topic_prefix, cluster, [_restart(tenant, "act-preview", "vmalert")],
                           dry_run=True, metrics=ExecutorMetrics(registry), done=("act-preview",))

    assert [r.dry_run for r in records if isinstance(r, ActionEvent) and r.state is ActionState.SUCCEEDED] == [True]
    assert _value(registry, "rcaflow_executor_actions_started_total", action=RESTART, dry_run="true") == 1
    assert _value(registry, "rcaflow_executor_actions_finished_total", tenant="_other") == 1  # not configured
    assert _value(registry, "rcaflow_executor_actions_finished_total", action=RESTART, outcome="dry_run") == 1
    assert _value(registry, "rcaflow_executor_actions_finished_total", action=RESTART, outcome="succeeded") == 0
    assert ledger == 1  # a preview started too: a replay of its approval must not preview it again
