"""Incident groups through the real worker: a 12-alert digest from one failure is 12 incidents, one group, one
chat message (the rest answer in its thread); two unrelated alerts are two groups with a message each."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from producers.publisher import KafkaPublisher
from schemas.codec import Codec
from schemas.records import Incident, RawMail, SourceKind
from schemas.topics import INCIDENTS, RAW_MAIL
from tests.fixtures.mail.make_corpus import EN_COLUMNS, A, envelope, part, table_html
from tests.integration.flow.conftest import stack_for
from tests.integration.flow.helpers import TopicReader
from tests.integration.flow.test_approval_updates_the_slack_message import wait_for_call
from tests.support.loopback import serve
from tests.unit.executors.notify.notify_helpers import BOT_TOKEN, SlackApiStandIn

STORM = ([("VminsertWriteErrors", f"vminsert-insight-{v}") for v in range(2)]
         + [(name, f"prometheus-insight-{r}") for r in range(3)
            for name in ("PrometheusRemoteStorageFailures", "PrometheusRemoteWriteBehind",
                         "PrometheusRemoteWriteDesiredShards")]
         + [("PrometheusRemoteWriteBehind", "prometheus-insight-3")])


def digest(rows: list[tuple[str, str, str]]) -> bytes:
    """A DCE 5 digest mail (English headers) with one row per (alert, workload, cluster)."""
    alerts = [A(alert=alert, level="严重", namespace="insight-system", workload=workload, first="2026-12-06 10:00:00",
                times=1, desc=f"{alert} on {workload}", component=None, cluster=cluster)
              for alert, workload, cluster in rows]
    html = table_html(alerts, columns=EN_COLUMNS)
    return envelope(part(html, "html", "utf-8", "qp"), "Control Cluster Details 告警汇总",
                    f"{uuid.uuid4().hex}@insight.example.test")


def send(publisher: KafkaPublisher, tenant: str, raw: bytes) -> None:
    mail = RawMail(tenant=tenant, message_id=f"<{uuid.uuid4().hex}@t>", mailbox="alerts@example.test",
                   source=SourceKind.IMAP, received_at=datetime.now(UTC), raw=raw)
    publisher.publish_sync(RAW_MAIL, f"{tenant}:m", mail)


def opened(records: list[Any]) -> list[Incident]:
    return [r for r in records if isinstance(r, Incident) and r.count == 1]


def top_level(standin: SlackApiStandIn) -> list[dict[str, Any]]:
    return [body for name, body in standin.calls if name == "chat.postMessage" and "thread_ts" not in body]


def test_one_failure_is_one_group_and_one_message_unrelated_alerts_are_not(
    broker: object, codec: Codec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tenant = f"g{uuid.uuid4().hex[:6]}"
    standin = SlackApiStandIn()
    with serve(standin.app(), "slack-standin") as base:
        env = f"RCAFLOW_NOTIFY__TENANTS__{tenant.upper()}__SLACK__"
        monkeypatch.setenv(f"{env}TOKEN", BOT_TOKEN)
        monkeypatch.setenv(f"{env}CHANNEL", "C0123")
        monkeypatch.setenv(f"{env}API_BASE", f"{base}/api")
        with stack_for(broker.bootstrap, tmp_path, roles=("worker",)) as stack:  # type: ignore[attr-defined]
            prefix = stack.settings.kafka.topic_prefix
            publisher = KafkaPublisher(stack.bootstrap, codec, prefix)
            incidents = TopicReader(stack.bootstrap, codec, INCIDENTS, prefix, stack.check)

            # 1. One digest, 12 alerts of one remote-write failure in one cluster.
            send(publisher, tenant, digest([(alert, workload, "HK-DCE5-PLATFORM") for alert, workload in STORM]))
            incidents.wait_for(lambda rs: len(opened(rs)) >= 12, timeout=120, what="12 incidents")
            storm = opened(incidents.records)
            assert len(storm) == 12 and len({i.incident_id for i in storm}) == 12, "each alert its own incident"
            assert len({i.group_id for i in storm}) == 1, [i.group_reason for i in storm]
            (group,) = {i.group_id for i in storm}
            assert group in {i.incident_id for i in storm}
            roots = {i.root_candidate for i in storm if i.alert_class == "vminsert_write_errors"}
            root = next(i for i in storm if i.incident_id in roots)
            assert root.alert_class == "vminsert_write_errors", "the most upstream class is the root candidate"
            # Every member's analysis is shown: one top-level message, the other 11 in its thread.
            wait_for_call(standin, lambda c: sum(1 for n, b in standin.calls if n == "chat.postMessage") >= 12,
                          stack.check, "12 messages (1 + 11 replies)", timeout=120)
            assert len(top_level(standin)) == 1
            replies = [b for n, b in standin.calls if n == "chat.postMessage" and "thread_ts" in b]
            assert len(replies) == 11 and {r["thread_ts"] for r in replies} == {"1764072000.000100"}
            assert "causal chain remote-write" in json.dumps(replies, ensure_ascii=False)

            # 2. Two unrelated alerts, in two other clusters: two groups, a message each.
            send(publisher, tenant, digest([("JenkinsRestarted", "amamba-jenkins-0", "cluster-a"),
                                            ("PrometheusRemoteWriteBehind", "prometheus-insight-0", "cluster-b")]))
            incidents.wait_for(lambda rs: len(opened(rs)) >= 14, timeout=120, what="2 more incidents")
            others = [i for i in opened(incidents.records) if i.incident_id not in {s.incident_id for s in storm}]
            assert len(others) == 2 and len({i.group_id for i in others} | {group}) == 3
            wait_for_call(standin, lambda c: len(top_level(standin)) >= 3, stack.check, "two more messages",
                          timeout=120)
            assert len(top_level(standin)) == 3
            incidents.close()
            publisher.close_sync()
