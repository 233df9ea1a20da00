"""Classes match what an alert says about itself: its name, its expression, its labels/annotations, name patterns.

Expressions are the upstream rules' own PromQL, carried as Alertmanager/vmalert carry them (the generatorURL).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pytest
import yaml

from policies import UNCLASSIFIED, PolicyFileError, PolicySet, load_policies, parse_policies
from policies.compiled import Rank
from schemas.records import AlertEvent
from tests.unit.policies.conftest import EventFactory

POLICY = load_policies()


def _prometheus_url(expr: str) -> str:
    return f"http://prometheus-0:9090/graph?g0.expr={quote(expr)}&g0.tab=1"


def _event(make_event: EventFactory, alert: str, labels: dict[str, str] | None = None, *,
           expr: str | None = None, url: str | None = None, annotations: dict[str, str] | None = None) -> AlertEvent:
    event = make_event(alert, labels or {}, classify=False)
    notes = dict(annotations or {})
    if expr is not None:
        notes["generatorURL"] = _prometheus_url(expr)
    if url is not None:
        notes["generatorURL"] = url
    return event.model_copy(update={"annotations": notes})


# ------------------------------------------------------------------ every listed upstream name

#: Labels that satisfy a class's label condition where its names alone are not enough (vmagent has a
#: ConfigurationReloadFailure too; RPCErrors fire for every VictoriaMetrics component).
_CONDITION_LABELS = {
    "vmalert_config_reload_failure": {"job": "vmalert-insight"},
    "vminsert_write_errors": {"job": "vminsert-insight"},
}


def _listed_names() -> list[tuple[str, str, bool]]:
    return [
        (cls.id, name, bool(matcher.labels or matcher.labels_any or matcher.annotations))
        for cls in POLICY.classes
        for matcher in cls.spec.match
        for name in matcher.alerts
    ]


def test_every_class_lists_upstream_names_beyond_its_own() -> None:
    names = {name for _, name, _ in _listed_names()}
    # kube-prometheus, VictoriaMetrics rule files, etcd mixin: sourced in the policy file's comments.
    assert {"PrometheusRemoteWriteBehind", "PrometheusRemoteWriteDesiredShards", "PrometheusRemoteStorageFailures",
            "PrometheusRuleFailures", "PrometheusMissingRuleEvaluations", "RowsRejectedOnIngestion",
            "RecordingRulesError", "AlertingRulesError", "ConfigurationReloadFailure", "TooManyLogs",
            "TooManyMissedIterations", "VminsertVmstorageConnectionIsSaturated", "etcdHighFsyncDurations",
            "etcdHighCommitDurations", "etcdMemberCommunicationSlow", "etcdGRPCRequestsSlow"} <= names
    assert len({class_id for class_id, _, _ in _listed_names()}) == 9


@pytest.mark.parametrize(("class_id", "name", "conditional"), _listed_names(),
                         ids=[f"{c}:{n}" for c, n, _ in _listed_names()])
def test_every_listed_name_classifies_to_its_class(
    make_event: EventFactory, class_id: str, name: str, conditional: bool
) -> None:
    labels = _CONDITION_LABELS[class_id] if conditional else {}
    classification = POLICY.classification(make_event(name, labels, classify=False))
    assert (classification.alert_class, classification.rank) == (class_id, Rank.NAME)


# ------------------------------------------------------------------ the expression

@pytest.mark.parametrize(
    ("alert", "expr", "expected"),
    [
        # VictoriaMetrics alerts-health.yml / alerts-cluster.yml, under names the policy does not list.
        ("VMRowsIgnored", "rate(vm_rows_ignored_total[5m]) > 0", "vminsert_write_errors"),
        ("WriteAPIErrors", 'increase(vm_http_request_errors_total{path="/insert/0/prometheus/api/v1/write"}[5m]) > 0',
         "vminsert_write_errors"),
        # kube-prometheus' expressions: the three remote-write classes told apart by their metrics.
        ("RWLag", "(max_over_time(prometheus_remote_storage_highest_timestamp_in_seconds{job=\"prometheus-k8s\"}[5m])"
                  " - ignoring(remote_name, url) group_right max_over_time("
                  "prometheus_remote_storage_queue_highest_sent_timestamp_seconds{job=\"prometheus-k8s\"}[5m])) > 120",
         "prometheus_remote_write_behind"),
        ("RWShards", "(max_over_time(prometheus_remote_storage_shards_desired[5m]) > "
                     "max_over_time(prometheus_remote_storage_shards_max[5m]))",
         "prometheus_remote_write_desired_shards"),
        ("RWFailing", "((rate(prometheus_remote_storage_failed_samples_total[5m]) or "
                      "rate(prometheus_remote_storage_samples_failed_total[5m])) / ((rate("
                      "prometheus_remote_storage_failed_samples_total[5m]) or rate("
                      "prometheus_remote_storage_samples_failed_total[5m])) + (rate("
                      "prometheus_remote_storage_succeeded_samples_total[5m]) or rate("
                      "prometheus_remote_storage_samples_total[5m])))) * 100 > 1",
         "prometheus_remote_storage_failures"),
        # Any other remote-storage metric: the remote-write class in general (a wildcard, outranked above).
        ("RWBytes", "rate(prometheus_remote_storage_bytes_total[5m]) == 0", "prometheus_remote_write_behind"),
        # etcd mixin: histograms are selected through their _bucket series.
        ("DiskSlow", 'histogram_quantile(0.99, rate(etcd_disk_wal_fsync_duration_seconds_bucket{job=~".*etcd.*"}[5m]))'
                     " > 0.5", "etcd_latency"),
        ("CommitSlow", "histogram_quantile(0.99, sum by (instance, le) (rate("
                       "etcd_disk_backend_commit_duration_seconds_bucket[5m]))) > 0.25", "etcd_latency"),
        ("PeersSlow", "histogram_quantile(0.99, rate(etcd_network_peer_round_trip_time_seconds_bucket[5m])) > 0.15",
         "etcd_latency"),
        # Log-line rates.
        ("NoisyPods", "sum by (namespace, pod) (rate(fluentbit_input_records_total[5m])) > 1000", "log_flood"),
        ("ChattyApp", "sum(rate(app_log_lines_total[1m])) by (pod) > 500", "log_flood"),
        ("VMErrorsLogged", 'sum(increase(vm_log_messages_total{level="error"}[5m])) without (app_version, location)'
                           " > 0", "log_flood"),
        ("RulesBroken", "sum(increase(vmalert_recording_rules_errors_total[5m])) without(id) > 0",
         "rule_evaluation_failures"),
        ("ReloadBroken", "vmalert_config_last_reload_successful != 1", "vmalert_config_reload_failure"),
    ],
)
def test_an_unlisted_name_is_classified_by_its_expression(
    make_event: EventFactory, alert: str, expr: str, expected: str
) -> None:
    classification = POLICY.classification(_event(make_event, alert, expr=expr))
    assert (classification.alert_class, classification.rank) == (expected, Rank.EXPRESSION)


def test_without_its_expression_the_same_unlisted_alert_is_unclassified(make_event: EventFactory) -> None:
    assert POLICY.classify(_event(make_event, "VMRowsIgnored")) == UNCLASSIFIED


@pytest.mark.parametrize(
    "url",
    [
        # vmalert -external.alert.source='vmui/#/?g0.expr={{.Expr|queryEscape}}': the expression is in the fragment.
        "http://vmalert-0:8880/vmui/#/?g0.expr=" + quote("rate(vm_rows_ignored_total[5m]) > 0"),
        # Grafana explore link (vmalert's documented example): JSON with queries[].expr.
        "http://grafana/explore?orgId=1&left=" + quote(
            '{"datasource":"VictoriaMetrics","queries":[{"expr":"rate(vm_rows_ignored_total[5m]) > 0","refId":"A"}]}'
        ),
    ],
    ids=["vmui-fragment", "grafana-explore"],
)
def test_vmalert_generator_urls_carry_the_expression(make_event: EventFactory, url: str) -> None:
    assert POLICY.classify(_event(make_event, "Ingest", url=url)) == "vminsert_write_errors"


def test_an_expression_annotation_counts_too(make_event: EventFactory) -> None:
    event = _event(make_event, "Ingest", annotations={"expr": "rate(vm_rows_ignored_total[5m]) > 0"})
    assert POLICY.classify(event) == "vminsert_write_errors"


# ------------------------------------------------------------------ name patterns

@pytest.mark.parametrize(
    ("alert", "expected"),
    [
        ("容器日志量过大", "log_flood"),
        ("Pod日志泛滥告警", "log_flood"),
        ("PodLogFlood", "log_flood"),
        ("etcd磁盘延迟过高", "etcd_latency"),
        ("EtcdWalFsyncSlow", "etcd_latency"),
        ("VMInsertRejectingRows", "vminsert_write_errors"),
    ],
)
def test_names_the_policy_does_not_list_match_its_patterns(
    make_event: EventFactory, alert: str, expected: str
) -> None:
    classification = POLICY.classification(make_event(alert, {}, classify=False))
    assert (classification.alert_class, classification.rank) == (expected, Rank.PATTERN)


# ------------------------------------------------------------------ precedence and ambiguity

def test_an_exact_name_beats_the_expression(make_event: EventFactory) -> None:
    event = _event(make_event, "PrometheusRemoteWriteBehind",
                   expr="rate(prometheus_remote_storage_samples_failed_total[5m]) > 0")
    assert POLICY.classify(event) == "prometheus_remote_write_behind"


def test_the_expression_beats_a_name_pattern(make_event: EventFactory) -> None:
    # The name reads like a log flood; the rule is over vminsert's rejected rows.
    event = _event(make_event, "日志量异常", expr="rate(vm_rows_ignored_total[5m]) > 0")
    assert POLICY.classify(event) == "vminsert_write_errors"


def _two_classes(first_match: str, second_match: str) -> PolicySet:
    """A policy of two classes whose ``match`` lists are the given YAML."""

    def cls(class_id: str, match: str) -> dict[str, Any]:
        return {"id": class_id, "title": class_id, "runbooks": ["https://example.test/runbook"],
                "match": yaml.safe_load(match),
                "diagnoses": [{"id": "fallback", "diagnosis": "Something", "confidence": 0.4}]}

    document = {"version": 1, "defaults": {"dedup_window": "30m", "approval_ttl": "1h"},
                "classes": [cls("first", first_match), cls("second", second_match)]}
    return parse_policies(yaml.safe_dump(document, allow_unicode=True))


def test_labels_and_annotations_beat_patterns_and_lose_to_expressions(make_event: EventFactory) -> None:
    policies = _two_classes(
        "- labels: {job: 'fluent-bit'}\n- annotations: {summary: '(?i)log lines'}\n",
        "- name_patterns: ['(?i)noisy']\n- expr_metrics: [fluentbit_input_records_total]\n",
    )
    by_label = make_event("NoisyThing", {"job": "fluent-bit"}, classify=False)
    assert (policies.classify(by_label), policies.classification(by_label).rank) == ("first", Rank.LABELS)
    by_note = _event(make_event, "NoisyThing", annotations={"summary": "Too many log lines"})
    assert policies.classify(by_note) == "first"
    by_expr = _event(make_event, "NoisyThing", {"job": "fluent-bit"}, expr="rate(fluentbit_input_records_total[1m])")
    assert policies.classify(by_expr) == "second"
    assert policies.classify(make_event("NoisyThing", {}, classify=False)) == "second"


def test_a_tie_is_ambiguous_and_stays_unclassified_whatever_the_file_order(make_event: EventFactory) -> None:
    flood, log = "- name_patterns: ['(?i)flood']\n", "- name_patterns: ['(?i)log']\n"
    for first, second in ((flood, log), (log, flood)):
        policies = _two_classes(first, second)
        classification = policies.classification(make_event("LogFlood", {}, classify=False))
        assert classification.alert_class == UNCLASSIFIED
        assert set(classification.ambiguous) == {"first", "second"}
        assert "ambiguous" in classification.reason


def test_a_more_specific_match_at_the_same_rank_is_no_tie(make_event: EventFactory) -> None:
    policies = _two_classes("- alerts: [Restarted]\n", "- alerts: [Restarted]\n  labels: {job: 'jenkins'}\n")
    assert policies.classify(make_event("Restarted", {"job": "jenkins"}, classify=False)) == "second"
    assert policies.classify(make_event("Restarted", {"job": "other"}, classify=False)) == "first"


def test_a_hostile_label_or_annotation_is_data_not_a_pattern(make_event: EventFactory) -> None:
    event = _event(make_event, "(.*)", {"job": ".*"}, annotations={"expr": '"} or vm_rows_ignored_total'},
                   url="http://x/graph?g0.expr=" + quote("(((((((((((a+)+)+)+)+)+)+)+)+)+)+$"))
    assert POLICY.classify(event) == UNCLASSIFIED


# ------------------------------------------------------------------ the file is checked

@pytest.mark.parametrize(
    ("match", "message"),
    [
        ("- {}\n", "a matcher needs"),
        ("- alerts: [X]\n  name_patterns: ['x']\n", "put the patterns"),
        ("- expr_metrics: ['vm-rows']\n", "is not a metric name"),
        ("- expr_metrics: ['*']\n", "is not a metric name"),
        ("- name_patterns: ['(unclosed']\n", "invalid regular expression"),
        ("- annotations: {summary: '[z-a]'}\n", "invalid regular expression"),
    ],
)
def test_bad_match_rules_are_load_errors(match: str, message: str) -> None:
    with pytest.raises(PolicyFileError) as info:
        _two_classes(match, "- alerts: [Other]\n")
    assert any(message in str(error) for error in info.value.errors), info.value.errors


@pytest.mark.parametrize("claim", ["- alerts: [Same]\n", "- expr_metrics: [same_total]\n"])
def test_two_classes_claiming_the_same_bare_name_or_metric_is_a_load_error(claim: str) -> None:
    with pytest.raises(PolicyFileError) as info:
        _two_classes(claim, claim)
    assert any("is claimed by class 'first' too" in str(error) for error in info.value.errors)
