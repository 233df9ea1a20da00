"""`rcaflow topic read TOPIC --decode` on the real broker: the records an operator looks for, as JSON lines."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

import pytest
from click.testing import CliRunner

from producers.publisher import KafkaPublisher
from schemas.codec import make_codec
from schemas.records import ActionEvent, ActionState, DeadLetter, Risk
from schemas.topics import ACTIONS, DEAD_LETTER
from streams.commands.topic import topic
from streams.wiring.topics_admin import ensure_topics

pytestmark = pytest.mark.integration


def _action(tenant: str, action_id: str, state: ActionState) -> ActionEvent:
    return ActionEvent(tenant=tenant, action_id=action_id, incident_id="inc-1", alert_class="log_flood",
                       name="exclude_pod_logs", tool="k8s", operation="annotate_pod",
                       params={"namespace": "demo", "pod": "web-0"}, risk=Risk.LOW, state=state,
                       at=datetime(2026, 12, 6, 9, 0, tzinfo=UTC))


def _lines(output: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


def test_actions_decode_to_json_lines_and_filter_by_key(broker: object, topic_prefix: str) -> None:
    bootstrap: str = broker.bootstrap  # type: ignore[attr-defined]
    ensure_topics(bootstrap, topic_prefix, specs=[ACTIONS, DEAD_LETTER])
    publisher = KafkaPublisher(bootstrap, make_codec(None), topic_prefix)
    try:
        publisher.publish_sync(ACTIONS, "acme:a1", _action("acme", "a1", ActionState.APPROVED))
        publisher.publish_sync(ACTIONS, "acme:a1", _action("acme", "a1", ActionState.SUCCEEDED))
        publisher.publish_sync(ACTIONS, "beta:b1", _action("beta", "b1", ActionState.AWAITING_APPROVAL))
    finally:
        publisher.close_sync()
    # Someone else's bytes on the topic: shown with the error, not skipped.
    from confluent_kafka import Producer

    raw = Producer({"bootstrap.servers": bootstrap})
    raw.produce(ACTIONS.full_name(topic_prefix), key=b"acme:zz", value=b"not avro")
    raw.flush(10)

    result = CliRunner().invoke(topic, ["read", "actions", "--bootstrap", bootstrap, "--prefix", topic_prefix],
                                catch_exceptions=False)
    assert result.exit_code == 1, result.output  # one value did not decode
    rows = _lines(result.stdout)
    decoded = [r for r in rows if "error" not in r]
    assert sorted((r["key"], r["value"]["state"]) for r in decoded) == [  # type: ignore[index]
        ("acme:a1", "approved"), ("acme:a1", "succeeded"), ("beta:b1", "awaiting_approval")]
    assert all(r["topic"] == f"{topic_prefix}actions" and isinstance(r["offset"], int) for r in rows)
    [bad] = [r for r in rows if "error" in r]
    assert bad["key"] == "acme:zz" and base64.b64decode(bad["value"]["base64"]) == b"not avro"  # type: ignore[index]
    assert "4 record(s)" in result.stderr and "1 not decodable" in result.stderr

    only_beta = CliRunner().invoke(topic, ["read", "actions", "--key", "beta:", "--bootstrap", bootstrap,
                                           "--prefix", topic_prefix])
    assert [r["value"]["action_id"] for r in _lines(only_beta.stdout)] == ["b1"]  # type: ignore[index]
    assert only_beta.exit_code == 0


def test_dead_letter_payload_bytes_are_base64(broker: object, topic_prefix: str) -> None:
    bootstrap: str = broker.bootstrap  # type: ignore[attr-defined]
    ensure_topics(bootstrap, topic_prefix, specs=[DEAD_LETTER])
    letter = DeadLetter(tenant="acme", stage="normalize", source_topic="raw-mail", error_type="MailParseError",
                        reason="no alert found", payload=b"\xff\xfe binary mail", at=datetime.now(UTC))
    publisher = KafkaPublisher(bootstrap, make_codec(None), topic_prefix)
    try:
        publisher.publish_sync(DEAD_LETTER, "raw-mail", letter)
    finally:
        publisher.close_sync()
    result = CliRunner().invoke(topic, ["read", "dead-letter", "--bootstrap", bootstrap, "--prefix", topic_prefix])
    assert result.exit_code == 0, result.output
    [row] = _lines(result.stdout)
    assert row["value"]["reason"] == "no alert found"  # type: ignore[index]
    assert base64.b64decode(row["value"]["payload"]["base64"]) == b"\xff\xfe binary mail"  # type: ignore[index]


def test_an_unknown_topic_or_a_missing_one_is_a_clear_error(broker: object, topic_prefix: str) -> None:
    bootstrap: str = broker.bootstrap  # type: ignore[attr-defined]
    unknown = CliRunner().invoke(topic, ["read", "alerts", "--bootstrap", bootstrap, "--prefix", topic_prefix])
    assert unknown.exit_code == 2 and "'alerts' is not an rcaflow topic" in unknown.output
    missing = CliRunner().invoke(topic, ["read", "audit", "--bootstrap", bootstrap, "--prefix", topic_prefix,
                                         "--timeout", "5"])
    assert missing.exit_code == 2 and "does not exist" in missing.output
