"""What looks like an alert name and a severity, and what is a shifted or foreign cell."""

from __future__ import annotations

import pytest

from producers.mail import load_templates
from producers.mail.row_check import REASONS, alert_name_problem, check_row, severity_problem

TPL = load_templates().get("dce5_control_cluster_details")

ALERT_NAMES = [
    "KubePodCrashLooping", "etcdHighFsyncDurations", "RowsRejectedOnIngestion", "vm_rows_ignored_total",
    "RecordingRulesError", "日志泛滥告警", "容器日志泛滥", "节点 CPU 使用率过高", "High CPU usage on node",
    "Zabbix agent is not available (for 3m)", "Watchdog", "instance:node_cpu:ratio", "RPCErrors",
    'Foo"}) or vector(1) #', "UnknownLevelAlert", "KubeAPIDown",
]  # fmt: skip

NOT_ALERT_NAMES = [
    ("", "alert_name_empty"),
    ("   ", "alert_name_empty"),
    ("x" * 161, "alert_name_too_long"),
    ("10.233.90.41:8080", "alert_name_address"),
    ("10.20.1.11", "alert_name_address"),
    ("[fe80::1]:9100", "alert_name_address"),
    ("vminsert.insight-system:8480", "alert_name_address"),
    ("https://grafana.example.test/d/abc", "alert_name_address"),
    ("oncall@example.test", "alert_name_address"),
    ("2026-11-25 17:59:52", "alert_name_time"),
    ("2026年11月25日 17:59", "alert_name_time"),
    ("17:59:52", "alert_name_time"),
    ("42", "alert_name_time"),
    ("3.5s", "alert_name_time"),
    ("amamba-jenkins-0", "alert_name_workload"),
    ("vmalert-insight-victoria-metrics-k8s-stack-7b5c9d8f6-hk2lq", "alert_name_workload"),
    ("insight-system", "alert_name_workload"),
    ("name-abc12-xyz9", "alert_name_workload"),
    ("35b54a48-b66c-467b-a8dc-503c40826330", "alert_name_workload"),
    ("警告", "alert_name_severity"),
    ("critical", "alert_name_severity"),
    ("P2", "alert_name_severity"),
    ("已恢复", "alert_name_severity"),
    ("every alert is classified by the policy file", "alert_name_sentence"),
    ("see docs/policies.md", "alert_name_sentence"),
    ("共 5 条告警，请及时处理。", "alert_name_sentence"),
    ("The disk is full. Please clean up", "alert_name_sentence"),
]


@pytest.mark.parametrize("name", ALERT_NAMES)
def test_alert_names_pass(name: str) -> None:
    assert alert_name_problem(name, TPL) is None


@pytest.mark.parametrize(("name", "reason"), NOT_ALERT_NAMES)
def test_what_is_not_an_alert_name_is_rejected_with_its_reason(name: str, reason: str) -> None:
    problem = alert_name_problem(name, TPL)
    assert problem is not None and problem[0] == reason
    assert reason in REASONS


@pytest.mark.parametrize("value", ["严重", "警告", "critical", "P1", "p3", "未知级别", "3", "Sev2"])
def test_severity_words_pass_even_unknown_ones(value: str) -> None:
    assert severity_problem(value, TPL) is None


@pytest.mark.parametrize(
    ("value", "reason"),
    [("", "severity_missing"), ("2026-11-25 08:00:00", "severity_invalid"), ("insight-system", "severity_invalid"),
     ("10.0.0.1:9100", "severity_invalid"), ("Jenkins restarted 3 times in 5 minutes", "severity_invalid"),
     ("1245330", "severity_invalid")],
)  # fmt: skip
def test_a_severity_cell_without_a_severity_is_rejected(value: str, reason: str) -> None:
    problem = severity_problem(value, TPL)
    assert problem is not None and problem[0] == reason


def test_a_tenant_severity_word_counts_as_a_severity_and_not_as_an_alert_name() -> None:
    assert severity_problem("sev-one", TPL, {"sev-one": "P1"}) is None
    assert alert_name_problem("Blocker", TPL, {"Blocker": "P1"}) == (
        "alert_name_severity", "'Blocker' is a severity or status word, not an alert name")


def test_check_row_names_where_and_why() -> None:
    row = check_row({"alert": "amamba-jenkins-0", "severity": "警告"}, "table 1 row 3", TPL)
    assert row is not None and row.reason == "alert_name_workload"
    assert row.describe().startswith("table 1 row 3: alert_name_workload: 'amamba-jenkins-0'")
    empty = check_row({"alert": "JenkinsRestarted", "severity": ""}, "table 1 row 4", TPL)
    assert empty is not None and empty.reason == "severity_missing"
    assert check_row({"alert": "JenkinsRestarted"}, "line 3", TPL) is None  # no severity column: nothing to check
    labels = load_templates().get("alertmanager_default")  # a severity label says what it is, whatever its value
    assert check_row({"alert": "KubeAPIDown", "severity": "high-priority"}, "line 3", labels) is None
