"""Realistic alerts land in their class; everything else is unclassified; windows and priorities follow."""

from __future__ import annotations

from datetime import timedelta

import pytest

from policies import UNCLASSIFIED, PolicySet
from tests.unit.policies.conftest import EventFactory
from tests.unit.policies.policy_samples import CLUSTER, REALISTIC


@pytest.mark.parametrize("class_id", sorted(REALISTIC))
def test_each_class_from_a_realistic_event(policies: PolicySet, make_event: EventFactory, class_id: str) -> None:
    alert, labels = REALISTIC[class_id]
    assert policies.classify(make_event(alert, labels, classify=False)) == class_id


@pytest.mark.parametrize(
    ("alert", "labels", "expected"),
    [
        ("JenkinsRestart", {}, "jenkins_restart"),
        ("VMAlertConfigReloadFailure", {}, "vmalert_config_reload_failure"),
        ("ConfigurationReloadFailure", {"job": "vmalert-insight"}, "vmalert_config_reload_failure"),
        ("ConfigurationReloadFailure", {"job": "vmagent", "workload": "vmagent-0"}, UNCLASSIFIED),
        ("LogFlood", {}, "log_flood"),
        ("InsightLogFlood", {}, "log_flood"),
        ("日志泛滥", {}, "log_flood"),
        ("Pod日志泛滥告警", {}, "log_flood"),
        ("AlertingRulesError", {}, "rule_evaluation_failures"),
        ("PrometheusRuleFailures", {}, "rule_evaluation_failures"),
        ("PrometheusMissingRuleEvaluations", {}, "rule_evaluation_failures"),
        ("VMInsertWriteErrors", {}, "vminsert_write_errors"),
        ("RPCErrors", {"job": "vminsert"}, "vminsert_write_errors"),
        ("RPCErrors", {"job": "vmselect", "workload": "vmselect-0"}, UNCLASSIFIED),
        ("etcdhighcommitdurations", {}, "etcd_latency"),
        ("ETCDMEMBERCOMMUNICATIONSLOW", {}, "etcd_latency"),
        ("KubePodCrashLooping", {"namespace": "shop"}, UNCLASSIFIED),
        ("", {}, UNCLASSIFIED),
    ],
)
def test_alert_names_and_label_matchers(
    policies: PolicySet, make_event: EventFactory, alert: str, labels: dict[str, str], expected: str
) -> None:
    full = {"cluster": CLUSTER, "namespace": "insight-system", **labels}
    assert policies.classify(make_event(alert, full, classify=False)) == expected


def test_hostile_label_cannot_force_a_class(policies: PolicySet, make_event: EventFactory) -> None:
    event = make_event("ConfigurationReloadFailure", {"job": 'x"} or vmalert'}, classify=False)
    assert policies.classify(event) == UNCLASSIFIED


def test_dedup_window_per_class_with_default(policies: PolicySet) -> None:
    assert policies.dedup_window("jenkins_restart") == timedelta(hours=1)
    assert policies.dedup_window("log_flood") == timedelta(hours=2)
    assert policies.dedup_window("prometheus_remote_write_behind") == timedelta(minutes=30)
    assert policies.dedup_window(UNCLASSIFIED) == timedelta(minutes=30)


@pytest.mark.parametrize(
    ("severity", "class_id", "expected"),
    [
        ("警告", "jenkins_restart", "P3"),
        ("warning", "etcd_latency", "P2"),
        ("Critical", "prometheus_remote_write_behind", "P2"),
        ("提示", "log_flood", "P4"),
        ("P3", UNCLASSIFIED, "P3"),
        ("weird", UNCLASSIFIED, "weird"),
    ],
)
def test_severity_map(
    policies: PolicySet, make_event: EventFactory, severity: str, class_id: str, expected: str
) -> None:
    event = make_event("X", {}, severity=severity, classify=False)
    assert policies.severity(event, class_id) == expected
