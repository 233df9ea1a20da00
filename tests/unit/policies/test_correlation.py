"""Incident correlation with the bundled policy's rules: what groups, why, the root candidate, and what never merges."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from policies import PolicyFileError, load_policies, parse_policies
from policies.correlation import Correlation, CorrelationState, Correlator, key_values, scope_key
from schemas.records import AlertEvent, Incident, IncidentState

T0 = datetime(2026, 12, 6, 10, 0, tzinfo=UTC)
RULES = load_policies().document.correlation
assert RULES is not None


def incident(n: int, alert_class: str, *, tenant: str = "acme", cluster: str | None = "c1", minutes: float = 0,
             count: int = 1, state: IncidentState = IncidentState.OPEN, **labels: str) -> Incident:
    at = T0 + timedelta(minutes=minutes)
    tags = {"cluster": cluster, **labels} if cluster is not None else dict(labels)
    event = AlertEvent(tenant=tenant, event_id=f"ev-{n}", fingerprint=f"fp-{n}", alert=f"A{n}", severity="P2",
                       alert_class=alert_class, labels=tags, received_at=at, parser="test")
    return Incident(tenant=tenant, incident_id=f"inc-{n}", fingerprint=f"fp-{n}", alert_class=alert_class,
                    opened_at=at, last_seen_at=at, count=count, last_event_id=f"ev-{n}", event=event, state=state)


class Table:
    """One state row per scope key, as the worker's table keeps them (a JSON copy)."""

    def __init__(self) -> None:
        self.correlator = Correlator(RULES)  # type: ignore[arg-type]
        self.rows: dict[str, Any] = {}

    def __call__(self, item: Incident) -> Correlation:
        key = scope_key(RULES, item)
        placed = self.correlator(item, self.rows.get(key))
        if placed.state is not None:
            self.rows[key] = placed.state.model_dump(mode="json")
        return placed


def test_a_remote_write_storm_is_one_group_rooted_at_the_most_upstream_class() -> None:
    table = Table()
    behind = table(incident(1, "prometheus_remote_write_behind", workload="prom-0"))
    shards = table(incident(2, "prometheus_remote_write_desired_shards", minutes=1, workload="prom-0"))
    storage = table(incident(3, "prometheus_remote_storage_failures", minutes=2, workload="prom-1"))
    vminsert = table(incident(4, "vminsert_write_errors", minutes=3, workload="vminsert-0"))
    assert behind.outcome == "opened" and behind.group_id == "inc-1"
    assert {p.group_id for p in (shards, storage, vminsert)} == {"inc-1"}
    assert vminsert.reason.startswith("causal chain remote-write: vminsert_write_errors")
    assert vminsert.root_candidate == "inc-4", "the most upstream class present is the root candidate"
    assert storage.root_candidate == "inc-3", "before vminsert arrived, remote storage failures was the root"
    assert vminsert.size == 4


def test_same_node_groups_a_log_flood_with_etcd_latency_on_that_node() -> None:
    table = Table()
    flood = table(incident(1, "log_flood", node="10.6.0.5"))
    etcd = table(incident(2, "etcd_latency", minutes=4, instance="10.6.0.5:2379"))
    assert etcd.group_id == flood.group_id == "inc-1"
    assert etcd.reason == "same node 10.6.0.5"
    assert etcd.root_candidate == "inc-1", "no chain: the first seen is the candidate"


def test_ties_go_to_the_first_seen() -> None:
    table = Table()
    table(incident(1, "prometheus_remote_write_behind", workload="prom-0"))
    later = table(incident(2, "prometheus_remote_write_behind", minutes=1, workload="prom-1"))
    assert later.group_id == "inc-1" and later.root_candidate == "inc-1"


@pytest.mark.parametrize("other", [
    {"cluster": "c2"},                    # another cluster
    {"tenant": "other"},                  # another tenant, same cluster name
    {"minutes": 16},                      # outside the 15m window
])
def test_related_classes_do_not_group_across_clusters_tenants_or_windows(other: dict[str, Any]) -> None:
    table = Table()
    table(incident(1, "prometheus_remote_write_behind"))
    placed = table(incident(2, "vminsert_write_errors", **other))
    assert placed.outcome == "opened" and placed.group_id == "inc-2"


def test_unrelated_classes_on_different_nodes_never_group() -> None:
    table = Table()
    table(incident(1, "log_flood", node="10.6.0.5"))
    assert table(incident(2, "etcd_latency", instance="10.6.0.6:2379")).group_id == "inc-2"
    assert table(incident(3, "jenkins_restart", workload="jenkins-0")).group_id == "inc-3"
    assert table(incident(4, "rule_evaluation_failures")).group_id == "inc-4"


