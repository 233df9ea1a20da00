"""One registrar per agent: each reads one topic, decodes at the edge, calls its stage and sends what it returns.

Agent names, the decide repartition topic's name and the timers' work are frozen
(consumer state on deployed clusters; see docs/architecture.md). Every record an
agent sends goes through ``WorkerApp.send/forward`` (awaited, retried): no
Faust-internal forward (``group_by``) is left, since Faust neither awaits nor
retries those and drops them when the broker goes away. Tables change
only inside agents, and outputs are sent before a table is updated: a crash
between the two re-delivers the input, and the deterministic ids make the
re-sent records the same records. Every agent that changes a table runs its
record's work through ``WorkerApp.acked``: the input is acked only once the
broker has the table's changelog writes too (``streams.worker.acked_table``).
Dedup, correlate and decide, the stateful agents every alert passes, work in
rounds (``streams.worker.table_rounds``): a round's outputs are acknowledged
before its rows are written, and its inputs acked after both.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager, nullcontext
from datetime import timedelta
from functools import partial
from typing import Any

import faust
from faust.types import EventT, TableT

from schemas.errors import CodecError, RcaflowError
from schemas.records import (
    ActionEvent,
    AlertEvent,
    ApprovalDecision,
    DeadLetter,
    Incident,
    RawMail,
    RcaResult,
)
from schemas.topics import ACTIONS, APPROVALS, DEAD_LETTER, INCIDENTS, NORMALIZED, RAW_MAIL, RCA_RESULT
from streams.errors import ConfigurationError
from streams.notify.notifier import Notifier, NotifyStageError, forget_stale
from streams.notify.requests import (
    PRUNE_TICK,
    PruneTick,
    decided_request,
    parse_request,
    result_request,
    shows_outcome,
)
from streams.stages import approval as approval_stage
from streams.stages import audit as audit_stage
from streams.stages import correlate as correlate_stage
from streams.stages import decide as decide_stage
from streams.stages import dedup as dedup_stage
from streams.stages import normalize as normalize_stage
from streams.stages import rca as rca_stage
from streams.stages.approval import Approval, forget_decisions, pending_change, refusal_letter, refuse_decision
from streams.stages.audit import AUDITED, Audit, Auditable, content_id, is_audited
from streams.stages.core import Out, Position, StageContext, StageResult, outputs
from streams.stages.correlate import Correlate
from streams.stages.decide import UNKNOWN_GROUP, Decide, group_key
from streams.stages.dedup import Dedup
from streams.stages.normalize import Normalize
from streams.stages.rca import Rca
from streams.stages.second_opinion import SecondOpinion
from streams.stages.table_pruning import (
    Retention,
    forget_cooldowns,
    forget_dedup,
    forget_groups,
    longest_cooldown,
    longest_dedup_window,
)
from streams.worker.app import WorkerApp, partition_of
from streams.worker.audit_rounds import AuditInput, AuditRounds, is_batched
from streams.worker.edge import events, header, key_text, timed, values, where
from streams.worker.failures import is_transient
from streams.worker.guard import Guard
from streams.worker.prune_ticks import add_sweep, sweep_tables
from streams.worker.table_rounds import Rows, TableRounds, Work

logger = logging.getLogger(__name__)


#: A rate-limited chat robot must not hold up the notifications behind it forever.
NOTIFY_TIMEOUT_S = 10.0
#: The agent (and guard stage) that re-keys rca-result for the decide agent.
DECIDE_ROUTE = "decide-route"
#: The header that names the record type of an audit-input record.
RECORD_HEADER = "rcaflow-record"


class NotifyRequests:
    """How agents ask the notify agent for a message: through its input topic, keyed by incident."""

    def __init__(self, worker: WorkerApp, *, enabled: bool) -> None:
        self._worker = worker
        self._enabled = enabled

    async def send(self, tenant: str, incident_id: str, request: bytes) -> None:
        if self._enabled:
            await self._worker.forward(self._worker.notify_input, Notifier.key(tenant, incident_id).encode("utf-8"),
                                       request)


def retention(worker: WorkerApp) -> Retention:
    """How long the dedup, correlate and decide tables keep rows past their policy times (worker settings)."""
    settings = worker.settings.worker
    return Retention(margin=timedelta(seconds=settings.prune_margin_s),
                     open_keep=timedelta(hours=settings.open_incident_keep_hours))


def register_normalize(worker: WorkerApp, stage: Normalize) -> None:
    context = stage.context
    guard = Guard(worker, normalize_stage.STAGE, context)

    async def handle(value: bytes, pos: Position) -> None:
        mail = await guard.decode(value, RawMail, pos)
        await worker.send(outputs(normalize_stage.STAGE, stage(mail, pos), value, pos, context))

    @worker.app.agent(worker.topic(RAW_MAIL.name), name="normalize")
    async def normalize(stream: faust.StreamT[bytes]) -> None:
        async for value, pos in values(stream):
            with timed(context, normalize_stage.STAGE):
                await guard.run(value, pos, partial(handle, value, pos))


def register_dedup(worker: WorkerApp, stage: Dedup) -> None:
    context, table = stage.context, worker.tables.dedup_state
    guard = Guard(worker, dedup_stage.STAGE, context)
    # Rows past every window (plus margin) are deleted on the prune ticks; resolved or long-quiet ones only.
    add_sweep(worker, "dedup-state", lambda owned, now: forget_dedup(
        table, now=now, window=longest_dedup_window([stage.policies]), retention=retention(worker), owned=owned))

    async def handle(value: bytes, pos: Position, rows: Rows) -> None:
        key = key_text(pos)
        event = await guard.decode(value, AlertEvent, pos)
        result = stage(event, rows.get(key))
        # Output first: a crash between the two re-delivers the event, and the
        # deterministic incident id makes the re-sent incident the same incident.
        # Incident records go to the correlate agent (re-keyed by tenant:cluster), which puts them on incidents.
        outs = outputs(dedup_stage.STAGE, result, value, pos, context)
        await worker.send([o for o in outs if o.spec is not INCIDENTS])
        name = worker.correlate_input.get_topic_name()
        for out in outs:
            if out.spec is INCIDENTS and isinstance(out.record, Incident):
                await worker.forward(worker.correlate_input, correlate.route_key(out.record).encode("utf-8"),
                                     await worker.encode(out.record, topic=name))
        if result.outcome == dedup_stage.RESOLVED:
            await withdraw_waiting(result)
        if result.state is not None:
            rows[key] = result.state

    async def withdraw_waiting(result: StageResult) -> None:
        # The awaiting rows are keyed tenant:action-id, elsewhere than this tenant:fingerprint partition:
        # one record per action key takes the resolved incident there (the "withdraw" agent).
        incident = next(o.record for o in result.outputs if isinstance(o.record, Incident))
        name = worker.withdraw_input.get_topic_name()
        for action_key in stage.withdrawals(incident):
            await worker.forward(worker.withdraw_input, action_key.encode("utf-8"),
                                 await worker.encode(incident, topic=name))

    loop = stateful_loop(worker, guard, table, handle, timed_as=dedup_stage.STAGE)

    @worker.app.agent(worker.topic(NORMALIZED.name), name="dedup")
    async def dedup(stream: faust.StreamT[bytes]) -> None:
        await loop(stream)

    correlate = Correlate(stage.policies, context=context)
    register_correlate(worker, correlate)


def register_correlate(worker: WorkerApp, stage: Correlate) -> None:
    """Dedup's incident records, keyed tenant:cluster, get their group and go on to incidents (one out per in)."""
    context, groups = stage.context, worker.tables.groups
    guard = Guard(worker, correlate_stage.STAGE, context)
    add_sweep(worker, "incident-groups", lambda owned, now: forget_groups(
        groups, now=now, margin=retention(worker).margin, owned=owned))

    async def handle(value: bytes, pos: Position, rows: Rows) -> None:
        key = key_text(pos)
        incident = await guard.decode(value, Incident, pos)
        result = stage(incident, rows.get(key))
        await worker.send(result.outputs)  # first: a crash re-delivers the record and it finds the same group
        if result.state is not None:
            rows[key] = result.state

    loop = stateful_loop(worker, guard, groups, handle, timed_as=correlate_stage.STAGE)

    @worker.app.agent(worker.correlate_input, name=correlate_stage.STAGE)
    async def correlate_agent(stream: faust.StreamT[bytes]) -> None:
        await loop(stream)


