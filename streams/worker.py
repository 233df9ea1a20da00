"""The Faust app: thin agents that move bytes between topics and call ``Pipeline``.

Each agent reads one topic, hands the record to the pipeline, and sends what
it returns. State (dedup windows, the audit chain head) lives in Faust tables
backed by changelog topics, so a restarted worker resumes where it was.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import faust
from aiokafka.partitioner import DefaultPartitioner
from faust.types import EventT

from schemas.records import ActionEvent, ApprovalDecision, RcaResult
from schemas.topics import (
    ACTIONS,
    APPROVALS,
    AUDIT,
    DEAD_LETTER,
    INCIDENTS,
    NORMALIZED,
    RAW_MAIL,
    RCA_RESULT,
    TopicSpec,
)
from streams.approvals import (
    DECIDED_OUTCOMES,
    forget_decisions,
    refusal_letter,
    refuse_decision,
    remember_decision,
)
from streams.notify_stage import (
    PRUNE_TICK,
    Notifier,
    NotifyRequestError,
    NotifyStageError,
    PruneTick,
    decided_request,
    forget_stale,
    parse_request,
    result_request,
)
from streams.pipeline import Out, Pipeline, Position
from streams.rca_wiring import build_notifier
from streams.settings import Settings

logger = logging.getLogger(__name__)

NOTIFY_TIMEOUT_S = 10.0


_PARTITIONER = DefaultPartitioner()


def partition_of(key: str, partitions: int) -> int:
    """The partition a record keyed ``key`` goes to (the producers' murmur2), so the table row's owner."""
    every = list(range(partitions))
    return int(_PARTITIONER(key.encode("utf-8"), every, every))


def faust_broker_urls(bootstrap: str) -> list[str]:
    return [f"kafka://{host.strip()}" for host in bootstrap.split(",") if host.strip()]


def build_app(settings: Settings, bootstrap: str, pipeline: Pipeline) -> faust.App:
    """A Faust app wired to ``pipeline``; ``app.main()`` or a ``faust.Worker`` runs it."""
    prefix = settings.kafka.topic_prefix
    partitions = settings.worker.partitions
    fast: dict[str, Any] = {}
    if settings.kafka.fast_rebalance:
        fast = {
            "broker_session_timeout": 2.0,
            "broker_heartbeat_interval": 0.5,
            "broker_rebalance_timeout": 2.0,
            "broker_commit_interval": 0.5,
        }
    if settings.kafka.single_record_batches:
        fast["producer_max_batch_size"] = 1  # aiokafka still takes one record per batch
    app = faust.App(
        f"{prefix}{settings.worker.app_id}",
        broker=faust_broker_urls(bootstrap),
        store=settings.worker.store,
        datadir=str(settings.worker.data_dir),
        key_serializer="raw",
        value_serializer="raw",
        topic_partitions=partitions,
        topic_allow_declare=True,
        web_enabled=False,
        producer_linger_ms=5,
        # A dead-lettered mail carries the whole mail (raw-mail allows 11 MiB records).
        producer_max_request_size=12 * 1024 * 1024,
        consumer_auto_offset_reset="earliest",
        table_cleanup_interval=60.0,
        **fast,
    )

    def topic(spec: TopicSpec) -> faust.TopicT:
        return app.topic(
            spec.full_name(prefix),
            key_type=bytes,
            value_type=bytes,
            partitions=spec.partitions,
            internal=False,
        )

    raw_mail, normalized, incidents = topic(RAW_MAIL), topic(NORMALIZED), topic(INCIDENTS)
    rca_result, actions, audit = topic(RCA_RESULT), topic(ACTIONS), topic(AUDIT)
    approvals = topic(APPROVALS)
    topics = {
        spec.name: t
        for spec, t in (
            (RAW_MAIL, raw_mail),
            (NORMALIZED, normalized),
            (INCIDENTS, incidents),
            (RCA_RESULT, rca_result),
            (ACTIONS, actions),
            (AUDIT, audit),
            (APPROVALS, approvals),
            (DEAD_LETTER, topic(DEAD_LETTER)),
        )
    }
    # Table changelogs use the app's table serializers (json), not the raw topic serializers.
    dedup_state = app.Table("dedup-state", default=None, partitions=partitions)
    audit_head = app.Table("audit-head", default=None, partitions=partitions)
    # Keyed tenant:action-id like actions and approvals, so all three meet in one partition.
    awaiting = app.Table("awaiting-approval", default=None, partitions=partitions)
    # When each action last went ahead per tenant:fingerprint, for the policy's cooldowns.
    cooldowns = app.Table("action-cooldowns", default=None, partitions=partitions)

    async def send_all(outs: list[Out]) -> None:
        for out in outs:
            target = topics[out.spec.name]
            value = pipeline.codec.encode(out.record, topic=target.get_topic_name())
            # force: send now rather than at commit time; Faust still flushes the producer before it
            # commits the input offset, so a crash re-delivers input rather than losing output.
            await target.send(key=out.key.encode("utf-8"), value=value, force=True)

    def where(event: EventT[bytes]) -> Position:
        msg = event.message
        key = msg.key if isinstance(msg.key, bytes) else None
        return Position(msg.topic, msg.partition, msg.offset, key)

    async def values(stream: faust.StreamT[bytes]) -> AsyncIterator[tuple[bytes, Position]]:
        async for event in stream.events():
            value = event.value if isinstance(event.value, bytes) else b""
            yield value, where(event)

    @app.agent(raw_mail, name="normalize")
    async def normalize(stream: faust.StreamT[bytes]) -> None:
        async for value, pos in values(stream):
            with pipeline_timer(pipeline, "normalize"):
                await send_all(pipeline.normalize(value, pos).outputs)

    @app.agent(normalized, name="dedup")
    async def dedup(stream: faust.StreamT[bytes]) -> None:
        async for value, pos in values(stream):
            key = (pos.key or b"").decode("utf-8", "replace")
            with pipeline_timer(pipeline, "dedup"):
                result, new_state = pipeline.dedup(value, dedup_state.get(key), pos)
                # Output first: a crash between the two re-delivers the event, and the
                # deterministic incident id makes the re-sent incident the same incident.
                await send_all(result.outputs)
                if new_state is not None:
                    dedup_state[key] = new_state

    @app.agent(incidents, name="rca")
    async def rca(stream: faust.StreamT[bytes]) -> None:
        async for value, pos in values(stream):
            with pipeline_timer(pipeline, "rca"):
                await send_all((await pipeline.rca(value, pos)).outputs)

    # Message references per tenant:incident, so the LLM's answer and the approvals update the first message.
    # Written only by the notify agent, whose input is keyed tenant:incident, so one partition owns a row.
    notified = app.Table("notified", default=None, partitions=partitions)
    # The first decision per tenant:action-id, so a second one (another API replica, a replay) is refused
    # with who decided what and when.
    decided = app.Table("approval-decisions", default=None, partitions=partitions)
    notifier = build_notifier(settings, notified)
    notify_input = app.topic(f"{prefix}{settings.worker.app_id}-notify-input", key_type=bytes, value_type=bytes,
                             partitions=partitions, internal=True)
    keep = timedelta(hours=settings.notify.keep_hours)

    async def to_notifier(tenant: str, incident_id: str, request: bytes) -> None:
        if notifier is not None:
            await notify_input.send(key=Notifier.key(tenant, incident_id).encode("utf-8"), value=request,
                                    force=True)

    @app.agent(notify_input, name="notify")
    async def notify(stream: faust.StreamT[bytes]) -> None:
        async for value, pos in values(stream):
            try:
                request = parse_request(value)
            except NotifyRequestError as exc:
                logger.warning("notify: skipping %s[%s]@%s: %s", pos.topic, pos.partition, pos.offset, exc)
                continue
            if isinstance(request, PruneTick):
                # Tables change through the partition that owns the key: forget only this partition's rows.
                def owned(key: str, partition: int | None = pos.partition) -> bool:
                    return partition_of(key, partitions) == partition

                now = pipeline.clock()
                gone = len(forget_stale(notified, now=now, keep=keep, owned=owned))
                gone += len(forget_decisions(decided, now=now, keep=keep, owned=owned))
                if gone:
                    logger.info("forgot %d notified incidents / decisions older than %s", gone, keep)
                continue
            if notifier is None:
                continue
            try:
                # Bounded: a rate-limited chat robot must not hold up the notifications behind it forever.
                async with asyncio.timeout(NOTIFY_TIMEOUT_S):
                    if isinstance(request, ActionEvent):
                        await notifier.decided(request)
                    else:
                        await notifier.handle(*request)
            except (NotifyStageError, TimeoutError) as exc:
                pipeline.count("notify", type(exc).__name__)
                logger.warning("notification for %s not sent: %s", (pos.key or b"").decode("utf-8", "replace"),
                               exc)

    @app.timer(interval=settings.notify.prune_interval_s, on_leader=True)  # type: ignore[untyped-decorator]
    async def prune_tick() -> None:
        # Timers cannot change tables; one tick per partition lets the owner of each partition prune it.
        for partition in range(partitions):
            await notify_input.send(key=b"prune", value=PRUNE_TICK, partition=partition, force=True)

    def fingerprint_of(value: bytes) -> bytes:
        return pipeline.fingerprint_of_result(value).encode("utf-8")

    @app.agent(rca_result, name="decide")
    async def decide(stream: faust.StreamT[bytes]) -> None:
        # Grouped by fingerprint so the cooldown memory of one target lives in one partition.
        async for event in stream.group_by(fingerprint_of, name="fingerprint").events():
            pos = where(event)
            value = event.value if isinstance(event.value, bytes) else b""
            key = pipeline.fingerprint_of_result(value)
            with pipeline_timer(pipeline, "decide"):
                result = pipeline.decide(value, pos, cooldowns.get(key))
                await send_all(result.outputs)
                if result.state is not None:
                    cooldowns[key] = result.state
            if isinstance(result.subject, RcaResult):
                subject = result.subject
                await to_notifier(subject.tenant, subject.incident_id, result_request(
                    subject, [o.record for o in result.outputs if isinstance(o.record, ActionEvent)]))

    if pipeline.llm is not None:

        @app.agent(rca_result, name="llm", concurrency=settings.llm.concurrency)
        async def second_opinion(stream: faust.StreamT[bytes]) -> None:
            # Slow and optional: its own agent, so the triage path never waits for the model.
            async for value, pos in values(stream):
                with pipeline_timer(pipeline, "llm"):
                    await send_all((await pipeline.second_opinion(value, pos)).outputs)

    @app.agent(actions, name="pending")
    async def pending(stream: faust.StreamT[bytes]) -> None:
        async for value, pos in values(stream):
            change = pipeline.pending_change(value, pos)
            key = (pos.key or b"").decode("utf-8", "replace")
            if change is None:
                continue
            if change[0] == "set":
                if key not in decided:  # a late re-read of the waiting record must not reopen a decision
                    awaiting[key] = change[1]
            elif key in awaiting:
                del awaiting[key]
                # Decided elsewhere (the expiry timer): remember it and show it, as the approvals agent does.
                action = pipeline.codec.decode(value, ActionEvent, topic=pos.topic)
                if key not in decided:
                    decided[key] = remember_decision(action)
                await to_notifier(action.tenant, action.incident_id, decided_request(action))

    @app.agent(actions, name="notify-outcomes")
    async def notify_outcomes(stream: faust.StreamT[bytes]) -> None:
        # How it ended (a rollback included) shows on the incident's message, so the loop is visible in chat.
        async for value, pos in values(stream):
            action = pipeline.outcome_to_show(value, pos)
            if action is not None:
                await to_notifier(action.tenant, action.incident_id, decided_request(action))

    @app.agent(approvals, name="approvals")
    async def decide_approvals(stream: faust.StreamT[bytes]) -> None:
        async for value, pos in values(stream):
            key = (pos.key or b"").decode("utf-8", "replace")
            with pipeline_timer(pipeline, "approval"):
                # Once decided, never decided again: the stage sees nothing waiting and the refusal says why.
                result = pipeline.approval(value, None if key in decided else awaiting.get(key), pos)
                await send_all(result.outputs)
                if result.outcome in DECIDED_OUTCOMES:
                    decision = pipeline.codec.decode(value, ApprovalDecision, topic=pos.topic)
                    action = next(o.record for o in result.outputs if isinstance(o.record, ActionEvent))
                    # Decided now: a second decision (a double click, another API replica) arriving before
                    # the pending agent sees the new state finds nothing to decide, and is told who did.
                    decided[key] = remember_decision(action, decision)
                    if key in awaiting:
                        del awaiting[key]
                    await to_notifier(action.tenant, action.incident_id, decided_request(action))
                elif result.outcome != "dead_letter":
                    decision = pipeline.codec.decode(value, ApprovalDecision, topic=pos.topic)
                    rejection = refuse_decision(decision, result.outcome, decided.get(key), pipeline.clock())
                    logger.warning("approval refused: %s", rejection.message,
                                   extra={"tenant": decision.tenant, "action_id": decision.action_id})
                    letter = refusal_letter(rejection, source_topic=pos.topic)
                    await send_all([Out(DEAD_LETTER, pos.topic, letter)])

    expiring: set[str] = set()

    @app.timer(interval=settings.worker.expiry_check_seconds)  # type: ignore[untyped-decorator]
    async def expire_approvals() -> None:
        # Sends "expired"; the pending agent then drops the entry (tables change only inside agents).
        due = [v for k, v in list(awaiting.items()) if v and k not in expiring and k not in decided]
        outs = pipeline.expired(due)
        for out in outs:
            expiring.add(out.key)
        await send_all(outs)

    # Each tenant's chain needs a single writer: both sources are routed, keyed by tenant, into one
    # internal topic, and one agent appends to the chains from there.
    audit_input = app.topic(f"{prefix}{settings.worker.app_id}-audit-input", key_type=bytes, value_type=bytes,
                            partitions=partitions, internal=True)

    async def route_to_audit(value: bytes) -> None:
        tenant = pipeline.tenant_of_action(value)
        if tenant != "unknown":
            await audit_input.send(key=tenant.encode("utf-8"), value=value, force=True)

    @app.agent(normalized, name="audit-ingest")
    async def audit_ingest(stream: faust.StreamT[bytes]) -> None:
        async for value, _pos in values(stream):
            await route_to_audit(value)  # every alert that came in, duplicates included

    @app.agent(actions, name="audit-actions")
    async def audit_actions(stream: faust.StreamT[bytes]) -> None:
        async for value, _pos in values(stream):
            await route_to_audit(value)

    @app.agent(topics[DEAD_LETTER.name], name="audit-refusals")
    async def audit_refusals(stream: faust.StreamT[bytes]) -> None:
        async for value, _pos in values(stream):
            await route_to_audit(value)  # only refused approvals are auditable; the rest is skipped

    @app.agent(audit_input, name="audit")
    async def auditor(stream: faust.StreamT[bytes]) -> None:
        async for value, pos in values(stream):
            tenant = (pos.key or b"").decode("utf-8", "replace")
            with pipeline_timer(pipeline, "audit"):
                result, new_head = pipeline.audit(value, audit_head.get(tenant), pos)
                await send_all(result.outputs)
                if new_head is not None:
                    audit_head[tenant] = new_head

    return app


class pipeline_timer:  # noqa: N801 - used like a function
    """Times a stage on the pipeline's metrics, if it has any."""

    def __init__(self, pipeline: Pipeline, stage: str) -> None:
        self._cm = pipeline.metrics.timed(stage) if pipeline.metrics else None

    def __enter__(self) -> None:
        if self._cm is not None:
            self._cm.__enter__()

    def __exit__(self, *exc: object) -> None:
        if self._cm is not None:
            self._cm.__exit__(None, None, None)
