"""Count every input against outputs and dead letters, from the topics themselves.

A ``Ledger`` tails the topics of one stack (one topic prefix) and answers, for the inputs a case sent:
which came out (normalized / incidents / rca-result / actions), which are in dead-letter (with a
reason), which came out twice (a second incident for one fingerprint, an action run twice), and which
are lost. A case's ``Row`` is what the end-of-session table shows.
"""

from __future__ import annotations

import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from schemas.codec import Codec
from schemas.records import (
    ActionEvent,
    ActionState,
    AlertEvent,
    DeadLetter,
    Engine,
    Incident,
    RawMail,
    RcaResult,
    Record,
)
from schemas.topics import ACTIONS, DEAD_LETTER, INCIDENTS, NORMALIZED, RAW_MAIL, RCA_RESULT, TopicSpec

Position = tuple[str, int, int]  # topic, partition, offset

TERMINAL = {ActionState.SUCCEEDED, ActionState.FAILED, ActionState.ROLLED_BACK, ActionState.REJECTED,
            ActionState.EXPIRED}


@dataclass
class Row:
    """One line of the table: what a case put in, and what became of it."""

    fault: str
    inputs: int = 0
    outputs: int = 0
    dead_letters: int = 0
    refused: int = 0
    duplicates: int = 0
    lost: int = 0
    notes: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    def markdown(self) -> str:
        return (f"| {self.fault} | {self.inputs} | {self.outputs} | {self.dead_letters} | {self.refused} | "
                f"{self.duplicates} | {self.lost} | {self.notes} |")


TABLE_HEADER = ("| fault | inputs | outputs | dead-letters | refused (4xx) | duplicates | lost | notes |\n"
                "|---|---|---|---|---|---|---|---|")


class Tail:
    """One topic, all partitions, from the beginning; every ``poll`` adds what arrived since."""

    def __init__(self, bootstrap: str, codec: Codec, spec: TopicSpec, prefix: str) -> None:
        self.name = spec.full_name(prefix)
        self.bootstrap = bootstrap
        self.kind = spec.value
        self.codec = codec
        self.items: list[tuple[Position, bytes | None, Record | None]] = []
        self._consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"faults-{uuid.uuid4().hex}",
                                   "enable.auto.commit": False, "fetch.message.max.bytes": 16 * 1024 * 1024})
        meta = self._consumer.list_topics(self.name, timeout=30)
        parts = meta.topics[self.name].partitions
        self._consumer.assign([TopicPartition(self.name, p, OFFSET_BEGINNING) for p in parts])

    def poll(self, seconds: float = 0.3) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            batch = self._consumer.consume(500, 0.1)
            for msg in batch:
                if msg.error():
                    continue
                value = msg.value() or b""
                try:
                    record: Record | None = self.codec.decode(value, self.kind, topic=self.name)
                except Exception:  # noqa: BLE001 - poison bytes on an input topic are an input too
                    record = None
                self.items.append(((self.name, msg.partition() or 0, msg.offset() or 0), msg.key(), record))

    def records(self) -> list[Record]:
        return [r for _, _, r in self.items if r is not None]

    def close(self) -> None:
        self._consumer.close()