def register_rca(worker: WorkerApp, stage: Rca) -> None:
    context = stage.context
    guard = Guard(worker, rca_stage.STAGE, context)

    async def handle(value: bytes, pos: Position) -> None:
        incident = await guard.decode(value, Incident, pos)
        await worker.send((await stage(incident)).outputs)

    @worker.app.agent(worker.topic(INCIDENTS.name), name="rca")
    async def rca(stream: faust.StreamT[bytes]) -> None:
        async for value, pos in values(stream):
            with timed(context, rca_stage.STAGE):
                await guard.run(value, pos, partial(handle, value, pos))


def register_second_opinion(worker: WorkerApp, stage: SecondOpinion, *, concurrency: int) -> None:
    guard = Guard(worker, "llm", stage.context)

    async def handle(value: bytes, pos: Position) -> None:
        try:
            triaged = await guard.decode(value, RcaResult, pos)
        except CodecError:
            return  # the decide agent dead-letters it once
        # A model that is down or rate-limited raises a TransientError here: waited out, not skipped.
        await worker.send((await stage(triaged)).outputs)

    @worker.app.agent(worker.topic(RCA_RESULT.name), name="llm", concurrency=concurrency)
    async def second_opinion(stream: faust.StreamT[bytes]) -> None:
        # Slow and optional: its own agent, so the triage path never waits for the model.
        async for value, pos in values(stream):
            with timed(stage.context, "llm"):
                await guard.run(value, pos, partial(handle, value, pos))


