"""Issue 12 on the real broker and worker: nothing is lost at the worker's failure edges.

Each test feeds one kind of trouble and checks what a user would see on the topics: the alert
came through, or its input is in dead-letter with the reason, its position and its bytes; a
model or registry that is down delays work instead of dropping or dead-lettering it.
Only the hosted services get stand-ins (an OpenAI-compatible chat server, a Schema Registry),
speaking their protocols over HTTP with real status codes.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient, NewTopic
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from policies import load_policies
from producers.mail import parse_mail
from producers.publisher import KafkaPublisher
from schemas.codec import Codec, make_codec
from schemas.records import (
    AlertEvent,
    AuditRecord,
    DeadLetter,
    Engine,
    EventSource,
    Incident,
    RawMail,
    RcaResult,
    Record,
    SourceKind,
)
from schemas.topics import AUDIT, DEAD_LETTER, INCIDENTS, NORMALIZED, RAW_MAIL, RCA_RESULT
from streams.settings import KafkaSettings, Settings
from streams.wiring.supervisor import Stack
from streams.wiring.topics_admin import ensure_topics
from tests.integration.flow.helpers import TopicReader
from tests.support.loopback import serve
from tests.unit.executors.llm.standin import answer_json
from tests.unit.schemas.test_confluent_codec import StandInRegistry, serve_registry

#: English column names, all ASCII: a mail declaring utf-7 then decodes its whole body as utf-7.
COLUMNS = ["alertname", "severity", "cluster", "namespace", "workload", "first_occur", "times", "description"]


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _stack(bootstrap: str, tmp: Path, **env: str) -> Stack:
    prefix = f"e{uuid.uuid4().hex[:8]}."
    full_env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "RCAFLOW_KAFKA__TOPIC_PREFIX": prefix,
        "RCAFLOW_WORKER__DATA_DIR": str(tmp / "worker"),
        "RCAFLOW_WORKER__METRICS_PORT": "0",
        "RCAFLOW_LOG_LEVEL": "INFO",
        **env,
    }
    settings = Settings(kafka_bootstrap_servers=bootstrap, kafka=KafkaSettings(topic_prefix=prefix))
    return Stack(settings, roles=("worker",), env=full_env, log_dir=tmp / "logs")


def _mail(tenant: str, raw: bytes) -> RawMail:
    return RawMail(tenant=tenant, message_id=f"<{uuid.uuid4().hex}@t>", mailbox="t", source=SourceKind.FILE,
                   received_at=datetime.now(UTC), raw=raw)


def _table_mail(cells: list[str], charset: str, body_bytes: bytes | None = None, columns: list[str] = COLUMNS) -> bytes:
    """A DCE-style alert mail: one HTML table row; the body is ``cells`` in ``charset`` unless given as bytes."""
    head = "".join(f"<th>{c}</th>" for c in columns)
    row = "".join(f"<td>{c}</td>" for c in cells)
    html = f"<html><body><h3>Firing</h3><table><tr>{head}</tr><tr>{row}</tr></table></body></html>"
    body = body_bytes if body_bytes is not None else html.encode("utf-8")
    return (f"From: alerts@example.test\r\nSubject: Control Cluster Details\r\nMessage-ID: <{uuid.uuid4().hex}@t>\r\n"
            f"MIME-Version: 1.0\r\nContent-Type: text/html; charset=\"{charset}\"\r\n"
            "Content-Transfer-Encoding: 8bit\r\n\r\n").encode() + body


def _of(tenant: str, records: list[Record], kind: type[Record]) -> list[Any]:
    return [r for r in records if isinstance(r, kind) and getattr(r, "tenant", None) == tenant]


def _row(alert: str, namespace: str = "kube-system", severity: str = "P2") -> list[str]:
    return [alert, severity, "HK-DCE5-PLATFORM", namespace, "etcd-0", "2026-11-25 10:00:00", "3", "fsync slow"]


# --------------------------------------------------------------------------- mails, sizes, dead letters

#: The dead-letter topic as an older deployment created it: Kafka's default 1 MiB limit, not rcaflow's
#: 11 MiB (topics that exist are left as they are).
OLD_DEAD_LETTER_LIMIT = 1_048_588


@dataclass
class Running:
    stack: Stack
    codec: Codec
    publisher: KafkaPublisher
    readers: dict[str, TopicReader] = field(default_factory=dict)

    @property
    def prefix(self) -> str:
        return self.stack.settings.kafka.topic_prefix

    def reader(self, spec: Any) -> TopicReader:
        if spec.name not in self.readers:
            self.readers[spec.name] = TopicReader(self.stack.bootstrap, self.codec, spec, self.prefix,
                                                  alive=self.stack.check)
        return self.readers[spec.name]


@pytest.fixture(scope="module")
def running(broker: object, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    bootstrap = broker.bootstrap  # type: ignore[attr-defined]
    stack = _stack(bootstrap, tmp_path_factory.mktemp("edges"))
    prefix = stack.settings.kafka.topic_prefix
    admin = AdminClient({"bootstrap.servers": bootstrap})
    created = admin.create_topics([NewTopic(DEAD_LETTER.full_name(prefix), num_partitions=3, replication_factor=1,
                                            config={"max.message.bytes": str(OLD_DEAD_LETTER_LIMIT)})])
    for future in created.values():
        future.result(30)
    codec = make_codec(None)
    with stack:
        publisher = KafkaPublisher(stack.bootstrap, codec, prefix)
        run = Running(stack, codec, publisher)
        try:
            yield run
        finally:
            publisher.close_sync()
            for reader in run.readers.values():
                reader.close()


def test_a_utf7_mail_whose_text_decodes_to_lone_surrogates_becomes_alerts(running: Running) -> None:
    """Issue 12: such a mail crashed the normalize agent and was lost. Its text is read, the alert comes through."""
    tenant = f"u7-{uuid.uuid4().hex[:6]}"
    raw = _table_mail(_row("etcdHighFsyncDurations+2D0-"), "utf-7")
    running.publisher.publish_sync(RAW_MAIL, f"{tenant}:m", _mail(tenant, raw))

    normalized = running.reader(NORMALIZED)
    records = normalized.wait_for(lambda rs: bool(_of(tenant, rs, AlertEvent)), what="the utf-7 mail's alert")
    (event,) = _of(tenant, records, AlertEvent)
    assert event.alert == "etcdHighFsyncDurations+2D0-"
    assert event.labels["namespace"] == "kube-system"
    running.reader(DEAD_LETTER).poll(1.0)
    assert _of(tenant, running.reader(DEAD_LETTER).records, DeadLetter) == []


def test_a_mail_with_an_unknown_or_a_lying_charset_is_read_in_the_charset_it_really_uses(running: Running) -> None:
    unknown, lying = f"cs-{uuid.uuid4().hex[:6]}", f"cs-{uuid.uuid4().hex[:6]}"
    # Declares a charset nobody knows, writes UTF-8.
    running.publisher.publish_sync(RAW_MAIL, f"{unknown}:m", _mail(unknown, _table_mail(
        _row("etcdHighFsyncDurations", namespace="监控-ns"), "x-unknown-42")))
    # Declares UTF-8, writes GB18030 (a sender whose template was saved in the wrong encoding).
    head = "".join(f"<th>{c}</th>" for c in COLUMNS)
    html = f"<table><tr>{head}</tr><tr>" + "".join(
        f"<td>{c}</td>" for c in _row("etcdHighFsyncDurations", namespace="监控-ns", severity="严重")) + "</tr></table>"
    running.publisher.publish_sync(RAW_MAIL, f"{lying}:m", _mail(lying, _table_mail(
        [], "utf-8", body_bytes=html.encode("gb18030"))))

    normalized = running.reader(NORMALIZED)
    records = normalized.wait_for(
        lambda rs: bool(_of(unknown, rs, AlertEvent)) and bool(_of(lying, rs, AlertEvent)), what="both alerts")
    assert [e.labels["namespace"] for e in _of(unknown, records, AlertEvent)] == ["监控-ns"]
    assert [e.labels["namespace"] for e in _of(lying, records, AlertEvent)] == ["监控-ns"]


def test_a_mail_without_alerts_is_kept_in_dead_letter_with_stage_reason_position_and_bytes(running: Running) -> None:
    tenant = f"poison-{uuid.uuid4().hex[:6]}"
    raw = b"From: alerts@example.test\r\nSubject: lunch?\r\nContent-Type: text/plain\r\n\r\nsee you at noon"
    delivery = running.publisher.publish_sync(RAW_MAIL, f"{tenant}:m", _mail(tenant, raw))

    letters = running.reader(DEAD_LETTER)
    (letter,) = _of(tenant, letters.wait_for(lambda rs: bool(_of(tenant, rs, DeadLetter)), what="a dead letter"),
                    DeadLetter)
    assert letter.stage == "normalize" and "no alert found" in letter.reason
    assert (letter.source_topic, letter.partition, letter.offset) == (delivery.topic, delivery.partition,
                                                                     delivery.offset)
    original = running.codec.decode(letter.payload, RawMail, topic=delivery.topic)
    assert original.raw == raw and not letter.truncated
    assert letter.payload_sha256 == hashlib.sha256(letter.payload).hexdigest()
    assert letter.payload_size == len(letter.payload)


def test_an_output_too_large_for_the_broker_dead_letters_its_input_and_the_partition_moves_on(
    running: Running, samples_dir: Path
) -> None:
    """Issue 12: the Incident embedding a huge alert was refused; the worker logged a warning and committed."""
    tenant = f"big-{uuid.uuid4().hex[:6]}"
    seed = parse_mail((samples_dir / "etcd_latency.eml").read_bytes(), tenant=tenant, received_at=datetime.now(UTC),
                      source=EventSource(kind=SourceKind.FILE)).events[0]
    # 1.5 MB of compressible text: the publisher's lz4 gets it onto normalized, the uncompressed Incident
    # that embeds it is over the incidents topic's limit.
    huge = seed.model_copy(update={"annotations": {"description": "fsync slow; " * 125_000}})
    small = seed.model_copy(update={"event_id": uuid.uuid4().hex[:24]})
    key = f"{tenant}:{seed.fingerprint}"  # same key, same partition: the small one waits behind the huge one
    asyncio.run(running.publisher.publish(NORMALIZED, key, huge))
    asyncio.run(running.publisher.publish(NORMALIZED, key, small))

    def by_stage(records: list[Record]) -> dict[str, DeadLetter]:
        return {letter.stage: letter for letter in _of(tenant, records, DeadLetter)}

    letters = running.reader(DEAD_LETTER)
    # dedup could not pass the alert on (its Incident is over the incidents topic's limit). The audit trail
    # still records it: the worker's audit-input topic takes what the dead-letter topic takes (11 MiB).
    kept = by_stage(letters.wait_for(lambda rs: "dedup" in by_stage(rs), timeout=90,
                                     what="the dead letter of the huge alert"))
    assert all(letter.reason.startswith("output too large") for letter in kept.values())
    audit = running.reader(AUDIT)
    audit.wait_for(lambda rs: any(isinstance(r, AuditRecord) and r.subject_id == huge.event_id for r in rs),
                   timeout=90, what="the huge alert's ingest step in the audit trail")
    assert "audit-ingest" not in by_stage(letters.records)
    letter = kept["dedup"]
    # The input as it was read (cut, because this deployment's dead-letter topic takes 1 MiB: see below).
    value = running.codec.encode(huge, topic=NORMALIZED.full_name(running.prefix))
    assert letter.payload_size == len(value) and letter.payload_sha256 == hashlib.sha256(value).hexdigest()
    assert value.startswith(letter.payload)
    incidents = running.reader(INCIDENTS)
    records = incidents.wait_for(lambda rs: bool(_of(tenant, rs, Incident)), what="the next alert's incident")
    assert [i.event.event_id for i in _of(tenant, records, Incident)] == [small.event_id]


def test_a_dead_letter_over_the_dead_letter_topics_limit_is_kept_cut_with_size_and_sha256(running: Running) -> None:
    """The dead-letter topic of an older deployment takes 1 MiB; a 2 MB mail that is no alert still lands there."""
    tenant = f"cut-{uuid.uuid4().hex[:6]}"
    raw = b"From: alerts@example.test\r\nSubject: logs\r\nContent-Type: text/plain\r\n\r\n" + os.urandom(1_000_000).hex(
    ).encode()
    delivery = running.publisher.publish_sync(RAW_MAIL, f"{tenant}:m", _mail(tenant, raw))

    letters = running.reader(DEAD_LETTER)
    (letter,) = _of(tenant, letters.wait_for(lambda rs: bool(_of(tenant, rs, DeadLetter)), timeout=90,
                                             what="the cut dead letter"), DeadLetter)
    value = _raw_value(running, delivery.partition, delivery.offset)
    assert letter.truncated and letter.offset == delivery.offset and letter.stage == "normalize"
    assert letter.payload_size == len(value) and letter.payload_sha256 == hashlib.sha256(value).hexdigest()
    assert value.startswith(letter.payload) and 0 < len(letter.payload) < len(value)


def _raw_value(running: Running, partition: int, offset: int) -> bytes:
    """The raw-mail record's bytes exactly as the worker read them."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": running.stack.bootstrap, "group.id": f"r-{uuid.uuid4().hex}",
                         "enable.auto.commit": False})
    try:
        consumer.assign([TopicPartition(RAW_MAIL.full_name(running.prefix), partition, offset)])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and not msg.error():
                return msg.value() or b""
        raise AssertionError("raw-mail record not readable")
    finally:
        consumer.close()