def test_the_guard_holds_even_when_another_scopes_state_is_handed_in() -> None:
    # The partition key keeps clusters and tenants apart; the engine must not rely on it alone.
    correlator = Correlator(RULES)  # type: ignore[arg-type]
    first = correlator(incident(1, "prometheus_remote_write_behind"), None)
    assert first.state is not None
    row = first.state.model_dump(mode="json")
    assert correlator(incident(2, "vminsert_write_errors", cluster="c2"), row).group_id == "inc-2"
    assert correlator(incident(3, "vminsert_write_errors", tenant="globex"), row).group_id == "inc-3"
    assert correlator(incident(4, "vminsert_write_errors"), row).group_id == "inc-1"


def test_without_a_cluster_label_an_incident_stays_alone() -> None:
    table = Table()
    first = table(incident(1, "prometheus_remote_write_behind", cluster=None))
    second = table(incident(2, "vminsert_write_errors", cluster=None))
    assert (first.outcome, second.outcome) == ("alone", "alone")
    assert second.group_id == "inc-2" and "no cluster label" in second.reason
    assert scope_key(RULES, incident(3, "x", cluster=None)) == "acme:~inc-3"


def test_every_record_of_an_incident_answers_the_same_group() -> None:
    table = Table()
    table(incident(1, "prometheus_remote_write_behind"))
    joined = table(incident(2, "vminsert_write_errors", minutes=2))
    again = table(incident(2, "vminsert_write_errors", minutes=2))  # a re-delivery
    update = table(incident(2, "vminsert_write_errors", minutes=2, count=5))
    resolved = table(incident(2, "vminsert_write_errors", minutes=2, count=6, state=IncidentState.RESOLVED))
    assert {p.group_id for p in (joined, again, update, resolved)} == {"inc-1"}
    assert again.outcome == update.outcome == resolved.outcome == "known"
    assert again.state is None, "nothing changes for a record already placed"


def test_an_update_whose_group_is_forgotten_opens_nothing() -> None:
    placed = Table()(incident(9, "vminsert_write_errors", count=4))
    assert placed.outcome == "alone" and placed.state is None


def test_groups_never_exceed_max_members_and_rows_stay_bounded() -> None:
    spec = RULES.model_copy(update={"max_members": 3, "max_groups": 2})  # type: ignore[union-attr]
    correlator, row = Correlator(spec), None
    ids = []
    for n in range(7):
        placed = correlator(incident(n, "prometheus_remote_write_behind", minutes=n * 0.1), row)
        ids.append(placed.group_id)
        row = placed.state.model_dump(mode="json") if placed.state else row
    assert ids == ["inc-0"] * 3 + ["inc-3"] * 3 + ["inc-6"]
    assert len(CorrelationState.model_validate(row).groups) == 2


def test_key_values_take_the_host_of_an_instance_and_ignore_empty_labels() -> None:
    item = incident(1, "etcd_latency", instance="10.6.0.5:2379", node="", hostname="Node-A")
    assert key_values(RULES, item) == {"node": ["node-a", "10.6.0.5"]}  # type: ignore[arg-type]
    assert key_values(RULES, incident(2, "x", instance="[fd00::5]:9100")) == {"node": ["fd00::5"]}  # type: ignore[arg-type]


BASE = """
version: 1
defaults: {dedup_window: 30m, approval_ttl: 1h}
classes:
  - id: a
    title: A
    runbooks: ['https://example.test/a']
    match: [{alerts: [A]}]
    diagnoses: [{id: d, diagnosis: t, confidence: 0.5}]
  - id: b
    title: B
    runbooks: ['https://example.test/b']
    match: [{alerts: [B]}]
    diagnoses: [{id: d, diagnosis: t, confidence: 0.5}]
"""


@pytest.mark.parametrize(("section", "message"), [
    ("correlation: {chains: [{name: x, classes: [a, nope]}]}", "unknown class 'nope' in chain 'x'"),
    ("correlation: {chains: [{name: x, classes: [a, b]}, {name: y, classes: [b, a]}]}",
     "class 'b' is already in chain 'x'"),
    ("correlation: {joins: [{key: node}]}", "join key 'node' is not defined under correlation.keys"),
    ("correlation: {window: soon}", "'soon' is not a duration"),
    ("correlation: {keys: {node: ['bad label!']}}", "should match pattern"),
    ("correlation: {chains: [{name: x, classes: [a]}]}", "at least 2"),
    ("correlation: {windows: 5m}", "unknown field"),
])
def test_bad_rules_are_refused_with_where_and_why(section: str, message: str) -> None:
    with pytest.raises(PolicyFileError) as caught:
        parse_policies(BASE + section + "\n", file="p.yaml")
    text = str(caught.value)
    assert message in text and "correlation" in text and "p.yaml:" in text