def require_signing(keys: object, agent: str) -> None:
    """An agent that approves actions must sign them: unsigned approvals would only pile up as refusals."""
    if keys is None:
        raise ConfigurationError(f"security.decision_key is not set: the worker's {agent} agent signs the actions "
                                 "it approves; set RCAFLOW_SECURITY__DECISION_KEY (at least 32 bytes, the same as "
                                 "the executor's) or the secret file security/decision_key")


def register_decide(worker: WorkerApp, stage: Decide, notify: NotifyRequests) -> None:
    """The decide-route agent re-keys rca-result by tenant:fingerprint; the decide agent decides from there."""
    require_signing(stage.keys, "decide")
    context, cooldowns = stage.context, worker.tables.cooldowns
    route_guard = Guard(worker, DECIDE_ROUTE, context)
    cooldown = longest_cooldown([stage.policies, *stage.tenant_policies.values()])
    add_sweep(worker, "action-cooldowns", lambda owned, now: forget_cooldowns(
        cooldowns, now=now, cooldown=cooldown, margin=retention(worker).margin, owned=owned))

    async def route(value: bytes, pos: Position) -> None:
        # Our own repartition, where Faust's group_by was: its forward was neither awaited nor retried, so one
        # failed when the broker went away was dropped while its rca-result was acked (never decided).
        try:
            key = group_key(await route_guard.decode(value, RcaResult, pos))
        except CodecError:
            key = UNKNOWN_GROUP  # the decide agent dead-letters it, once
        await worker.forward(worker.decide_input, key.encode("utf-8"), value)

    @worker.app.agent(worker.topic(RCA_RESULT.name), name=DECIDE_ROUTE)
    async def decide_route(stream: faust.StreamT[bytes]) -> None:
        async for value, pos in values(stream):
            await route_guard.run(value, pos, partial(route, value, pos))

    guard = Guard(worker, decide_stage.STAGE, context)

    async def handle(value: bytes, pos: Position, rows: Rows) -> None:
        result = await guard.decode(value, RcaResult, pos)
        key = group_key(result)
        with timed(context, decide_stage.STAGE):
            decided = stage(result, rows.get(key))
            await worker.send(decided.outputs)
            if decided.state is not None:
                rows[key] = decided.state
        actions = [o.record for o in decided.outputs if isinstance(o.record, ActionEvent)]
        # Keyed by the incident's group: one row, so one message, per group (docs/correlation.md).
        await notify.send(result.tenant, result.incident.group_id or result.incident_id,
                          result_request(result, actions))

    loop = stateful_loop(worker, guard, cooldowns, handle, timed_as=None)

    @worker.app.agent(worker.decide_input, name="decide")
    async def decide(stream: faust.StreamT[bytes]) -> None:
        # Keyed by fingerprint (decide-route) so the cooldown memory of one target lives in one partition.
        await loop(stream)