# --------------------------------------------------------------------------- the LLM second opinion


@dataclass
class RoutedChat:
    """An OpenAI-compatible chat server whose replies are scripted per incident (found by a marker in the prompt)."""

    scripts: dict[str, list[tuple[int, str | None, str]]]
    served: dict[str, int] = field(default_factory=dict)

    async def chat(self, request: Request) -> Response:
        body = json.loads(await request.body())
        prompt = " ".join(str(m.get("content", "")) for m in body.get("messages", []))
        marker = next((m for m in self.scripts if m in prompt), None)
        script = self.scripts.get(marker, []) if marker else []
        if marker:
            self.served[marker] = self.served.get(marker, 0) + 1
        status, content, finish = script.pop(0) if script else (200, answer_json(summary=f"fine {marker}"), "stop")
        if status == 0:  # never answers: the client's timeout must fire
            await asyncio.Event().wait()
        if status != 200:
            return Response(json.dumps({"error": {"message": "scripted"}}), status_code=status,
                            headers={"retry-after": "0"} if status == 429 else {})
        return JSONResponse({"id": "c", "object": "chat.completion", "model": "standin",
                             "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                                          "finish_reason": finish}],
                             # Counters of the wrong type: a broken server's usage must not break the reply.
                             "usage": {"prompt_tokens": "many", "completion_tokens": None, "total_tokens": [5]}})

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/v1/chat/completions", self.chat, methods=["POST"])])


