"""Case 7: scale-out. Two worker processes in one consumer group on 6 partitions, one killed -9 and
restarted mid-load, a third added mid-load; mails from three tenants, each alert mailed three times.

What must hold across the rebalances:
- every mail on raw-mail became an alert on normalized or a dead letter (none lost, none counted twice);
- each tenant's alert opens exactly one incident; its repeats, also those processed after a rebalance
  moved its partition to another process, are counted on that incident (count = copies), never open
  a second one: the dedup state travels with the partition (a Faust table with a changelog);
- each incident stays in one incident group (the correlate table travels too);
- each proposed action is decided once and runs at most once.

Guards: the dedup and incident-group state are Faust tables keyed like their input topics, recovered
from their changelogs by whichever worker gets the partition; the worker sends outputs before it
updates a table and acks its input after; ``streams.worker.rebalance`` stops fetching while a
recovering worker seeks its partitions; ``streams.worker.cleared_queues`` lets a revocation end when Faust
cleared a record from some agents' queues (it waited for it for ever), without committing past it;
``streams.worker.commit_floor`` keeps every commit at or below the first record no agent has finished
(Faust committed past unprocessed alert events at a partition's start and at revocations); a restarted
worker's recovery reads a standby changelog it has no start for from its beginning (it crashed).
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from confluent_kafka.admin import AdminClient

from producers.publisher import KafkaPublisher
from schemas.codec import Codec
from schemas.records import AlertEvent, Incident, RawMail, SourceKind
from schemas.topics import NORMALIZED, RAW_MAIL
from streams.broker import EmbeddedBroker
from streams.wiring.topics_admin import CORRELATE_INPUT_SUFFIX, DEDUP_STATE, ensure_topics, worker_topics
from tests.faults import mails
from tests.faults.accounting import Ledger, Row, account_mails, mail_row, mails_done, rejected_note, short
from tests.faults.conftest import Pipeline, mails_count
from tests.faults.load import progress, run_id

PARTITIONS = 6
TENANTS = ("acme", "globex", "initech")
#: Each alert is mailed this often: two copies before the rebalances, the last one after them.
COPIES = 3
SENDERS = json.dumps(["*@dce5.example.test"])


def tenant_env() -> dict[str, str]:
    """Three tenants (and the suite's ``default``), each with the senders and namespace of the load's mails."""
    env = {"RCAFLOW_WORKER__PARTITIONS": str(PARTITIONS), "RCAFLOW_TENANTS__DEFAULT__SENDERS": SENDERS}
    for tenant in TENANTS:
        env[f"RCAFLOW_TENANTS__{tenant.upper()}__SENDERS"] = SENDERS
        env[f"RCAFLOW_TENANTS__{tenant.upper()}__NAMESPACES"] = json.dumps([mails.NAMESPACE])
    return env


class Workers:
    """``rcaflow worker`` processes of one pipeline, each with its own name, data dir and log."""

    def __init__(self, pipe: Pipeline) -> None:
        self.pipe = pipe
        self.started: dict[str, int] = defaultdict(int)

    def start(self, name: str) -> None:
        self.started[name] += 1
        env = {**self.pipe.stack.base_env, "KAFKA_BOOTSTRAP_SERVERS": self.pipe.bootstrap,
               "RCAFLOW_WORKER__DATA_DIR": str(self.pipe.tmp / name)}
        self.pipe.log_dir.mkdir(parents=True, exist_ok=True)
        with (self.pipe.log_dir / f"{name}.log").open("ab") as log:
            child = subprocess.Popen([sys.executable, "-m", "streams.cli", "worker"], env=env, stdout=log,
                                     stderr=subprocess.STDOUT)
        # In the stack's children: checked by ``stack.check`` and stopped with the stack.
        self.pipe.stack.children[name] = child


class Group:
    """The workers' consumer group as the broker describes it."""

    def __init__(self, bootstrap: str, group: str) -> None:
        self.admin = AdminClient({"bootstrap.servers": bootstrap})
        self.group = group
        self.last = "not described yet"

    def members(self) -> tuple[str, int]:
        """The group's state and how many members it has."""
        description = self.admin.describe_consumer_groups([self.group])[self.group].result(timeout=10)
        state = str(description.state).rsplit(".", 1)[-1]
        self.last = f"{state}, members {[m.client_id for m in description.members]}"
        return state, len(description.members)

    def wait(self, count: int, alive: Callable[[], None], poll: Callable[[], None], timeout: float) -> bool:
        """Until the group is stable with ``count`` members (the rebalance to them is over)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            alive()
            poll()
            if self.members() == ("STABLE", count):
                return True
        return False


def behind(bootstrap: str, group: str, prefix: str) -> dict[str, tuple[int, int]]:
    """Each partition of the pipeline's topics the group has not committed to its end: (committed, end).

    At the end of a run every input the workers read is done, so any such partition is where a worker
    stopped consuming (the changelogs and Faust's leader topic are not inputs and are left out).
    """
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        topics = [t for t in consumer.list_topics(timeout=10).topics
                  if t.startswith(prefix) and not t.endswith("-changelog") and "__assignor" not in t]
        tps = [TopicPartition(t, p) for t in topics
               for p in consumer.list_topics(t, timeout=10).topics[t].partitions]
        out = {}
        for tp in consumer.committed(tps, timeout=10):
            end = consumer.get_watermark_offsets(tp, timeout=10)[1]
            if end > 0 and tp.offset < end:
                out[f"{tp.topic.removeprefix(prefix)}:{tp.partition}"] = (tp.offset, end)
        return dict(sorted(out.items()))
    finally:
        consumer.close()


def read_all(bootstrap: str, topic: str) -> list[bytes]:
    """Every record value of ``topic``, from the beginning to its end offsets now."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"faults-{uuid.uuid4().hex}",
                         "enable.auto.commit": False, "fetch.message.max.bytes": 16 * 1024 * 1024})
    try:
        parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in parts}
        remaining = {p for p, end in ends.items() if end > 0}
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in remaining])
        values: list[bytes] = []
        deadline = time.monotonic() + 60
        while remaining and time.monotonic() < deadline:
            for msg in consumer.consume(500, 0.5):
                if msg.error():
                    continue
                values.append(msg.value() or b"")
                if (msg.offset() or 0) + 1 >= ends[msg.partition() or 0]:
                    remaining.discard(msg.partition() or 0)
        return values
    finally:
        consumer.close()