def stateful_loop(worker: WorkerApp, guard: Guard, table: TableT[str, Any], work: Work, *,
                  timed_as: str | None) -> Callable[[faust.StreamT[bytes]], Awaitable[None]]:
    """A stateful agent's loop: its inputs in rounds on Kafka (streams/worker/table_rounds.py), else one at a time.

    ``timed_as`` times each input's work as that stage on the metrics (None: ``work`` times itself).
    """
    context = guard.context

    def timing() -> AbstractContextManager[None]:
        return timed(context, timed_as) if timed_as is not None else nullcontext()

    rounds = TableRounds(worker, guard, table, work, timed=timing) if is_batched(worker) else None

    async def loop(stream: faust.StreamT[bytes]) -> None:
        async for event in events(stream):
            if rounds is not None:
                await rounds.take(event)  # worked on, sent, stored and acked in the next round
                continue
            value, pos = (event.value if isinstance(event.value, bytes) else b""), where(event)
            with timing():
                await guard.run(value, pos, worker.acked(partial(work, value, pos, table)))

    return loop


def register_approvals(worker: WorkerApp, stage: Approval, notify: NotifyRequests) -> None:
    """The pending agent keeps the awaiting table; the approvals agent applies decisions; a timer expires."""
    require_signing(stage.keys, "approvals")
    context, awaiting, decided = stage.context, worker.tables.awaiting, worker.tables.decided
    pending_guard = Guard(worker, "pending", context)
    guard = Guard(worker, approval_stage.STAGE, context)

    async def keep_pending(value: bytes, pos: Position) -> None:
        try:
            action = await pending_guard.decode(value, ActionEvent, pos)
        except CodecError:
            return  # the audit agent reports undecodable actions
        change = pending_change(action)
        if change is not None:
            await apply_pending(action, change, key_text(pos))

    async def apply_pending(action: ActionEvent, change: approval_stage.PendingChange, key: str) -> None:
        if change[0] == "set":
            if key not in decided:  # a late re-read of the waiting record must not reopen a decision
                awaiting[key] = change[1]
        elif key in awaiting:
            del awaiting[key]
            # Decided elsewhere (the expiry timer): remember it and show it, as the approvals agent does.
            if key not in decided:
                decided[key] = approval_stage.remember_decision(action)
            await notify.send(action.tenant, action.incident_id, decided_request(action))

    @worker.app.agent(worker.topic(ACTIONS.name), name="pending")
    async def pending(stream: faust.StreamT[bytes]) -> None:
        async for value, pos in values(stream):
            await pending_guard.run(value, pos, worker.acked(partial(keep_pending, value, pos)))

    async def apply_decision(value: bytes, pos: Position) -> None:
        key = key_text(pos)
        decision = await guard.decode(value, ApprovalDecision, pos)
        # Once decided, never decided again: the stage sees nothing waiting and the refusal says why.
        result = stage(decision, None if key in decided else awaiting.get(key))
        await worker.send(outputs(approval_stage.STAGE, result, value, pos, context))
        if result.outcome in approval_stage.DECIDED_OUTCOMES:
            action = next(o.record for o in result.outputs if isinstance(o.record, ActionEvent))
            # Decided now: a second decision (a double click, another API replica) arriving before
            # the pending agent sees the new state finds nothing to decide, and is told who did.
            decided[key] = approval_stage.remember_decision(action, decision)
            if key in awaiting:
                del awaiting[key]
            await notify.send(action.tenant, action.incident_id, decided_request(action))
        elif result.refused is None:
            rejection = refuse_decision(decision, result.outcome, decided.get(key), context.now())
            logger.warning("approval refused: %s", rejection.message,
                           extra={"tenant": decision.tenant, "action_id": decision.action_id})
            letter = refusal_letter(rejection, source_topic=pos.topic)
            await worker.send([Out(DEAD_LETTER, pos.topic, letter)])

    @worker.app.agent(worker.topic(APPROVALS.name), name="approvals")
    async def decide_approvals(stream: faust.StreamT[bytes]) -> None:
        async for value, pos in values(stream):
            with timed(context, approval_stage.STAGE):
                await guard.run(value, pos, worker.acked(partial(apply_decision, value, pos)))

    withdraw_guard = Guard(worker, "withdraw", context)

    async def apply_withdrawal(value: bytes, pos: Position) -> None:
        key = key_text(pos)
        incident = await withdraw_guard.decode(value, Incident, pos)
        result = stage.withdrawn(incident, None if key in decided else awaiting.get(key))
        await worker.send(outputs("withdraw", result, value, pos, context))
        if result.outcome == approval_stage.WITHDRAWN:
            action = next(o.record for o in result.outputs if isinstance(o.record, ActionEvent))
            # Like a decision: an approval arriving before the pending agent sees "withdrawn" is refused.
            decided[key] = approval_stage.remember_decision(action)
            if key in awaiting:
                del awaiting[key]
            await notify.send(action.tenant, action.incident_id, decided_request(action))

    @worker.app.agent(worker.withdraw_input, name="withdraw")
    async def withdraw_resolved(stream: faust.StreamT[bytes]) -> None:
        # Resolved incidents, one record per action key: what still waits for approval is withdrawn.
        async for value, pos in values(stream):
            await withdraw_guard.run(value, pos, worker.acked(partial(apply_withdrawal, value, pos)))

    expiring: set[str] = set()

    @worker.app.timer(interval=worker.settings.worker.expiry_check_seconds)  # type: ignore[untyped-decorator]
    async def expire_approvals() -> None:
        # Sends "expired"; the pending agent then drops the entry (tables change only inside agents).
        expiring.intersection_update(awaiting.keys())  # entries the pending agent dropped: forgotten here too
        due = [v for k, v in list(awaiting.items()) if v and k not in expiring and k not in decided]
        for out in stage.expired(due):
            try:
                await worker.send([out])
            except RcaflowError as exc:  # a timer must not die: what was not sent is tried again next tick
                logger.warning("approvals: expiry of %s not sent (%s: %s); next tick retries", out.key,
                               type(exc).__name__, exc, exc_info=not is_transient(exc))
                continue
            expiring.add(out.key)


