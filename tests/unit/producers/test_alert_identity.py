"""The identity contract (producers/fingerprint.py): what makes an alert itself, whichever channel brought it.

An alert with a workload is keyed as it always was; an alert about no workload by its node, scrape target or
job and its rule group, so two instances stay two alerts and a digest's object cell still finds the webhook's.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from html import escape

import pytest

from producers.alertmanager import WebhookBody, webhook_to_events
from producers.fingerprint import alert_fingerprint, alert_identity
from producers.mail import parse_mail
from producers.seed_event import SeedEvent, seed_to_event
from schemas.records import AlertEvent, EventSource, SourceKind
from tests.fixtures.mail.make_corpus import envelope, part

NOW = datetime(2026, 12, 6, 10, 0, tzinfo=UTC)
CLUSTER = "HK-DCE5-PLATFORM"


UUID = "deb65d24-1090-40cf-b5e6-489fac2f2c1b"  # DCE 5's cluster label: the kube-system namespace UID
NAMES = {UUID: CLUSTER}


def _webhook(name: str, cluster: str = CLUSTER, names: dict[str, str] | None = None, /, **labels: str) -> AlertEvent:
    body = {"version": "4", "groupKey": "{}:{}", "status": "firing", "receiver": "rcaflow",
            "alerts": [{"status": "firing", "labels": {"alertname": name, "cluster": cluster, **labels},
                        "startsAt": NOW.isoformat()}]}
    (event,) = webhook_to_events(WebhookBody.model_validate(body), tenant="acme", received_at=NOW,
                                 cluster_names=names)
    return event


def _digest(name: str, obj: str, cluster: str = CLUSTER, names: dict[str, str] | None = None, /,
            **extra_columns: str) -> AlertEvent:
    """A DCE 5 digest row: 告警名称, 级别, 集群, 命名空间 (empty), 对象, plus any extra columns."""
    heads = ["告警名称", "级别", "集群", "命名空间", "对象", *extra_columns, "描述"]
    cells = [name, "严重", cluster, "", obj, *extra_columns.values(), f"{name} on {obj}"]
    html = ("<html><body><h3>告警中</h3><table><tr>" + "".join(f"<th>{escape(h)}</th>" for h in heads)
            + "</tr><tr>" + "".join(f"<td>{escape(c)}</td>" for c in cells) + "</tr></table></body></html>")
    raw = envelope(part(html, "html", "utf-8", "qp"), "Control Cluster Details", "id-1@insight.example.test")
    (event,) = parse_mail(raw, tenant="acme", received_at=NOW, source=EventSource(kind=SourceKind.IMAP),
                          cluster_names=names).events
    return event


def _seed(name: str, cluster: str = CLUSTER, names: dict[str, str] | None = None, /, **labels: str) -> AlertEvent:
    seed = SeedEvent.model_validate({"alert": name, "severity": "P2", "labels": {"cluster": cluster, **labels}})
    return seed_to_event(seed, tenant="acme", received_at=NOW, request_id="r1", cluster_names=names)


def test_an_alert_with_a_workload_keeps_the_fingerprint_it_always_had() -> None:
    labels = {"cluster": CLUSTER, "namespace": "amamba-system", "workload": "jenkins-0", "instance": "10.0.0.1:80",
              "node": "master-01", "group": "g"}
    before = hashlib.sha256("\x1f".join(["acme", "JenkinsRestarted", CLUSTER, "amamba-system", "jenkins-0"])
                            .encode()).hexdigest()[:16]
    assert alert_fingerprint("acme", "JenkinsRestarted", labels) == before


def test_two_instances_of_an_alert_without_workload_are_two_alerts() -> None:
    rule = {"job": "vmalert", "group": "k8s.rules"}
    one = _webhook("RecordingRulesError", instance="10.6.0.11:8880", **rule)
    other = _webhook("RecordingRulesError", instance="10.6.0.12:8880", **rule)
    other_group = _webhook("RecordingRulesError", instance="10.6.0.11:8880", job="vmalert", group="node.rules")
    assert len({one.fingerprint, other.fingerprint, other_group.fingerprint}) == 3
    assert _webhook("NodeDown", node="master-01").fingerprint != _webhook("NodeDown", node="master-02").fingerprint
    by_job = {_webhook("etcdMembersDown", job=job).fingerprint for job in ("etcd", "etcd-events")}
    assert len(by_job) == 2
    identity = alert_identity(one.labels)
    assert (identity.target, identity.target_from, identity.qualifiers) == ("10.6.0.11:8880", "instance",
                                                                             ("group=k8s.rules",))


@pytest.mark.parametrize(("labels", "cell"), [
    ({"node": "master-01", "instance": "10.6.1.1:9100", "job": "node-exporter"}, "master-01"),  # the node first
    ({"instance": "10.6.2.1:2379", "job": "etcd"}, "10.6.2.1:2379"),  # an address stays the target
    ({"job": "etcd"}, "etcd"),  # alerts by (job) only
])
def test_the_digests_object_cell_finds_the_webhooks_alert(labels: dict[str, str], cell: str) -> None:
    by_webhook = _webhook("TargetAlert", **labels)
    by_digest = _digest("TargetAlert", cell)
    by_events = _seed("TargetAlert", **labels)
    assert by_digest.fingerprint == by_webhook.fingerprint == by_events.fingerprint


def test_a_rule_group_is_carried_by_a_group_column_and_without_one_the_row_stands_alone() -> None:
    by_webhook = _webhook("RecordingRulesError", job="vmalert", instance="10.6.0.11:8880", group="k8s.rules")
    assert _digest("RecordingRulesError", "10.6.0.11:8880", group="k8s.rules").fingerprint == by_webhook.fingerprint
    # The documented limit: a table without the column cannot say which group; its row is an incident of its own
    # rather than one merged into whichever group the webhook reported (docs/architecture.md, identity).
    assert _digest("RecordingRulesError", "10.6.0.11:8880").fingerprint != by_webhook.fingerprint


def test_events_derive_the_workload_as_the_webhook_does() -> None:
    by_webhook = _webhook("PrometheusRemoteWriteBehind", namespace="insight-system", pod="prometheus-0",
                          instance="10.6.3.1:9090")
    by_events = _seed("PrometheusRemoteWriteBehind", namespace="insight-system", pod="prometheus-0",
                      instance="10.6.3.1:9090")
    assert by_events.fingerprint == by_webhook.fingerprint
    # A workload given as an address is none: the identity falls back to the target, on every channel.
    assert _seed("X", workload="10.6.3.1:9090").fingerprint == _webhook("X", instance="10.6.3.1:9090").fingerprint


def test_a_cluster_id_is_named_alike_on_every_channel() -> None:
    """DCE 5 labels the cluster with its UUID; the tenant's ``cluster_names`` map applies to every channel, so a
    webhook with the UUID, a digest with the UUID or with the readable name and an event are one alert."""
    labels = {"instance": "10.6.2.1:2379", "job": "etcd"}
    events = [_webhook("etcdHighFsyncDurations", UUID, NAMES, **labels),
              _seed("etcdHighFsyncDurations", UUID, NAMES, **labels),
              _digest("etcdHighFsyncDurations", "10.6.2.1:2379", UUID, NAMES),
              _digest("etcdHighFsyncDurations", "10.6.2.1:2379", CLUSTER, NAMES),
              _webhook("etcdHighFsyncDurations", UUID.upper(), NAMES, **labels)]  # the map's keys are lower-case
    assert len({e.fingerprint for e in events}) == 1
    assert {(e.labels["cluster"], e.labels.get("cluster_id")) for e in events[:3]} == {(CLUSTER, UUID)}
    assert "cluster_id" not in events[3].labels