class Ledger:
    """The topics of one pipeline, read together."""

    def __init__(self, bootstrap: str, codec: Codec, prefix: str) -> None:
        self.prefix = prefix
        self.raw = Tail(bootstrap, codec, RAW_MAIL, prefix)
        self.normalized = Tail(bootstrap, codec, NORMALIZED, prefix)
        self.dead = Tail(bootstrap, codec, DEAD_LETTER, prefix)
        self.incidents = Tail(bootstrap, codec, INCIDENTS, prefix)
        self.rca = Tail(bootstrap, codec, RCA_RESULT, prefix)
        self.actions = Tail(bootstrap, codec, ACTIONS, prefix)
        self.tails = (self.raw, self.normalized, self.dead, self.incidents, self.rca, self.actions)

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def poll(self, seconds: float = 0.3) -> None:
        for tail in self.tails:
            tail.poll(seconds / len(self.tails))

    def close(self) -> None:
        for tail in self.tails:
            tail.close()

    def committed(self, group: str, spec: TopicSpec) -> dict[int, tuple[int, int]]:
        """Per partition of ``spec``: (the offset ``group`` committed, the end offset). For a stalled case."""
        topic = spec.full_name(self.prefix)
        consumer = Consumer({"bootstrap.servers": self.raw.bootstrap, "group.id": group,
                             "enable.auto.commit": False})
        try:
            parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
            committed = consumer.committed([TopicPartition(topic, p) for p in parts], timeout=10)
            return {tp.partition: (tp.offset, consumer.get_watermark_offsets(tp, timeout=10)[1])
                    for tp in committed}
        finally:
            consumer.close()

    # ------------------------------------------------------------------ typed views
    def raw_mails(self) -> list[tuple[Position, RawMail | None]]:
        return [(pos, r if isinstance(r, RawMail) else None) for pos, _, r in self.raw.items]

    def events(self) -> list[AlertEvent]:
        return [r for r in self.normalized.records() if isinstance(r, AlertEvent)]

    def letters(self) -> list[DeadLetter]:
        return [r for r in self.dead.records() if isinstance(r, DeadLetter)]

    def incident_records(self) -> list[Incident]:
        return [r for r in self.incidents.records() if isinstance(r, Incident)]

    def results(self) -> list[RcaResult]:
        return [r for r in self.rca.records() if isinstance(r, RcaResult)]

    def action_records(self) -> list[ActionEvent]:
        return [r for r in self.actions.records() if isinstance(r, ActionEvent)]

    # ------------------------------------------------------------------ waiting
    def settle(self, done: Callable[[Ledger], bool], *, timeout: float, alive: Callable[[], None] | None = None,
               quiet_s: float = 3.0, stall_s: float = 90.0) -> bool:
        """Poll until ``done`` holds and nothing new arrived for ``quiet_s``; True if done.

        Gives up at ``timeout``, or once nothing at all arrived for ``stall_s`` while not done (the pipeline
        has stopped moving: waiting longer only delays the failure).
        """
        deadline = time.monotonic() + timeout
        quiet_since: float | None = None
        last_growth = time.monotonic()
        while time.monotonic() < deadline:
            if alive is not None:
                alive()
            before = sum(len(t.items) for t in self.tails)
            self.poll(1.0)
            grew = sum(len(t.items) for t in self.tails) != before
            if grew:
                last_growth = time.monotonic()
            if done(self):
                if grew or quiet_since is None:
                    quiet_since = time.monotonic()
                elif time.monotonic() - quiet_since >= quiet_s:
                    return True
            else:
                quiet_since = None
                if time.monotonic() - last_growth >= stall_s:
                    break
        return done(self)


# ---------------------------------------------------------------------------------- the accounting
@dataclass
class MailAccount:
    """Mails (by Message-ID) through raw-mail, normalize, dedup, rca and the executor."""

    delivered: int
    raw_records: int
    #: Message-IDs that reached neither raw-mail nor dead-letter (the IMAP producer's loss).
    not_ingested: list[str]
    #: Message-IDs on raw-mail more than once (the IMAP producer repeated a mail).
    ingested_twice: list[str]
    #: raw-mail positions with neither a normalized event nor a dead letter (the worker's loss).
    unaccounted: list[Position]
    #: raw-mail positions that came out (events) / went to dead-letter.
    normalized: int
    dead_lettered: int
    flow: FlowAccount
    #: raw-mail positions that became more alerts than the mail holds (a re-delivered mail counted again:
    #: its events must get the ids of the first time, derived from the position)
    counted_twice: dict[Position, int] = field(default_factory=dict)

    @property
    def lost(self) -> int:
        return len(self.not_ingested) + len(self.unaccounted) + self.flow.lost

    @property
    def duplicates(self) -> int:
        return len(self.ingested_twice) + len(self.counted_twice) + self.flow.duplicates


