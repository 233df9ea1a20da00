"""`rcaflow stats` reads the real topics and reports per class (the numbers themselves are unit-tested)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from click.testing import CliRunner

from producers.publisher import KafkaPublisher
from schemas.codec import Codec
from schemas.topics import ACTIONS, INCIDENTS, RCA_RESULT
from streams.cli import cli
from streams.wiring.topics_admin import ensure_topics
from tests.unit.streams.ops.test_stats import A, R, S, _action, _result


def test_stats_of_the_last_day_from_the_topics(broker: object, codec: Codec, topic_prefix: str) -> None:
    bootstrap = broker.bootstrap  # type: ignore[attr-defined]
    ensure_topics(bootstrap, topic_prefix, [INCIDENTS, RCA_RESULT, ACTIONS])
    now = datetime.now(UTC)
    publisher = KafkaPublisher(bootstrap, codec, topic_prefix)
    result = _result("i1", "etcd_latency", after_s=0.2, opened=now - timedelta(minutes=5))
    publisher.publish_sync(RCA_RESULT, "acme:i1", result)
    for action in _action("a1", "i1", (A, 1), (R, 2), (S, 3)):
        publisher.publish_sync(ACTIONS, "acme:a1", action)
    publisher.close_sync()

    done = CliRunner().invoke(cli, ["stats", "--since", "1d", "--json", "--bootstrap", bootstrap,
                                    "--prefix", topic_prefix])
    assert done.exit_code == 0, done.output
    report = json.loads(done.output)
    etcd = report["classes"]["etcd_latency"]
    assert etcd["incidents"] == 1 and etcd["actions"] == 1 and etcd["outcomes"] == {"succeeded": 1}

    table = CliRunner().invoke(cli, ["stats", "--bootstrap", bootstrap, "--prefix", topic_prefix])
    assert table.exit_code == 0 and "etcd_latency" in table.output and "all classes" in table.output
