"""Triage: a deterministic policy RCA per class, with rendered evidence queries and safe actions."""

from __future__ import annotations

from datetime import datetime

import pytest

from policies import PolicySet, action_id_for, dedup, triage
from schemas.records import EvidenceStatus, Incident, Risk
from tests.unit.policies.conftest import EventFactory
from tests.unit.policies.policy_samples import REALISTIC


def _incident(
    policies: PolicySet, make_event: EventFactory, now: datetime, alert: str, labels: dict[str, str], **kw: object
) -> Incident:
    event = make_event(alert, labels, **kw)
    out = dedup(None, event, policies.dedup_window(event.alert_class), now)
    assert out.incident is not None
    return out.incident


@pytest.mark.parametrize("class_id", sorted(REALISTIC))
def test_each_class_gets_a_policy_rca(
    policies: PolicySet, make_event: EventFactory, now: datetime, class_id: str
) -> None:
    alert, labels = REALISTIC[class_id]
    incident = _incident(policies, make_event, now, alert, labels)
    result = triage(incident, policies, now)
    cls = policies.get(class_id)
    assert cls is not None

    assert result.alert_class == class_id and result.engine == "policy"
    assert result.incident_id == incident.incident_id and result.incident == incident
    # Without measurements the class's fallback diagnosis is used.
    assert result.diagnosis == cls.spec.diagnoses[-1].diagnosis
    assert 0 < result.confidence < 0.6
    # Every evidence step is planned with its exact query, values of the event's labels inserted.
    assert [e.status for e in result.evidence] == [EvidenceStatus.SKIPPED] * len(cls.spec.evidence)
    assert all("${" not in e.query for e in result.evidence)
    rendered = " ".join(e.query for e in result.evidence)
    if "${namespace}" in " ".join(step.query for step in cls.spec.evidence):
        assert labels["namespace"] in rendered
    # At least one automatic action and one high-risk action, with deterministic ids.
    assert any(a.risk in (Risk.READ, Risk.LOW) for a in result.actions)
    assert any(a.risk is Risk.HIGH for a in result.actions)
    for action in result.actions:
        assert action.action_id == action_id_for(incident.incident_id, action.name)
        assert action.params
    assert result.rollback == [f"{a.name}: {a.rollback}" for a in result.actions if a.rollback]
    assert triage(incident, policies, now) == result


def test_targets_are_derived_from_pod_names(policies: PolicySet, make_event: EventFactory, now: datetime) -> None:
    jenkins = triage(_incident(policies, make_event, now, *REALISTIC["jenkins_restart"]), policies, now)
    restart = next(a for a in jenkins.actions if a.name == "restart_controller")
    assert restart.params == {"namespace": "amamba-system", "kind": "statefulset", "name": "amamba-jenkins"}

    vmalert = triage(_incident(policies, make_event, now, *REALISTIC["vmalert_config_reload_failure"]), policies, now)
    restart = next(a for a in vmalert.actions if a.name == "restart_vmalert")
    assert restart.params["name"] == "vmalert-insight-victoria-metrics-k8s-stack"
    reload = next(a for a in vmalert.actions if a.name == "reload_vmalert")
    assert reload.params == {"target": "vmalert"}


def test_promql_regex_placeholder_is_escaped(policies: PolicySet, make_event: EventFactory, now: datetime) -> None:
    result = triage(_incident(policies, make_event, now, *REALISTIC["vminsert_write_errors"]), policies, now)
    saturation = next(e for e in result.evidence if "vm_concurrent_insert_current" in e.query)
    assert 'pod=~"vminsert-insight-victoria-metrics-k8s-stack-.*"' in saturation.query


def test_silence_is_proposed_only_for_a_flapping_alert(
    policies: PolicySet, make_event: EventFactory, now: datetime
) -> None:
    alert, labels = REALISTIC["etcd_latency"]
    once = triage(_incident(policies, make_event, now, alert, labels), policies, now)
    assert "silence_flapping" not in {a.name for a in once.actions}
    flapping = triage(_incident(policies, make_event, now, alert, labels, times=5), policies, now)
    silence = next(a for a in flapping.actions if a.name == "silence_flapping")
    assert silence.params["alertname"] == "etcdHighFsyncDurations"
    assert silence.params["cluster"] == "HK-DCE5-PLATFORM"
    assert silence.params["duration"] == "30m"
    assert silence.params["comment"].startswith("rcaflow incident ")


HOSTILE = 'a"}) or vector(1) #'


@pytest.mark.parametrize("label", ["namespace", "workload"])
def test_hostile_labels_never_reach_a_query_or_a_param(
    policies: PolicySet, make_event: EventFactory, now: datetime, label: str
) -> None:
    alert, labels = REALISTIC["prometheus_remote_write_behind"]
    incident = _incident(policies, make_event, now, alert, {**labels, label: HOSTILE})
    result = triage(incident, policies, now)
    for evidence in result.evidence:
        assert HOSTILE not in evidence.query
        assert "vector(1)" not in evidence.query
    for action in result.actions:
        assert all("vector(1)" not in value for value in action.params.values())
    errors = [e for e in result.evidence if e.status is EvidenceStatus.ERROR]
    assert errors, "the unsafe label is reported, not silently dropped"
    assert any("not a valid" in (e.error or "") for e in errors)
    # Nothing that targets the workload is proposed with a hostile label.
    assert "restart_prometheus_pod" not in {a.name for a in result.actions}


def test_measured_evidence_selects_the_diagnosis(policies: PolicySet, make_event: EventFactory, now: datetime) -> None:
    incident = _incident(policies, make_event, now, *REALISTIC["prometheus_remote_write_behind"])
    result = triage(incident, policies, now, {"lag_seconds": 300, "failed_rate": 12.5, "receiver_errors": 0})
    assert result.diagnosis.startswith("Remote write is behind because the receiver (vminsert) rejects")
    assert result.confidence == 0.8
    lag = next(e for e in result.evidence if "highest_sent_timestamp" in e.query)
    assert lag.status is EvidenceStatus.SUCCESS and lag.summary.startswith("lag_seconds = 300")


def test_unclassified_gets_no_actions(policies: PolicySet, make_event: EventFactory, now: datetime) -> None:
    incident = _incident(policies, make_event, now, "KubePodCrashLooping", {"namespace": "shop", "workload": "api-0"})
    assert incident.alert_class == "unclassified"
    result = triage(incident, policies, now)
    assert result.actions == [] and result.evidence == []
    assert result.diagnosis.startswith("Unclassified alert 'KubePodCrashLooping'")
    assert result.confidence == 0.0