def _triaged(samples_dir: Path, tenant: str, marker: str) -> RcaResult:
    """The policy's triage of the etcd sample, with a marker the stand-in routes by."""
    from streams.wiring.runtime import build_stages

    stages = build_stages(Settings())
    event = parse_mail((samples_dir / "etcd_latency.eml").read_bytes(), tenant=tenant,
                       received_at=datetime.now(UTC), source=EventSource(kind=SourceKind.FILE)).events[0]
    # Its own event id, so each marker is an incident of its own.
    event = event.model_copy(update={"alert_class": load_policies().classify(event), "event_id": marker,
                                     "annotations": {"marker": marker}})
    incident = stages.dedup(event, None).outputs[0].record
    assert isinstance(incident, Incident)
    triaged = asyncio.run(stages.rca(incident)).outputs[0].record
    assert isinstance(triaged, RcaResult) and triaged.engine is Engine.POLICY and triaged.actions
    return triaged


def _metric(url: str, name: str, labels: dict[str, str]) -> float:
    """One sample of the worker's /metrics, as Prometheus would scrape it (0 before it exists)."""
    try:
        text = urllib.request.urlopen(url, timeout=5).read().decode()
    except OSError:
        return 0.0  # not listening yet
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_malformed_or_failing_llm_replies_never_lose_the_incident(
    broker: object, tmp_path: Path, samples_dir: Path
) -> None:
    garbage = (200, "I think the disk is slow. Restart everything!", "stop")
    truncated = (200, answer_json()[:60], "length")
    wrong_types = (200, json.dumps({"evidence_plan": "none", "diagnosis": {"summary": 7, "cause": [],
                                                                           "confidence": "high"},
                                    "actions": {}, "rollback": None}), "stop")
    huge = (200, "{" + "\"a\": [" * 50_000 + "x" * 400_000, "stop")
    malformed = {f"bad-{kind}-{uuid.uuid4().hex[:6]}": [reply, reply]
                 for kind, reply in (("garbage", garbage), ("truncated", truncated), ("types", wrong_types),
                                     ("huge", huge))}
    # Down for longer than the client's own retries (4 attempts) and then back: 429, 500 and a timeout.
    flaky = f"flaky-{uuid.uuid4().hex[:6]}"
    outage = [(429, None, ""), (500, None, ""), (0, None, ""), (503, None, ""), (429, None, "")]
    chat = RoutedChat({**malformed, flaky: list(outage)})
    metrics_port = _free_port()
    tenant = f"llm-{uuid.uuid4().hex[:6]}"
    with serve(chat.app(), "llm-standin") as url:
        stack = _stack(broker.bootstrap, tmp_path, QWEN_API_KEY="test-not-a-key",  # type: ignore[attr-defined]
                       RCAFLOW_LLM__BASE_URL=f"{url}/v1", RCAFLOW_LLM__ENABLED="true", RCAFLOW_LLM__TIMEOUT_S="2",
                       RCAFLOW_WORKER__METRICS_PORT=str(metrics_port))
        codec = make_codec(None)
        with stack:
            prefix = stack.settings.kafka.topic_prefix
            publisher = KafkaPublisher(stack.bootstrap, codec, prefix)
            triaged = {m: _triaged(samples_dir, tenant, m) for m in [*malformed, flaky]}
            try:
                for result in triaged.values():
                    publisher.publish_sync(RCA_RESULT, f"{tenant}:{result.incident_id}", result)
            finally:
                publisher.close_sync()

            results = TopicReader(stack.bootstrap, codec, RCA_RESULT, prefix, alive=stack.check)
            letters = TopicReader(stack.bootstrap, codec, DEAD_LETTER, prefix, alive=stack.check)
            try:
                def llm(records: list[Record]) -> dict[str, RcaResult]:
                    return {r.incident_id: r for r in _of(tenant, records, RcaResult) if r.engine is Engine.LLM}

                # The flaky model's answer arrives once it is back: the outage delayed it, nothing skipped it.
                results.wait_for(lambda rs: triaged[flaky].incident_id in llm(rs), timeout=150,
                                 what="the LLM answer after the outage")
                metrics = f"http://127.0.0.1:{metrics_port}/metrics"
                deadline = time.monotonic() + 60
                while _metric(metrics, "rcaflow_stage_processed_total",
                              {"stage": "llm", "outcome": "invalid_answer"}) < len(malformed):
                    stack.check()
                    assert time.monotonic() < deadline, "the malformed replies were not all counted"
                    time.sleep(0.5)
                results.poll(2.0)
                letters.poll(1.0)
            finally:
                results.close()
                letters.close()

    answers = llm(results.records)
    assert answers[triaged[flaky].incident_id].diagnosis == f"fine {flaky}"
    # Every malformed reply was asked about twice (one repair), then the incident kept its triage: no LLM
    # result, no dead letter; the policy's result stays the incident's answer.
    assert all(chat.served[m] == 2 for m in malformed), chat.served
    assert not {triaged[m].incident_id for m in malformed} & set(answers)
    assert _of(tenant, letters.records, DeadLetter) == []
    assert chat.served[flaky] >= len(outage) + 1