def where_dedup_left(bootstrap: str, codec: Codec, prefix: str, event_ids: set[str]) -> dict[str, int]:
    """For events with no incident record: did dedup record them in its table, and send them on to correlate?

    In its table but not on correlate-input: dedup's output went missing (a re-delivery is then taken as a
    replay and answered by nothing). On correlate-input: correlate dropped it. In neither: dedup never
    processed it although the group committed past it.
    """
    base = f"{prefix}rcaflow"
    in_table: set[str] = set()
    for value in read_all(bootstrap, f"{base}-{DEDUP_STATE}-changelog"):
        try:
            row = json.loads(value)
        except ValueError:
            continue
        if isinstance(row, dict):
            in_table.update(row.get("recent_event_ids") or ())
    sent_on: set[str] = set()
    for value in read_all(bootstrap, f"{base}{CORRELATE_INPUT_SUFFIX}"):
        try:
            incident = codec.decode(value, Incident, topic=f"{base}{CORRELATE_INPUT_SUFFIX}")
        except Exception:  # noqa: BLE001 - a diagnosis: an undecodable record just answers nothing
            continue
        sent_on.update(i for i in (incident.event.event_id, incident.last_event_id) if i)
    return {"in dedup's table and on correlate-input": len(event_ids & in_table & sent_on),
            "in dedup's table only": len((event_ids & in_table) - sent_on),
            "on correlate-input only": len((event_ids & sent_on) - in_table),
            "in neither": len(event_ids - in_table - sent_on)}


