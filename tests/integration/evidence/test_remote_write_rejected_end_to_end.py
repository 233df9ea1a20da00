"""Issue 19's remote-write incident, end to end through rca and decide against a real Prometheus.

The queue is 600 s behind, 1,005 samples/s fail and it runs at max_shards; there is no vminsert series at all.
``failed_rate > 0 || receiver_errors > 0`` is then true (true OR unknown), so the diagnosis is "the receiver
rejects writes", not the max-shards one the next diagnosis would give.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from schemas.records import ActionEvent, ActionState, AlertEvent, AlertMetrics, EvidenceStatus, Incident, RcaResult
from streams.settings import EvidenceSettings, Settings, TenantSettings
from streams.wiring.runtime import build_stages
from tests.integration.evidence.conftest import RunningPrometheus
from tests.integration.evidence.exporter import FAILED_PER_S


def test_failing_samples_and_no_receiver_series_is_the_receiver_rejecting(prometheus: RunningPrometheus) -> None:
    settings = Settings(evidence=EvidenceSettings(prometheus_url=prometheus.url),
                        tenants={"default": TenantSettings(namespaces=["insight-system"])})
    stages = build_stages(settings, engines=True)
    now = datetime.now(UTC)
    event = AlertEvent(tenant="default", event_id="e-rw-1", fingerprint="fp-rw-1", alert="PrometheusRemoteWriteBehind",
                       severity="P2",
                       labels={"cluster": "HK-DCE5-PLATFORM", "namespace": "insight-system",
                               "pod": "prometheus-insight-agent-1"},
                       metrics=AlertMetrics(times=1), received_at=now, parser="test")
    event = event.model_copy(update={"alert_class": stages.policies.classify(event)})
    assert event.alert_class == "prometheus_remote_write_behind"
    opened = stages.dedup(event, None).outputs[0].record
    assert isinstance(opened, Incident)

    result = asyncio.run(stages.rca(opened)).outputs[0].record
    assert isinstance(result, RcaResult)
    cls = stages.policies.get(result.alert_class)
    assert cls is not None
    by_id = dict(zip([step.id for step in cls.spec.evidence], result.evidence, strict=False))
    assert by_id["failed_rate"].status is EvidenceStatus.SUCCESS
    assert by_id["receiver_errors"].status is EvidenceStatus.NO_DATA  # the missing series: unknown
    failed = float(by_id["failed_rate"].summary.rsplit("= ", 1)[-1].split()[0])
    # The counter grows FAILED_PER_S per second; rate()[5m] over the first seconds of a fresh Prometheus sees
    # less than that, but any failure at all makes the threshold true.
    assert 0.0 < failed <= 1.2 * FAILED_PER_S, by_id["failed_rate"].summary
    assert by_id["shards_ratio"].status is EvidenceStatus.SUCCESS  # the max-shards diagnosis would also hold
    assert "rejects" in result.diagnosis, result.diagnosis
    assert "max_shards" not in result.diagnosis

    decided = stages.decide(result, None)
    actions = {o.record.name: o.record for o in decided.outputs if isinstance(o.record, ActionEvent)}
    assert isinstance(decided.subject, RcaResult) and "rejects" in decided.subject.diagnosis
    assert actions["collect_diagnostics"].state is ActionState.APPROVED
    # The receiver is at fault: restarting the sender cannot help, so the policy's `not_for` keeps it out.
    assert "restart_prometheus_pod" not in actions, sorted(actions)