def register_notify(worker: WorkerApp, notifier: Notifier | None, notify: NotifyRequests,
                    context: StageContext) -> None:
    """The notify agent posts and edits the incidents' messages; a timer makes it forget old rows."""
    notified, decided, partitions = worker.tables.notified, worker.tables.decided, worker.partitions
    keep = timedelta(hours=worker.settings.notify.keep_hours)

    guard = Guard(worker, "notify", context)
    outcomes_guard = Guard(worker, "notify-outcomes", context)

    async def handle(value: bytes, pos: Position) -> None:
        # Not one of ours (NotifyRequestError): the guard keeps it in dead-letter with the reason.
        request = parse_request(value)
        if isinstance(request, PruneTick):
            # Tables change through the partition that owns the key: forget only this partition's rows.
            def owned(key: str, partition: int | None = pos.partition) -> bool:
                return partition_of(key, partitions) == partition

            now = context.now()
            gone = len(forget_stale(notified, now=now, keep=keep, owned=owned))
            gone += len(forget_decisions(decided, now=now, keep=keep, owned=owned))
            sweep_tables(worker, owned, now)  # dedup-state, incident-groups, action-cooldowns
            if gone:
                logger.info("forgot %d notified incidents / decisions older than %s", gone, keep)
            return
        if notifier is None:
            return
        try:
            async with asyncio.timeout(NOTIFY_TIMEOUT_S):
                if isinstance(request, ActionEvent):
                    await notifier.decided(request)
                else:
                    await notifier.handle(*request)
        except (NotifyStageError, TimeoutError) as exc:
            # Chat is best effort and must not hold up the messages behind it; counted and logged.
            context.count("notify", type(exc).__name__)
            logger.warning("notification for %s not sent: %s", key_text(pos), exc)

    @worker.app.agent(worker.notify_input, name="notify")
    async def notify_agent(stream: faust.StreamT[bytes]) -> None:
        async for value, pos in values(stream):
            await guard.run(value, pos, worker.acked(partial(handle, value, pos)))

    async def show_outcome(value: bytes, pos: Position) -> None:
        try:
            action = await outcomes_guard.decode(value, ActionEvent, pos)
        except CodecError:
            return  # the audit agent reports undecodable actions
        if shows_outcome(action):
            await notify.send(action.tenant, action.incident_id, decided_request(action))

    @worker.app.agent(worker.topic(ACTIONS.name), name="notify-outcomes")
    async def notify_outcomes(stream: faust.StreamT[bytes]) -> None:
        # How it ended (a rollback included) shows on the incident's message, so the loop is visible in chat.
        async for value, pos in values(stream):
            await outcomes_guard.run(value, pos, partial(show_outcome, value, pos))

    @worker.app.timer(interval=worker.settings.notify.prune_interval_s, on_leader=True)  # type: ignore[untyped-decorator]
    async def prune_tick() -> None:
        # Timers cannot change tables; one tick per partition lets the owner of each partition prune it.
        for partition in range(partitions):
            try:
                await worker.forward(worker.notify_input, b"prune", PRUNE_TICK, partition=partition)
            except RcaflowError as exc:  # a timer must not die; the next tick prunes what this one could not
                logger.warning("notify: prune tick for partition %d not sent: %s", partition, exc)


