"""What the incident API shows: every incident with its alerts, diagnoses, actions, approvals and audit steps.

:class:`IncidentsView` folds records from five topics (incidents, rca-result, actions, approvals,
audit) into memory, keyed so that the order in which the topics are read does not matter: an
action, a decision or an audit step read before its incident is kept under its own id and joined
when the incident is asked for. :class:`IncidentsFeed` fills it like the actions feed fills the
approvals' view (one reader, ``partition_reader``): no consumer group, every replica reads every
partition, so replicas agree and a restarted API rebuilds the same view.

Bounded memory, on purpose: the feed starts each partition at the first record newer than ``keep``
(offsets by timestamp, so a year of audit is not replayed at start-up), records older than ``keep``
are pruned as newer ones arrive, and at most ``max_incidents`` incidents are kept (the least recently
active go first). An incident older than ``keep`` is answered 404 here; ``rcaflow topic read`` and the
knowledge base still have it.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from confluent_kafka import OFFSET_END, Consumer, KafkaException, TopicPartition

from policies.decision_signature import ApprovalKeys, DecisionSignatureError
from schemas.codec import Codec
from schemas.records import (
    ActionEvent,
    ActionState,
    ApprovalDecision,
    AuditRecord,
    Incident,
    RcaResult,
    Record,
)
from schemas.topics import ACTIONS, APPROVALS, AUDIT, INCIDENTS, RCA_RESULT, TopicSpec
from streams.api.partition_reader import AllPartitionsReader

if TYPE_CHECKING:
    from streams.api.loops import LoopHandle

logger = logging.getLogger(__name__)

#: Topics the view reads, in the order their records are applied within one poll.
VIEW_TOPICS: tuple[TopicSpec, ...] = (INCIDENTS, RCA_RESULT, ACTIONS, APPROVALS, AUDIT)
#: Alerts kept per incident: the first, and the latest ones (a flapping alert can repeat thousands of times).
MAX_ALERTS_PER_INCIDENT = 200
#: Audit steps kept per subject (an action or an event has a handful; the cap guards against a flood).
MAX_AUDIT_PER_SUBJECT = 100
_PRUNE_EVERY = 500

_DECIDED = frozenset({
    ActionState.APPROVED, ActionState.REJECTED, ActionState.EXPIRED, ActionState.RUNNING,
    ActionState.SUCCEEDED, ActionState.FAILED, ActionState.ROLLED_BACK, ActionState.WITHDRAWN,
})


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


@dataclass
class IncidentRecords:
    """Everything the incidents topic said about one incident: the latest record and the alert history."""

    latest: Incident
    alerts: list[Incident] = field(default_factory=list)
    seen: set[tuple[str, int, str]] = field(default_factory=set)

    @property
    def active_at(self) -> datetime:
        return _aware(self.latest.resolved_at or self.latest.last_seen_at)


@dataclass(frozen=True)
class IncidentSnapshot:
    """One incident joined across the topics, copied out of the view (safe to read without the lock)."""

    incident: Incident
    alerts: tuple[Incident, ...]
    diagnoses: tuple[RcaResult, ...]
    actions: tuple[tuple[ActionEvent, ...], ...]
    approvals: tuple[tuple[ApprovalDecision, bool], ...]
    audit: tuple[AuditRecord, ...]


class IncidentsView:
    """The joined, tenant-keyed memory behind GET /incidents and GET /actions. Thread-safe (the feed writes
    from a worker thread while the API reads)."""

    def __init__(self, *, keep: timedelta = timedelta(hours=72), max_incidents: int = 20_000,
                 approval_keys: ApprovalKeys | None = None) -> None:
        self.keep = keep
        self.max_incidents = max_incidents
        #: Verifies decisions for the ``verified`` flag; None: every decision shows as unverified.
        self._keys = approval_keys
        self._lock = threading.Lock()
        self._incidents: dict[str, IncidentRecords] = {}
        self._diagnoses: dict[str, list[RcaResult]] = defaultdict(list)
        self._actions: dict[str, list[ActionEvent]] = {}
        self._actions_of: dict[str, set[str]] = defaultdict(set)
        self._approvals: dict[str, list[tuple[ApprovalDecision, bool]]] = defaultdict(list)
        self._audit: dict[str, list[AuditRecord]] = defaultdict(list)
        self._newest = datetime.fromtimestamp(0, UTC)
        self._applied = 0
        #: Bumped on every change: the console polls it to know when to reload.
        self.version = 0

    # ------------------------------------------------------------------ writing (the feed)

    def see(self, record: Record) -> None:
        """Take one record of any view topic; re-delivered records change nothing."""
        with self._lock:
            changed = self._apply(record)
            if changed:
                self.version += 1
                self._applied += 1
                if self._applied % _PRUNE_EVERY == 0:
                    self._prune()

    def _apply(self, record: Record) -> bool:
        if isinstance(record, Incident):
            return self._see_incident(record)
        if isinstance(record, RcaResult):
            known = self._diagnoses[record.incident_id]
            if any(r.engine is record.engine and r.produced_at == record.produced_at for r in known):
                return False
            known.append(record)
            known.sort(key=lambda r: r.produced_at)
            self._touch(record.produced_at)
            return True
        if isinstance(record, ActionEvent):
            states = self._actions.setdefault(record.action_id, [])
            if any(s.state is record.state and s.at == record.at for s in states):
                return False
            states.append(record)
            self._actions_of[record.incident_id].add(record.action_id)
            self._touch(record.at)
            return True
        if isinstance(record, ApprovalDecision):
            decisions = self._approvals[record.action_id]
            if any(d == record for d, _ in decisions):
                return False
            decisions.append((record, self._verified(record)))
            self._touch(record.decided_at)
            return True
        if isinstance(record, AuditRecord):
            steps = self._audit[record.subject_id]
            if any(s.tenant == record.tenant and s.seq == record.seq and s.hash == record.hash for s in steps):
                return False
            steps.append(record)
            if len(steps) > MAX_AUDIT_PER_SUBJECT:
                del steps[0]
            self._touch(record.at)
            return True
        return False

    def _see_incident(self, incident: Incident) -> bool:
        known = self._incidents.get(incident.incident_id)
        identity = (incident.last_event_id, incident.count, incident.state.value)
        if known is None:
            known = self._incidents[incident.incident_id] = IncidentRecords(latest=incident)
            if len(self._incidents) > self.max_incidents:
                self._prune()  # makes room for a tenth of the cap at once, so this is rare
        elif identity in known.seen:
            return False
        known.seen.add(identity)
        known.alerts.append(incident)
        known.alerts.sort(key=lambda i: (i.last_seen_at, i.count))
        if len(known.alerts) > MAX_ALERTS_PER_INCIDENT:
            del known.alerts[1]  # keep the opening alert and the latest ones
        # The latest state wins; a resolved incident is not reopened by an older record read later.
        newest = known.alerts[-1]
        known.latest = known.latest if known.latest.resolved_at is not None and newest.resolved_at is None \
            else newest
        self._touch(incident.last_seen_at)
        return True

    def _verified(self, decision: ApprovalDecision) -> bool:
        if self._keys is None:
            return False
        try:
            self._keys.verify(decision)
        except DecisionSignatureError:
            return False
        return True

    def _touch(self, moment: datetime) -> None:
        moment = _aware(moment)
        self._newest = max(self._newest, moment)

    def _prune(self) -> None:
        """Forget what is older than ``keep`` (measured from the newest record seen), then cap the incidents."""
        horizon = self._newest - self.keep
        old = [i for i, rec in self._incidents.items() if rec.active_at < horizon]
        if len(self._incidents) - len(old) > self.max_incidents:
            alive = sorted((rec.active_at, i) for i, rec in self._incidents.items() if rec.active_at >= horizon)
            old += [i for _, i in alive[: len(alive) - self.max_incidents * 9 // 10]]
        for incident_id in old:
            self._forget_incident(incident_id)
        for action_id in [a for a, states in self._actions.items() if _aware(states[-1].at) < horizon]:
            self._actions.pop(action_id, None)
            self._approvals.pop(action_id, None)
            self._audit.pop(action_id, None)
        for incident_id in [i for i, rs in self._diagnoses.items() if not rs or _aware(rs[-1].produced_at) < horizon]:
            self._diagnoses.pop(incident_id, None)
        for action_id in [a for a, ds in self._approvals.items() if not ds or _aware(ds[-1][0].decided_at) < horizon]:
            self._approvals.pop(action_id, None)
        for subject in [s for s, steps in self._audit.items() if not steps or _aware(steps[-1].at) < horizon]:
            self._audit.pop(subject, None)

    def _forget_incident(self, incident_id: str) -> None:
        rec = self._incidents.pop(incident_id, None)
        self._diagnoses.pop(incident_id, None)
        for action_id in self._actions_of.pop(incident_id, set()):
            self._actions.pop(action_id, None)
            self._approvals.pop(action_id, None)
            self._audit.pop(action_id, None)
        if rec is not None:
            for alert in rec.alerts:
                self._audit.pop(alert.last_event_id, None)

    # ------------------------------------------------------------------ reading (the routes)

    def __len__(self) -> int:
        return len(self._incidents)

    def incidents(self, tenant: str) -> list[IncidentSnapshot]:
        """Every incident of ``tenant`` the view holds (unordered; the routes filter, sort and page)."""
        with self._lock:
            return [self._snapshot(rec) for rec in self._incidents.values() if rec.latest.tenant == tenant]

    def incident(self, tenant: str, incident_id: str) -> IncidentSnapshot | None:
        """One incident, only if it belongs to ``tenant`` (another tenant's id is "unknown", never "forbidden")."""
        with self._lock:
            rec = self._incidents.get(incident_id)
            if rec is None or rec.latest.tenant != tenant:
                return None
            return self._snapshot(rec)

    def latest_actions(self, tenant: str) -> list[ActionEvent]:
        """The latest state of each action of ``tenant``."""
        with self._lock:
            return [self._latest(states) for states in self._actions.values() if states[0].tenant == tenant]

    def awaiting_by_tenant(self) -> dict[str, int]:
        """Actions whose latest state is awaiting_approval, per tenant (0 for tenants with none waiting)."""
        with self._lock:
            counts: dict[str, int] = {}
            for states in self._actions.values():
                latest = self._latest(states)
                counts[latest.tenant] = counts.get(latest.tenant, 0) + (
                    latest.state is ActionState.AWAITING_APPROVAL)
            return counts

    @staticmethod
    def _latest(states: list[ActionEvent]) -> ActionEvent:
        """The newest state; a decided state is never undone by an older "awaiting" record read later."""
        ordered = sorted(states, key=lambda s: _aware(s.at))
        latest = ordered[-1]
        if latest.state not in _DECIDED:
            decided = [s for s in ordered if s.state in _DECIDED]
            if decided:
                return decided[-1]
        return latest

    def _snapshot(self, rec: IncidentRecords) -> IncidentSnapshot:
        incident = rec.latest
        actions = tuple(tuple(sorted(self._actions[a], key=lambda s: _aware(s.at)))
                        for a in sorted(self._actions_of.get(incident.incident_id, ())) if a in self._actions)
        action_ids = [states[0].action_id for states in actions]
        approvals = tuple(d for a in action_ids for d in self._approvals.get(a, ()))
        subjects: Iterable[str] = [*action_ids, *(a.last_event_id for a in rec.alerts), incident.event.event_id]
        audit = {(s.tenant, s.seq): s for subject in dict.fromkeys(subjects) for s in self._audit.get(subject, ())
                 if s.tenant == incident.tenant}
        return IncidentSnapshot(
            incident=incident, alerts=tuple(rec.alerts),
            diagnoses=tuple(self._diagnoses.get(incident.incident_id, ())),
            actions=actions,
            approvals=tuple(sorted((d for d in approvals if d[0].tenant == incident.tenant),
                                   key=lambda d: d[0].decided_at)),
            audit=tuple(sorted(audit.values(), key=lambda s: s.seq)),
        )

    def latest_action_state(self, states: tuple[ActionEvent, ...]) -> ActionEvent:
        return self._latest(list(states))


class IncidentsFeed:
    """Keeps an :class:`IncidentsView` up to date from :data:`VIEW_TOPICS`, like ``ActionsFeed`` (both are an
    :class:`~streams.api.partition_reader.AllPartitionsReader`); a partition never read starts at the first
    record newer than the view keeps.

    A supervised loop body (:class:`streams.api.loops.Loops`): :meth:`run` raises when a topic or every
    broker is unavailable and is started again with backoff, resuming from the offsets it had read.
    """

    def __init__(self, *, bootstrap: str, codec: Codec, view: IncidentsView, topic_prefix: str = "",
                 extra: dict[str, Any] | None = None, clock: Callable[[], datetime] = lambda: datetime.now(UTC)
                 ) -> None:
        self._view = view
        self._clock = clock
        self._reader = AllPartitionsReader(
            name="incidents feed", group_label="incidents-view", bootstrap=bootstrap, codec=codec,
            topics={spec.full_name(topic_prefix): spec.value for spec in VIEW_TOPICS}, on_record=view.see,
            extra=extra, start_offsets=self._start_offsets,
            on_caught_up=lambda s: f"incidents feed caught up: {len(self._view)} incidents in {s:.1f}s")
        self.caught_up = self._reader.caught_up

    def _start_offsets(self, consumer: Consumer, partitions: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
        """Where to start a partition never read: the first record newer than the view keeps."""
        since_ms = int((self._clock() - self._view.keep).timestamp() * 1000)
        found: dict[tuple[str, int], int] = {}
        try:
            for tp in consumer.offsets_for_times([TopicPartition(t, p, since_ms) for t, p in partitions], timeout=10):
                # -1: nothing newer than the horizon in this partition (read from its end).
                found[(tp.topic, tp.partition)] = OFFSET_END if tp.offset < 0 else tp.offset
        except KafkaException as exc:
            logger.warning("incidents feed: offsets by time unavailable, reading from the beginning: %s", exc)
        return found

    async def run(self, handle: LoopHandle | None = None) -> None:
        """Follow the topics until :meth:`stop` (or the supervisor stops); closes its consumer on the way out."""
        await self._reader.run(handle)

    def stop(self) -> None:
        self._reader.stop()