# --------------------------------------------------------------------------- schema registry outage


@pytest.fixture
def registry() -> Iterator[tuple[StandInRegistry, str]]:
    """The Schema Registry REST stand-in (tests/unit/schemas) on a loopback port."""
    state = StandInRegistry()
    with serve_registry(state) as url:
        yield state, url


def test_a_schema_registry_outage_delays_mails_and_dead_letters_none(
    broker: object, tmp_path: Path, samples_dir: Path, registry: tuple[StandInRegistry, str]
) -> None:
    state, url = registry
    codec = make_codec(url)
    tenant = f"sr-{uuid.uuid4().hex[:6]}"
    stack = _stack(broker.bootstrap, tmp_path, SCHEMA_REGISTRY_URL=url)  # type: ignore[attr-defined]
    prefix = stack.settings.kafka.topic_prefix
    # Written while the registry is up, before the worker runs; then the registry goes down.
    ensure_topics(stack.bootstrap, prefix)
    publisher = KafkaPublisher(stack.bootstrap, codec, prefix)
    try:
        publisher.publish_sync(RAW_MAIL, f"{tenant}:m", _mail(tenant, (samples_dir / "etcd_latency.eml").read_bytes()))
    finally:
        publisher.close_sync()
    state.fail_with = 503
    before = len(state.requests)
    with stack:
        deadline = time.monotonic() + 60
        # Longer than the registry client's own retries (4 requests), so the worker's decode fails and is retried.
        while len([r for r in state.requests[before:] if r[0] == "GET"]) < 10:
            stack.check()
            assert time.monotonic() < deadline, "the worker stopped asking the registry for the mail's schema"
            time.sleep(0.2)
        state.fail_with = None
        normalized = TopicReader(stack.bootstrap, codec, NORMALIZED, prefix, alive=stack.check)
        letters = TopicReader(stack.bootstrap, codec, DEAD_LETTER, prefix, alive=stack.check)
        try:
            records = normalized.wait_for(lambda rs: bool(_of(tenant, rs, AlertEvent)), timeout=90,
                                          what="the mail's alert after the outage")
            letters.poll(2.0)
        finally:
            normalized.close()
            letters.close()
    assert {e.alert_class for e in _of(tenant, records, AlertEvent)} == {"etcd_latency"}
    assert _of(tenant, letters.records, DeadLetter) == []
    assert any(re.fullmatch(r"/schemas/ids/\d+", path) for _method, path in state.requests)