def register_audit(worker: WorkerApp, stage: Audit) -> None:
    """Three agents route what is audited into the audit-input topic, keyed by tenant; one agent chains it."""
    context, heads = stage.context, worker.tables.audit_head

    def router(spec_name: str, agent_name: str, record_type: type[Auditable]) -> None:
        guard = Guard(worker, agent_name, context)

        async def route_one(value: bytes, pos: Position) -> None:
            try:
                record = await guard.decode(value, record_type, pos)
            except CodecError:
                return  # the topic's own stage agent dead-letters what it cannot read
            if is_audited(record):
                await worker.forward(worker.audit_input, record.tenant.encode("utf-8"), value,
                                     headers=[(RECORD_HEADER, record_type.__name__.encode())])

        @worker.app.agent(worker.topic(spec_name), name=agent_name)
        async def route(stream: faust.StreamT[bytes]) -> None:
            async for value, pos in values(stream):
                await guard.run(value, pos, partial(route_one, value, pos))

    router(NORMALIZED.name, "audit-ingest", AlertEvent)  # every alert that came in, duplicates included
    router(ACTIONS.name, "audit-actions", ActionEvent)
    router(DEAD_LETTER.name, "audit-refusals", DeadLetter)  # only refused approvals are audited
    guard = Guard(worker, audit_stage.STAGE, context)

    async def chain_one(item: AuditInput) -> None:
        # One input at a time (a test's own delivery, or a round that cannot go as a batch): record, then head.
        if item.record is None:
            return
        result = stage(item.record, heads.get(item.tenant), content_id(item.value))
        await worker.send(result.outputs)
        if result.state is not None:
            heads[item.tenant] = result.state

    rounds = AuditRounds(worker, stage, guard, heads, chain_one) if is_batched(worker) else None

    async def take(event: EventT[bytes]) -> None:
        pos = where(event)
        value = event.value if isinstance(event.value, bytes) else b""
        item = AuditInput(event, value, pos, key_text(pos), None)
        if rounds is None:
            await guard.run(value, pos, worker.acked(partial(take_one, item)))
            return
        await rounds.room()
        try:
            # Only the worker routes into audit-input, so a record that is none of the audited types is a bug
            # upstream: it is kept in dead-letter (stage audit) instead of skipped.
            item.record = await _audited_record(guard, event, value)
        except Exception as exc:  # the agent boundary, as in Guard.run: kept, never lost
            if not isinstance(exc, RcaflowError):
                logger.exception("audit: unexpected error on %s[%s]@%s", pos.topic, pos.partition, pos.offset)
            await guard.keep(value, pos, exc, tenant=item.tenant)
        rounds.push(item)  # chained, sent and acked in the next round (streams/worker/audit_rounds.py)

    async def take_one(item: AuditInput) -> None:
        item.record = await _audited_record(guard, item.event, item.value)
        await chain_one(item)

    @worker.app.agent(worker.audit_input, name="audit")
    async def auditor(stream: faust.StreamT[bytes]) -> None:
        async for event in events(stream):
            with timed(context, audit_stage.STAGE):
                await take(event)


async def _audited_record(guard: Guard, event: EventT[bytes], value: bytes) -> Auditable:
    """The record the header names; records routed before headers existed are tried as each audited type."""
    pos = where(event)
    named = AUDITED.get(header(event, RECORD_HEADER) or "")
    failures: list[str] = []
    for record_type in [named] if named is not None else AUDITED.values():
        try:
            return await guard.decode(value, record_type, pos)
        except CodecError as exc:
            failures.append(f"{record_type.__name__}: {exc}")
    raise CodecError("not an auditable record: " + "; ".join(failures))
