"""One agent at a time, in Faust's own test context (no broker): what it sends and what its table keeps.

The transport is the only thing replaced: records the agent would send to Kafka
are collected as (topic, key, bytes) and decoded like a consumer would.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import faust
from aiokafka.errors import KafkaTimeoutError
from faust.exceptions import ProducerSendError

from schemas.codec import make_codec
from schemas.records import AlertEvent, DeadLetter, Incident, RawMail, Record, SourceKind
from streams.settings import Settings, WorkerSettings
from streams.wiring.runtime import build_stages
from streams.worker.agents import register_dedup, register_normalize
from streams.worker.app import WorkerApp

ROOT = Path(__file__).resolve().parents[4]
CODEC = make_codec(None)
TYPES: dict[str, type[Record]] = {"normalized": AlertEvent, "incidents": Incident, "dead-letter": DeadLetter,
                                  "rcaflow-correlate-input": Incident}


@dataclass
class Wire:
    """What would have reached Kafka, in order."""

    sent: list[tuple[str, bytes, bytes]] = field(default_factory=list)

    async def deliver(self, topic: faust.TopicT, key: bytes, value: bytes) -> None:
        self.sent.append((topic.get_topic_name(), key, value))

    def records(self, topic: str) -> list[Record]:
        return [CODEC.decode(value, TYPES[topic], topic=topic) for name, _key, value in self.sent if name == topic]


def _worker(tmp_path: Path, wire: Wire, register: Callable[[WorkerApp, Settings], None]) -> WorkerApp:
    settings = Settings(worker=WorkerSettings(data_dir=tmp_path))
    worker = WorkerApp(settings, "127.0.0.1:9", CODEC, deliver=wire.deliver)
    register(worker, settings)
    worker.app.finalize()
    worker.app.flow_control.resume()
    return worker


def _event(event_id: str) -> AlertEvent:
    return AlertEvent(tenant="acme", event_id=event_id, fingerprint="fp-1", alert="etcdHighFsyncDurations",
                      severity="P2", alert_class="etcd_latency", received_at=datetime.now(UTC), parser="test")


def test_the_dedup_agent_opens_one_incident_counts_repeats_and_keeps_bad_input(tmp_path: Path) -> None:
    wire = Wire()
    worker = _worker(tmp_path, wire, lambda w, s: register_dedup(w, build_stages(s).dedup))

    async def feed() -> None:
        async with worker.app.agents["dedup"].test_context() as agent:
            for value in (CODEC.encode(_event("e-1"), topic="normalized"), b"\x00not avro",
                          CODEC.encode(_event("e-2"), topic="normalized")):
                await agent.put(key=b"acme:fp-1", value=value)

    asyncio.run(feed())
    incidents = wire.records("rcaflow-correlate-input")  # the correlate agent puts them on incidents
    assert [i.count for i in incidents] == [1, 2]  # type: ignore[attr-defined]
    assert worker.tables.dedup_state["acme:fp-1"]["count"] == 2
    (letter,) = wire.records("dead-letter")
    assert isinstance(letter, DeadLetter) and letter.stage == "dedup" and letter.payload == b"\x00not avro"


def test_the_normalize_agent_turns_a_mail_into_classified_alerts(tmp_path: Path) -> None:
    wire = Wire()
    worker = _worker(tmp_path, wire, lambda w, s: register_normalize(w, build_stages(s).normalize))
    mail = RawMail(tenant="acme", message_id="<1@x>", mailbox="t", source=SourceKind.FILE,
                   received_at=datetime.now(UTC), raw=(ROOT / "samples" / "etcd_latency.eml").read_bytes())

    async def feed() -> None:
        async with worker.app.agents["normalize"].test_context() as agent:
            await agent.put(key=b"acme:<1@x>", value=CODEC.encode(mail, topic="raw-mail"))

    asyncio.run(feed())
    events = wire.records("normalized")
    assert events and all(isinstance(e, AlertEvent) and e.alert_class == "etcd_latency" for e in events)
    keys = {key for name, key, _value in wire.sent if name == "normalized"}
    assert keys == {f"acme:{e.fingerprint}".encode() for e in events}  # type: ignore[attr-defined]


def test_the_correlate_agent_sends_each_incident_on_with_its_group_and_keeps_the_groups(tmp_path: Path) -> None:
    wire = Wire()
    worker = _worker(tmp_path, wire, lambda w, s: register_dedup(w, build_stages(s).dedup))
    first = Incident(tenant="acme", incident_id="inc-1", fingerprint="fp-1",
                     alert_class="prometheus_remote_write_behind", opened_at=datetime.now(UTC),
                     last_seen_at=datetime.now(UTC), last_event_id="e-1",
                     event=_event("e-1").model_copy(update={"labels": {"cluster": "c1"}}))
    second = first.model_copy(update={"incident_id": "inc-2", "fingerprint": "fp-2",
                                      "alert_class": "vminsert_write_errors"})

    async def feed() -> None:
        async with worker.app.agents["correlate"].test_context() as agent:
            for record in (first, second):
                await agent.put(key=b"acme:c1", value=CODEC.encode(record, topic="incidents"))

    asyncio.run(feed())
    incidents = wire.records("incidents")
    assert [(i.incident_id, i.group_id, i.root_candidate) for i in incidents] == [  # type: ignore[attr-defined]
        ("inc-1", "inc-1", "inc-1"), ("inc-2", "inc-1", "inc-2")]
    assert {key for name, key, _value in wire.sent if name == "incidents"} == {b"acme:fp-1", b"acme:fp-2"}
    assert len(worker.tables.groups["acme:c1"]["groups"][0]["members"]) == 2


def test_a_send_faust_failed_with_a_broker_timeout_is_waited_out_not_dead_lettered(tmp_path: Path) -> None:
    """Faust's producer wraps aiokafka's KafkaTimeoutError (no metadata or buffer space in time, the broker
    away) in ProducerSendError; taken for a refusal, the alert was dead-lettered and its incident lost."""
    wire = Wire()
    failures = [2]

    async def broker_away_twice(topic: faust.TopicT, key: bytes, value: bytes) -> None:
        if failures[0] > 0:
            failures[0] -= 1
            try:
                raise KafkaTimeoutError()
            except KafkaTimeoutError as exc:  # as faust/transport/drivers/aiokafka.py Producer.send raises it
                raise ProducerSendError(f"Error while sending: {exc!r}") from exc
        await wire.deliver(topic, key, value)

    settings = Settings(worker=WorkerSettings(data_dir=tmp_path))
    worker = WorkerApp(settings, "127.0.0.1:9", CODEC, deliver=broker_away_twice)
    register_dedup(worker, build_stages(settings).dedup)
    worker.app.finalize()
    worker.app.flow_control.resume()

    async def feed() -> None:
        async with worker.app.agents["dedup"].test_context() as agent:
            await agent.put(key=b"acme:fp-1", value=CODEC.encode(_event("e-1"), topic="normalized"))
            async with asyncio.timeout(30):  # the retries back off (0.1 s, 0.2 s, ...) until the send goes
                while not wire.sent:
                    await asyncio.sleep(0.05)

    asyncio.run(feed())
    assert [i.count for i in wire.records("rcaflow-correlate-input")] == [1]  # type: ignore[attr-defined]
    assert wire.records("dead-letter") == []