@dataclass
class FlowAccount:
    """From normalized events on: incidents per fingerprint, rca per incident, runs per action."""

    fingerprints: int
    #: fingerprints with more than one incident id
    split_incidents: dict[str, set[str]]
    #: fingerprints whose highest count differs from their distinct event ids (a re-delivery counted twice)
    miscounted: dict[str, tuple[int, int]]
    #: fingerprints with no incident
    no_incident: list[str]
    #: opening incidents with no policy rca-result
    no_triage: list[str]
    #: actions proposed by a policy rca-result that never reached the actions topic
    no_action: list[str]
    #: action ids with more than one ``running`` record
    ran_twice: dict[str, int]
    #: approved actions whose last state is not terminal (still approved / running)
    unfinished: dict[str, str]
    actions: int
    finished: int
    #: fingerprints whose events were expected but never normalized
    missing_events: list[str] = field(default_factory=list)
    #: rejected action records by reason (a re-delivered rca-result is decided again: "in cooldown")
    rejected: dict[str, int] = field(default_factory=dict)

    @property
    def lost(self) -> int:
        return (len(self.no_incident) + len(self.no_triage) + len(self.no_action) + len(self.unfinished)
                + len(self.missing_events))

    @property
    def duplicates(self) -> int:
        return len(self.split_incidents) + len(self.miscounted) + len(self.ran_twice)

    def problems(self) -> dict[str, Any]:
        return {k: v for k, v in {
            "fingerprints with 2+ incidents": self.split_incidents,
            "miscounted (max count, distinct events)": self.miscounted,
            "fingerprints without an incident": self.no_incident,
            "incidents without a triage result": self.no_triage,
            "proposed actions never recorded": self.no_action,
            "actions with 2+ running records": self.ran_twice,
            "actions not finished": self.unfinished,
            "expected events never normalized": self.missing_events,
        }.items() if v}


def account_flow(ledger: Ledger, *, expected_fingerprints: Iterable[str] | None = None,
                 require_actions: bool = True) -> FlowAccount:
    events = ledger.events()
    event_ids: dict[str, set[str]] = defaultdict(set)
    for event in events:
        event_ids[event.fingerprint].add(event.event_id)
    incidents = ledger.incident_records()
    ids: dict[str, set[str]] = defaultdict(set)
    max_count: dict[str, int] = defaultdict(int)
    for incident in incidents:
        ids[incident.fingerprint].add(incident.incident_id)
        max_count[incident.fingerprint] = max(max_count[incident.fingerprint], incident.count)
    split = {fp: i for fp, i in ids.items() if len(i) > 1}
    miscounted = {fp: (max_count[fp], len(e)) for fp, e in event_ids.items()
                  if fp in ids and fp not in split and max_count[fp] != len(e)}
    no_incident = sorted(fp for fp in event_ids if fp not in ids)
    triaged = {r.incident_id for r in ledger.results() if r.engine is Engine.POLICY}
    opened = {i.incident_id for i in incidents if i.count == 1}
    no_triage = sorted(opened - triaged)
    # A proposal becomes an action record (approved, awaiting approval, or rejected with its reason) under an
    # id decide derives; incident and action name identify it.
    proposed = {(r.incident_id, a.name) for r in ledger.results() if r.engine is Engine.POLICY for a in r.actions}
    states: dict[str, list[ActionState]] = defaultdict(list)
    decided: set[tuple[str, str]] = set()
    for action in ledger.action_records():
        states[action.action_id].append(action.state)
        decided.add((action.incident_id, action.name))
    no_action = sorted(f"{i}/{name}" for i, name in proposed - decided) if require_actions else []
    ran_twice = {a: s.count(ActionState.RUNNING) for a, s in states.items() if s.count(ActionState.RUNNING) > 1}
    unfinished = {a: s[-1].value for a, s in states.items()
                  if ActionState.APPROVED in s and not (set(s) & TERMINAL)} if require_actions else {}
    finished = sum(1 for s in states.values() if set(s) & TERMINAL)
    missing = sorted(set(expected_fingerprints or ()) - set(event_ids))
    rejected: dict[str, int] = defaultdict(int)
    for action in ledger.action_records():
        if action.state is ActionState.REJECTED:
            rejected[action.reason.split(" until ")[0][:60]] += 1
    return FlowAccount(rejected=dict(rejected), fingerprints=len(event_ids), split_incidents=split,
                       miscounted=miscounted,
                       no_incident=no_incident, no_triage=no_triage, no_action=no_action, ran_twice=ran_twice,
                       unfinished=unfinished, actions=len(states), finished=finished, missing_events=missing)


