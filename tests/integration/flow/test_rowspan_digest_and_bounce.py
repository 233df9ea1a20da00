"""Through the real worker on the real broker: a rowspan digest of N alerts gives N alerts; a bounce gives none.

The three mails share one raw-mail key, so they sit on one partition and the worker reads them in order:
once the last one (an ordinary alert mail) has come out on normalized, the two before it are finished.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path

from click.testing import CliRunner

from producers.publisher import KafkaPublisher
from schemas.codec import Codec
from schemas.records import AlertEvent, DeadLetter, Incident, RawMail, Record, SourceKind
from schemas.topics import DEAD_LETTER, INCIDENTS, NORMALIZED, RAW_MAIL
from streams.cli import cli
from streams.wiring.supervisor import Stack
from tests.integration.flow.helpers import TopicReader

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "mail"
DIGEST = FIXTURES / "dce5_control_cluster_details" / "rowspan-cluster-digest.eml"
BOUNCE = FIXTURES / "not_alert" / "dsn-bounce.eml"
DIGEST_ALERTS = ["RPCErrors", "PrometheusRemoteStorageFailures", "ConfigurationReloadFailure", "容器日志泛滥",
                 "JenkinsRestarted", "etcdHighCommitDurations"]  # fmt: skip


def _mail(path: Path, tenant: str) -> RawMail:
    return RawMail(tenant=tenant, message_id=f"<{uuid.uuid4().hex}@test>", mailbox="test", source=SourceKind.FILE,
                   received_at=datetime.now(UTC), subject=path.stem, raw=path.read_bytes())


def _events(records: list[Record], tenant: str) -> list[AlertEvent]:
    return [r for r in records if isinstance(r, AlertEvent) and r.tenant == tenant]


def test_a_rowspan_digest_gives_its_alerts_and_a_bounce_is_kept_as_not_an_alert(
    stack: Stack, codec: Codec, samples_dir: Path
) -> None:
    bounced, digested = f"b-{uuid.uuid4().hex[:6]}", f"d-{uuid.uuid4().hex[:6]}"
    prefix = stack.settings.kafka.topic_prefix
    publisher = KafkaPublisher(stack.bootstrap, codec, prefix)
    key = f"order-{uuid.uuid4().hex[:6]}"
    publisher.publish_sync(RAW_MAIL, key, _mail(BOUNCE, bounced))
    publisher.publish_sync(RAW_MAIL, key, _mail(DIGEST, digested))
    publisher.publish_sync(RAW_MAIL, key, _mail(samples_dir / "jenkins_restart.eml", bounced))  # the last one
    publisher.close_sync()

    normalized = TopicReader(stack.bootstrap, codec, NORMALIZED, prefix, alive=stack.check)
    # normalized is keyed by fingerprint: the digest's alerts land on several partitions, read in any order.
    records = normalized.wait_for(
        lambda rs: bool(_events(rs, bounced)) and len(_events(rs, digested)) >= len(DIGEST_ALERTS), timeout=120,
        what="the digest's alerts and the alert mail sent after the digest and the bounce")
    # Exactly the digest's alerts, with the merged cluster cell on every row it covers.
    digest = _events(records, digested)
    assert sorted(e.alert for e in digest) == sorted(DIGEST_ALERTS)
    clusters = ["HK-DCE5-PLATFORM"] * 3 + ["HK-DCE5-WORKLOAD-01"] * 2 + ["HK-DCE5-PLATFORM"]
    assert {e.alert: e.labels["cluster"] for e in digest} == dict(zip(DIGEST_ALERTS, clusters, strict=True))
    # The bounce carried an alert mail inside it; none of it was read as an alert.
    assert [e.alert for e in _events(records, bounced)] == ["JenkinsRestarted"]
    assert all(e.raw.mail_subject != "Undelivered Mail Returned to Sender" for e in _events(records, bounced))

    dead = TopicReader(stack.bootstrap, codec, DEAD_LETTER, prefix, alive=stack.check)
    letters = dead.wait_for(lambda rs: any(isinstance(r, DeadLetter) and r.tenant == bounced for r in rs),
                            what="the bounce's dead letter")
    mine = [r for r in letters if isinstance(r, DeadLetter) and r.tenant in (bounced, digested)]
    assert [(r.tenant, r.stage, r.error_type) for r in mine] == [(bounced, "normalize", "NotAnAlertError")]
    assert mine[0].reason.startswith("not_an_alert: delivery_report: ")
    assert mine[0].source_topic == RAW_MAIL.full_name(prefix)

    # Not triaged: the bounce's tenant has the one incident of the alert mail sent after it, nothing else.
    incidents = TopicReader(stack.bootstrap, codec, INCIDENTS, prefix, alive=stack.check)
    found = incidents.wait_for(lambda rs: any(isinstance(r, Incident) and r.tenant == bounced for r in rs),
                               timeout=120, what="the incident of the alert mail after the bounce")
    assert {r.event.alert for r in found if isinstance(r, Incident) and r.tenant == bounced} == {"JenkinsRestarted"}
    for reader in (normalized, dead, incidents):
        reader.close()

    # `rcaflow stats` shows it as a mail that was not an alert, by reason.
    done = CliRunner().invoke(cli, ["stats", "--since", "1d", "--json", "--tenant", bounced,
                                    "--bootstrap", stack.bootstrap, "--prefix", prefix])
    assert done.exit_code == 0, done.output
    mail = json.loads(done.output.strip().splitlines()[-1])["mail"]
    assert mail["not_an_alert"] == {"delivery_report": 1} and mail["unreadable_alert_mails"] == 0
