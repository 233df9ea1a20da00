"""`rcaflow stats` on real Kafka with known inputs: alerts folded by dedup, re-deliveries and dry runs (issue 19)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from click.testing import CliRunner

from producers.publisher import KafkaPublisher
from schemas.codec import Codec
from schemas.topics import ACTIONS, INCIDENTS, RCA_RESULT
from streams.cli import cli
from streams.wiring.topics_admin import ensure_topics
from tests.unit.streams.ops.test_stats import A, R, S, _action, _result, _updates


def test_alerts_are_what_dedup_folded_and_a_dry_run_is_not_a_success(broker: object, codec: Codec,
                                                                      topic_prefix: str) -> None:
    bootstrap = broker.bootstrap  # type: ignore[attr-defined]
    ensure_topics(bootstrap, topic_prefix, [INCIDENTS, RCA_RESULT, ACTIONS])
    now = datetime.now(UTC)
    publisher = KafkaPublisher(bootstrap, codec, topic_prefix)
    busy = _result("i1", "etcd_latency", after_s=0.2, opened=now - timedelta(minutes=5))
    quiet = _result("i2", "etcd_latency", after_s=0.3, opened=now - timedelta(minutes=4))
    # i1: five alerts folded (the update with count 3 re-delivered); i2: one alert. The rca-result of i1 is
    # re-delivered too.
    for incident in [*_updates(busy, 1, 2, 3, 3, 4, 5), *_updates(quiet, 1)]:
        publisher.publish_sync(INCIDENTS, f"acme:{incident.fingerprint}", incident)
    for result in (busy, busy, quiet):
        publisher.publish_sync(RCA_RESULT, f"acme:{result.incident_id}", result)
    for action in [*_action("a1", "i1", (A, 1), (R, 2), (S, 3)),
                   *_action("a2", "i2", (A, 1), (R, 2), (S, 3), dry_run=True)]:
        publisher.publish_sync(ACTIONS, f"acme:{action.action_id}", action)
    publisher.close_sync()

    done = CliRunner().invoke(cli, ["stats", "--since", "1d", "--json", "--bootstrap", bootstrap,
                                    "--prefix", topic_prefix])
    assert done.exit_code == 0, done.output
    etcd = json.loads(done.output)["classes"]["etcd_latency"]
    assert (etcd["incidents"], etcd["alerts"]) == (2, 6)
    assert etcd["actions"] == 2 and etcd["dry_runs"] == 1
    assert etcd["outcomes"] == {"dry_run": 1, "succeeded": 1}

    table = CliRunner().invoke(cli, ["stats", "--bootstrap", bootstrap, "--prefix", topic_prefix])
    assert table.exit_code == 0, table.output
    row = next(line for line in table.output.splitlines() if line.startswith("etcd_latency"))
    assert row.split()[1:3] == ["2", "6"] and "dry_run 1" in row and "succeeded 1" in row