def account_mails(ledger: Ledger, delivered_ids: Iterable[str], *, require_actions: bool = True,
                  alerts_per_mail: int | None = 1) -> MailAccount:
    """Every delivered mail (Message-ID) → raw-mail or IMAP dead letter → normalized or worker dead letter.

    ``alerts_per_mail``: how many alerts each mail holds (None: it varies), so a mail counted twice shows.
    """
    delivered = list(delivered_ids)
    raw = ledger.raw_mails()
    by_id: dict[str, list[Position]] = defaultdict(list)
    for pos, mail in raw:
        if mail is not None:
            by_id[mail.message_id].append(pos)
    letters = ledger.letters()
    letter_keys = {(letter.key or b"").decode(errors="replace").split(":", 1)[-1] for letter in letters
                   if letter.offset is None}
    not_ingested = sorted(m for m in delivered if m not in by_id and m not in letter_keys)
    twice = sorted(m for m, positions in by_id.items() if len(positions) > 1)
    events_of: dict[Position, set[str]] = defaultdict(set)
    for event in ledger.events():
        events_of[(event.source.topic, event.source.partition, event.source.offset)].add(event.event_id)
    out_positions = set(events_of)
    raw_positions = {pos for pos, _ in raw}  # events posted to the API have no raw-mail position
    counted_twice = {pos: len(ids) for pos, ids in events_of.items()
                     if alerts_per_mail is not None and pos in raw_positions and len(ids) > alerts_per_mail}
    dead_positions = {(d.source_topic, d.partition, d.offset) for d in letters if d.offset is not None}
    unaccounted = [pos for pos, _ in raw if pos not in out_positions and pos not in dead_positions]
    return MailAccount(
        delivered=len(delivered), raw_records=len(raw), not_ingested=not_ingested, ingested_twice=twice,
        unaccounted=unaccounted,
        normalized=sum(1 for pos, _ in raw if pos in out_positions),
        dead_lettered=sum(1 for pos, _ in raw if pos in dead_positions and pos not in out_positions)
        + sum(1 for m in delivered if m not in by_id and m in letter_keys),
        flow=account_flow(ledger, require_actions=require_actions), counted_twice=counted_twice,
    )


def mails_done(delivered_ids: list[str], *, require_actions: bool = True) -> Callable[[Ledger], bool]:
    def done(ledger: Ledger) -> bool:
        account = account_mails(ledger, delivered_ids, require_actions=require_actions)
        return account.lost == 0
    return done


def mail_row(fault: str, account: MailAccount, notes: str = "", *,
             normal_letters: list[DeadLetter] | None = None) -> Row:
    """``normal_letters``: the dead letters of a load of normal inputs only; each is a problem (a good
    input must come through, not wait in dead-letter for a human)."""
    problems: dict[str, Any] = {**account.flow.problems()}
    if normal_letters:
        problems["normal inputs dead-lettered (stage: reason)"] = [
            f"{letter.stage}: {letter.reason[:200]}" for letter in normal_letters]
    if account.not_ingested:
        problems["delivered, never on raw-mail nor dead-letter"] = account.not_ingested
    if account.ingested_twice:
        problems["on raw-mail twice"] = account.ingested_twice
    if account.unaccounted:
        problems["raw-mail records with no event and no dead letter"] = account.unaccounted
    if account.counted_twice:
        problems["raw-mail records counted as 2+ distinct alerts (position: events)"] = account.counted_twice
    return Row(fault=fault, inputs=account.delivered, outputs=account.normalized,
               dead_letters=account.dead_lettered, duplicates=account.duplicates, lost=account.lost,
               notes=notes, details=problems)


def rejected_note(flow: FlowAccount) -> str:
    if not flow.rejected:
        return "none rejected"
    return "rejected: " + ", ".join(f"{count} {reason!r}" for reason, count in sorted(flow.rejected.items()))


def short(problems: dict[str, Any], limit: int = 5) -> str:
    """Problems for an assertion message: each kind with its first few items."""
    parts = []
    for kind, items in problems.items():
        listed = list(items.items() if isinstance(items, dict) else items)
        parts.append(f"{kind}: {len(listed)} e.g. {listed[:limit]}")
    return "; ".join(parts) or "none"