def test_workers_scale_out_kill_and_join_mid_load(broker: EmbeddedBroker, codec: Codec, tmp_path: Path,
                                                  record_row: list[Row]) -> None:
    alerts = max(12, mails_count() // 5)  # distinct alerts over all tenants; COPIES mails each
    run = run_id()
    rng = random.Random(run)
    # (tenant, alert number) of each mail: first and second copies shuffled together, then the third copies.
    keys = [(TENANTS[n % len(TENANTS)], n) for n in range(alerts)]
    before = keys * 2
    rng.shuffle(before)
    after = list(keys)
    rng.shuffle(after)
    pipe = Pipeline(broker.bootstrap, tmp_path, roles=("executor",), env=tenant_env(), name="scale-out")
    # Every topic (public and the worker's internal ones) with 6 partitions before anything starts, so that
    # three workers all get work.
    ensure_topics(broker.bootstrap, pipe.prefix, partitions=PARTITIONS,
                  internal=worker_topics(pipe.prefix, "rcaflow", PARTITIONS))
    with pipe, Ledger(pipe.bootstrap, codec, pipe.prefix) as ledger:
        group = f"{pipe.prefix}rcaflow"
        workers = Workers(pipe)
        publisher = KafkaPublisher(pipe.bootstrap, codec, pipe.prefix)
        delivered: list[str] = []

        def publish(batch: list[tuple[str, int]]) -> None:
            for tenant, n in batch:
                raw = mails.normal_mail(run, n)
                message_id = mails.message_id_of(raw)
                record = RawMail(tenant=tenant, message_id=message_id, mailbox="faults", source=SourceKind.FILE,
                                 received_at=datetime.now(UTC), raw=raw)
                publisher.publish_sync(RAW_MAIL, f"{tenant}:{message_id}", record)
                delivered.append(message_id)

        def incident_records() -> int:
            return len(ledger.incident_records())

        try:
            workers.start("worker-1")
            workers.start("worker-2")
            publish(before)
            # kill -9 one of the two while both are busy, start it again at once (a supervisor's restart).
            progress(incident_records, len(before) // 3, timeout=90, alive=pipe.stack.check, poll=ledger.poll)
            pipe.kill("worker-1")
            workers.start("worker-1")
            # Half the third copies while that worker recovers, then a third worker joins mid-load.
            publish(after[: alerts // 2])
            progress(incident_records, len(before) * 2 // 3, timeout=90, alive=pipe.stack.check, poll=ledger.poll)
            workers.start("worker-3")
            publish(after[alerts // 2:])
            three = Group(pipe.bootstrap, group)
            joined = three.wait(3, pipe.stack.check, ledger.poll, timeout=90)
            ledger.settle(mails_done(delivered), timeout=max(240.0, len(delivered) * 0.6), alive=pipe.stack.check,
                          stall_s=60.0)
        finally:
            publisher.close_sync()
        account = account_mails(ledger, delivered)
        letters = ledger.letters()
        incidents = ledger.incident_records()
        # Where the group stands on raw-mail: below the lost records (stalled) or past them (skipped).
        offsets = ledger.committed(group, RAW_MAIL) if account.lost else {}
        # Where the group stands on normalized (dedup's input), for events dedup never answered.
        normalized_offsets = ledger.committed(group, NORMALIZED)
        lagging = behind(pipe.bootstrap, group, pipe.prefix)
        answered = {i.event.event_id for i in incidents} | {i.last_event_id for i in incidents if i.last_event_id}
        missing_ids = {e.event_id for e in ledger.events()} - answered
        dedup_left = where_dedup_left(pipe.bootstrap, codec, pipe.prefix, missing_ids) if missing_ids else {}
    copies: dict[tuple[str, str], set[str]] = defaultdict(set)
    for event in ledger.events():
        copies[(event.tenant, event.fingerprint)].add(event.event_id)
    groups: dict[str, set[str | None]] = defaultdict(set)
    for incident in incidents:
        groups[incident.incident_id].add(incident.group_id)
    regrouped = {i: g for i, g in groups.items() if len(g) > 1}
    short_counted = {k: len(v) for k, v in copies.items() if len(v) != COPIES}
    row = mail_row(f"scale-out: 2 workers, 1 killed -9 + restarted, 1 added ({PARTITIONS} partitions, "
                   f"{len(TENANTS)} tenants, {COPIES} copies per alert)", account, normal_letters=letters,
                   notes=f"{len(copies)} alerts, {len(groups)} incidents; {account.flow.actions} action ids; "
                         f"{rejected_note(account.flow)}")
    if regrouped:
        row.details["incidents in 2+ groups"] = regrouped
        row.duplicates += len(regrouped)
    if short_counted:
        row.details["alerts without 3 distinct events"] = short_counted
    if offsets:
        row.details["worker group on raw-mail (partition: committed, end)"] = offsets
    # Each alert event gets an incident record from dedup (opening or counting); one without any was never
    # processed by dedup (a stalled normalized partition) or taken for one already seen.
    unanswered = sorted(f"{e.tenant}:{e.fingerprint}/{e.event_id} at {e.source.partition}@{e.source.offset}"
                        for e in ledger.events() if e.event_id not in answered)
    if unanswered:
        row.details["alert events with no incident record from dedup"] = unanswered
        per_partition: dict[int, list[int]] = defaultdict(list)
        for (_, partition, offset), _, record in ledger.normalized.items:
            if isinstance(record, AlertEvent) and record.event_id not in answered:
                per_partition[partition].append(offset)
        row.details["unanswered normalized offsets per partition (count, lowest)"] = {
            p: (len(o), min(o)) for p, o in sorted(per_partition.items())}
        row.details["worker group on normalized (partition: committed, end)"] = normalized_offsets
        row.details["where dedup left them"] = dedup_left
    if not joined:
        row.details["group never stable with three workers"] = [three.last]
    if lagging and (unanswered or row.lost):
        row.details["worker group behind on (topic:partition: committed, end)"] = lagging
    record_row.append(row)
    assert joined, f"the group never became stable with three workers (no rebalance to three): {three.last}"
    assert account.raw_records == alerts * COPIES
    assert len(copies) == alerts and not short_counted, short(row.details)
    assert row.lost == 0, short(row.details)
    assert row.duplicates == 0, short(row.details)
    assert not letters, short(row.details)
    # One incident per alert, counted up to its copies (the last copy came after the rebalances).
    assert len(groups) == alerts, short(row.details)
    highest: dict[str, int] = defaultdict(int)
    for incident in incidents:
        highest[incident.incident_id] = max(highest[incident.incident_id], incident.count)
    assert set(highest.values()) == {COPIES}, short(row.details)


#: ~1-2 min when healthy; a stalled group fails within ~6 min.
pytestmark = pytest.mark.timeout(600)
