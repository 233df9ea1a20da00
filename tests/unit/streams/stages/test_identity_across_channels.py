"""Alerts about no workload (a vmalert instance and rule group, a node, an etcd member) through the real parsers,
dedup and correlation: two instances are two incidents, one instance by every channel is one, resolved by any."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

from benchmarks.correlation_bench import run
from benchmarks.correlation_corpus import Corpus, Delivery
from policies import load_policies
from producers.alertmanager import WebhookBody, webhook_to_events
from schemas.records import AlertStatus, Incident, IncidentState
from streams.stages.core import StageContext
from streams.stages.dedup import Dedup, table_key

CLUSTER = "HK-DCE5-PLATFORM"
T0 = datetime(2026, 12, 1, 1, 0, tzinfo=UTC)
#: Every channel an alert about no workload may come by. The digest's table has one object cell, so it carries
#: the node or the scrape target, never a rule group (docs/architecture.md, identity): group alerts skip it here
#: and tests/unit/producers/test_alert_identity.py pins that limit.
ALL = ("webhook", "mail_default", "mail_digest", "events")
NO_DIGEST = ("webhook", "mail_default", "events")


def _corpus() -> Corpus:
    corpus = Corpus(seed=0)
    vmalert = {"job": "vmalert"}
    plan = [
        # vmalert's RecordingRulesError is by (job, instance, group): two instances, and two groups of one.
        ("RecordingRulesError", {**vmalert, "instance": "10.6.0.11:8880", "group": "k8s.rules"}, NO_DIGEST),
        ("RecordingRulesError", {**vmalert, "instance": "10.6.0.12:8880", "group": "k8s.rules"}, NO_DIGEST),
        ("RecordingRulesError", {**vmalert, "instance": "10.6.0.11:8880", "group": "node.rules"}, NO_DIGEST),
        # Node alerts carry the node and node-exporter's address; the digest's object cell shows the node.
        ("KubeNodeNotReady", {"node": "master-01", "instance": "10.6.1.1:9100", "job": "node-exporter"}, ALL),
        ("KubeNodeNotReady", {"node": "master-02", "instance": "10.6.1.2:9100", "job": "node-exporter"}, ALL),
        # etcd members by instance (IP:port stays as it is: it names the member).
        ("etcdHighFsyncDurations", {"instance": "10.6.2.1:2379", "job": "etcd"}, ALL),
        ("etcdHighFsyncDurations", {"instance": "10.6.2.2:2379", "job": "etcd"}, ALL),
    ]
    for n, (name, labels, channels) in enumerate(plan):
        problem = f"p{n:03d}"
        corpus.problems[problem] = "single"
        alert = corpus.add("acme", problem, name, CLUSTER, "", "", **labels)
        start = n * 0.1
        for c, channel in enumerate(channels):
            corpus.deliveries.append(Delivery(start + c, channel, "acme", "firing", [alert.id]))
            corpus.deliveries.append(Delivery(start + c + 0.5, channel, "acme", "firing", [alert.id]))  # a repeat
        # Resolved by a different channel each time.
        resolver = ("webhook", "mail_default", "mail_digest", "events")[n % 3]
        corpus.deliveries.append(Delivery(start + 30, resolver if resolver in channels else "webhook", "acme",
                                          "resolved", [alert.id]))
    corpus.deliveries.sort(key=lambda d: d.at)
    return corpus


def _target(record: Incident) -> tuple[str, str, str, str]:
    labels = record.event.labels
    return (record.event.alert, labels.get("node") or labels.get("workload", ""), labels.get("instance", ""),
            labels.get("group", ""))


def test_every_instance_is_its_own_incident_and_every_channel_folds_into_it() -> None:
    corpus = _corpus()
    records, events = run(corpus)
    by_incident: dict[str, set[tuple[str, str, str, str]]] = {}
    for record in records:
        by_incident.setdefault(record.incident_id, set()).add(_target(record))
    assert events > 4 * len(corpus.alerts)
    # One incident per alert: none split by a channel, none merged with another instance.
    assert len(by_incident) == len(corpus.alerts), sorted(by_incident.values())
    openers = {r.incident_id: r for r in records if r.count == 1}
    assert len({(r.event.alert, r.fingerprint) for r in openers.values()}) == len(corpus.alerts)
    # The resolved notification, whichever channel brought it, resolved each.
    last = {r.incident_id: r for r in records}
    assert all(r.state is IncidentState.RESOLVED for r in last.values())
    assert {r.resolved_by.split(" ")[0] for r in last.values() if r.resolved_by} >= {"alertmanager", "imap"}


def test_upgrade_an_incident_opened_under_the_old_identity_is_not_resolved_by_the_new_one() -> None:
    """The one-time effect documented in docs/upgrading.md: an alert about no workload changed fingerprint, so an
    incident opened before the upgrade (keyed by the old one) is not found by a notification sent after it."""
    policies = load_policies()
    labels = {"alertname": "RecordingRulesError", "cluster": CLUSTER, "job": "vmalert",
              "instance": "10.6.0.11:8880", "group": "k8s.rules"}
    body = {"version": "4", "groupKey": "{}:{}", "receiver": "rcaflow",
            "alerts": [{"status": "resolved", "labels": labels, "startsAt": "2026-12-01T00:00:00Z"}]}
    (resolved,) = webhook_to_events(WebhookBody.model_validate(body), tenant="acme", received_at=T0)
    before = hashlib.sha256("\x1f".join(["acme", "RecordingRulesError", CLUSTER, "", ""]).encode()).hexdigest()[:16]
    assert resolved.fingerprint != before
    old_firing = resolved.model_copy(update={"fingerprint": before, "status": AlertStatus.FIRING, "event_id": "e0"})
    rows: dict[str, Any] = {}
    dedup = Dedup(policies, context=StageContext(clock=lambda: T0))
    for given in (old_firing, resolved):
        event = given.model_copy(update={"alert_class": policies.classify(given)})
        result = dedup(event, rows.get(table_key(event)))
        if result.state is not None:
            rows[table_key(event)] = result.state
        last = result
    assert last.outcome == "ignored" and not last.outputs  # no open incident under the new fingerprint
    assert rows[f"acme:{before}"]["resolved"] is False  # the old one stays open (docs/upgrading.md says what to do)
