"""An alert without namespace/pod labels still gets evidence (the plan's variants), and an address is no workload."""

from __future__ import annotations

from datetime import datetime

import pytest

from policies import PolicySet, dedup, triage
from policies.triage import alternative_queries
from policies.validate import is_valid
from schemas.records import EvidenceStatus, Incident
from tests.unit.policies.conftest import EventFactory

#: vmalert's RecordingRulesError is ``sum(increase(...)) without(id)``: job, instance, group, file, recording.
VMALERT_LABELS = {"job": "vmalert", "instance": "10.6.0.12:8880", "group": "k8s.rules", "file": "/rules/k8s.yml"}


def _incident(policies: PolicySet, make_event: EventFactory, now: datetime, alert: str,
              labels: dict[str, str]) -> Incident:
    out = dedup(None, make_event(alert, labels), policies.dedup_window("rule_evaluation_failures"), now)
    assert out.incident is not None
    return out.incident


def test_an_alert_by_job_instance_group_gets_the_variant_queries(
    policies: PolicySet, make_event: EventFactory, now: datetime
) -> None:
    incident = _incident(policies, make_event, now, "RecordingRulesError", VMALERT_LABELS)
    result = triage(incident, policies, now)
    plan = [e for e in result.evidence if e.tool == "prom"]
    assert plan and all(e.status is EvidenceStatus.SKIPPED for e in plan), [e.error for e in plan]
    assert plan[0].query == ('sum(increase(vmalert_recording_rules_errors_total{job="vmalert", '
                             'instance="10.6.0.12:8880", group="k8s.rules"}[5m]))')
    # The older vmalert's gauge is tried in the same form.
    assert alternative_queries(incident, policies)["recording_errors"] == (
        'sum(max_over_time(vmalert_recording_rules_error{job="vmalert", instance="10.6.0.12:8880", '
        'group="k8s.rules"}[5m]))',)
    assert all("namespace" not in e.query for e in plan)


def test_the_first_variant_whose_variables_are_all_there_is_planned(
    policies: PolicySet, make_event: EventFactory, now: datetime
) -> None:
    no_group = {k: v for k, v in VMALERT_LABELS.items() if k != "group"}
    result = triage(_incident(policies, make_event, now, "RecordingRulesError", no_group), policies, now)
    assert result.evidence[0].query == ('sum(increase(vmalert_recording_rules_errors_total{job="vmalert", '
                                        'instance="10.6.0.12:8880"}[5m]))')
    with_ns = triage(_incident(policies, make_event, now, "RecordingRulesError",
                               {**VMALERT_LABELS, "namespace": "insight-system"}), policies, now)
    assert with_ns.evidence[0].query == ('sum(increase(vmalert_recording_rules_errors_total'
                                         '{namespace="insight-system"}[5m]))')


def test_without_any_usable_labels_the_step_says_what_is_missing(
    policies: PolicySet, make_event: EventFactory, now: datetime
) -> None:
    result = triage(_incident(policies, make_event, now, "RecordingRulesError", {}), policies, now)
    assert result.evidence[0].status is EvidenceStatus.ERROR
    assert "namespace" in (result.evidence[0].error or "")


def test_an_instance_address_is_never_the_workload_actions_target(
    policies: PolicySet, make_event: EventFactory, now: datetime
) -> None:
    labels = {**VMALERT_LABELS, "namespace": "insight-system", "workload": "10.6.0.12"}
    result = triage(_incident(policies, make_event, now, "RecordingRulesError", labels), policies, now)
    assert all("10.6.0.12" not in value for action in result.actions for value in action.params.values())
    refused = [e for e in result.evidence if e.operation == "render_action"]
    assert refused and all("workload_name" in (e.error or "") for e in refused)


@pytest.mark.parametrize("value", ["10.6.0.12", "fd00::1", "vmalert-0.vmalert:8880"])
def test_an_address_is_not_a_workload_name(value: str) -> None:
    assert not is_valid("workload_name", value)
    assert is_valid("workload_name", "vmalert-insight-0")


def test_victoriametrics_own_alert_by_instance_reads_that_instance(
    policies: PolicySet, make_event: EventFactory, now: datetime
) -> None:
    labels = {"job": "vminsert", "instance": "10.6.0.21:8480", "reason": "too_long_label"}
    event = make_event("RowsRejectedOnIngestion", labels)
    assert event.alert_class == "vminsert_write_errors"
    incident = dedup(None, event, policies.dedup_window(event.alert_class), now).incident
    assert incident is not None
    by_tool = {e.query.split("{")[0]: e for e in triage(incident, policies, now).evidence if e.tool == "prom"}
    saturation = by_tool["max(vm_concurrent_insert_current"]
    assert saturation.status is EvidenceStatus.SKIPPED
    assert 'instance="10.6.0.21:8480"' in saturation.query
