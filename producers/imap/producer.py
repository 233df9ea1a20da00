"""The IMAP mailbox producer: every mail of one folder onto raw-mail, once, in UID order.

Order of effects per batch, which is what makes it lossless and repeat-free:
publish each RawMail and await the broker ack -> write the Checkpoint
(UIDVALIDITY, last UID) and await its ack -> only then flag \\Seen / move.
A crash before the checkpoint replays the batch; the message-id set restored
from raw-mail then skips what was already published. A broker that does not ack
(down, message timed out, no leader) holds the batch: each record is retried with
capped backoff until acked or the producer stops, never dead-lettered for it.

Under an ingest quota a mail waits in the folder (unread, the checkpoint before it) and its body is not fetched
while its tenant could not take it: a digest fetched, counted and deferred once has its count remembered
(``producers.deferred_costs``, by UIDVALIDITY and UID, in memory), and the bodies a round downloaded but could not
use (the deferred mail's and those read ahead after it) are kept for the next round (``producers.imap.body_cache``,
at most ``fetch_budget_bytes``), so a throttled tenant's mails are downloaded once, not once per round.
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, ParamSpec, TypeVar

from producers.deferred_costs import DeferredCosts
from producers.imap.backoff import backoff_delay
from producers.imap.body_cache import BodyCache
from producers.imap.config import AfterIngest, ImapConfig
from producers.imap.errors import ImapAuthError, ImapProducerError
from producers.imap.headers import MailHeaders, derived_message_id, parse_headers
from producers.imap.session import Envelope, FolderState, ImapSession
from producers.imap.state import CheckpointReader
from producers.mail.alert_count import MailCost
from producers.publisher import Publisher, PublishError
from producers.quota import Admission, IngestQuota
from producers.recent_ids import RecentIds
from schemas.limits import MAX_MAIL_BYTES
from schemas.records import Checkpoint, DeadLetter, RawMail, Record, SourceKind
from schemas.topics import DEAD_LETTER, INGEST_CHECKPOINTS, RAW_MAIL, TopicSpec

logger = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

Sleep = Callable[[float], Awaitable[None]]
Clock = Callable[[], datetime]

STAGE = "ingest.imap"
#: Raw-mail records published after a checkpoint carry later broker timestamps; this margin
#: only absorbs clock steps on the producer host.
_RESTORE_MARGIN = timedelta(minutes=5)
#: A record the broker did not take for a transient reason is sent again after 0.5 s, 1 s, 2 s … 30 s.
_PUBLISH_RETRY_FIRST_S = 0.5
_PUBLISH_RETRY_MAX_S = 30.0


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(slots=True)
class IngestStats:
    """Counters a user (or a test) can read to see what the producer did."""

    published: int = 0
    duplicates: int = 0
    filtered: int = 0
    dead_lettered: int = 0
    #: Mails left in the folder for later because the tenant was over its ingest quota.
    deferred: int = 0
    #: Mail bodies downloaded (FETCH BODY.PEEK[]); a deferred mail's body is not fetched while its tenant can take
    #: none (a digest fetched and deferred once: not its remembered count), no more bodies at once than the
    #: tenant could take, and a body downloaded by a round that stopped before it is not downloaded again.
    bodies_fetched: int = 0
    checkpoints: int = 0
    connects: int = 0
    failures: int = 0
    #: IDLE commands entered (or poll sleeps begun); grows by one per renewal while quiet.
    waits: int = 0
    #: Records sent again because the broker did not take them for a transient reason (outage, timeout).
    publish_retries: int = 0


@dataclass(slots=True)
class MailboxHealth:
    """Whether the connection is up and when the server last answered: the canary of a silently dead IDLE.

    ``last_activity`` (Unix time) moves on every server answer (login, IDLE accepted, any line during IDLE
    such as the keepalive, IDLE done, NOOP, SEARCH); a connection that died without a FIN leaves it still.
    """

    connected: bool = False
    last_activity: float | None = None


class ImapProducer:
    """Ingests one folder until :meth:`stop`; raises :class:`ImapAuthError` on refused credentials.

    Guarantees: a mail is on raw-mail (acked) before the checkpoint passes its UID;
    a message-id already published for this mailbox is never published again
    (within ``dedup_capacity``); a mail over ``max_message_bytes`` or refused by the
    broker as too large goes to dead-letter with the reason instead.
    """

    def __init__(
        self,
        config: ImapConfig,
        publisher: Publisher,
        reader: CheckpointReader,
        *,
        topic_prefix: str = "",
        sleep: Sleep = asyncio.sleep,
        clock: Clock = _utcnow,
        rand: Callable[[], float] | None = None,
        once: bool = False,
        quota: IngestQuota | None = None,
        mail_cost: Callable[[bytes], int] | None = None,
    ) -> None:
        self.config = config
        #: The tenant's ingest quota: over it, mails stay in the folder (unread, checkpoint before them).
        self._quota = quota
        #: What a mail takes from the quota: the alerts the worker will read from it (a digest costs its rows);
        #: default: counted with the bundled templates. Only called when there is a quota.
        self._mail_cost = mail_cost if mail_cost is not None else MailCost()
        #: By UIDVALIDITY and UID, the cost of each mail whose body was fetched and then deferred: its body is not
        #: fetched again until the tenant could take that many alerts (in memory, bounded).
        self._deferred_costs = DeferredCosts()
        #: Bodies downloaded by a round that a deferral stopped before them: the next round's, not downloaded again.
        self._kept_bodies = BodyCache(config.fetch_budget_bytes)
        #: Catch up with the folder and stop (``rcaflow ingest imap --once``, for cron or a first import).
        self.once = once
        self.stats = IngestStats()
        self.health = MailboxHealth()
        #: Set while the server holds our IDLE (or we sleep between polls), i.e. we are caught up.
        self.idling = asyncio.Event()
        self._publisher = publisher
        self._reader = reader
        self._prefix = topic_prefix
        self._sleep = sleep
        self._clock = clock
        self._rand = rand if rand is not None else random.Random().random
        self._stop = threading.Event()
        self._stop_async = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        # One thread owns the IMAP socket, so a cancelled wait never races the next command.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="imap")
        self._recent = RecentIds(config.dedup_capacity)
        self._restored = False
        self._progressed = False
        self._uidvalidity: int | None = None
        self._last_uid = 0
        #: monotonic time of the first transient refusal of the current broker outage; None while acks come.
        self._broker_down_since: float | None = None

    # ------------------------------------------------------------------ lifecycle

    def stop(self) -> None:
        """Ask :meth:`run` to finish; safe from any thread and from signal handlers."""
        self._stop.set()
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._stop_async.set)

    @property
    def last_uid(self) -> int:
        return self._last_uid

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        if self._stop.is_set():
            self._stop_async.set()
        mailbox = self.config.mailbox_id
        attempt = 0
        try:
            while not self._stop.is_set():
                session = ImapSession(self.config, self._stop, heartbeat=self._heard)
                delay: float | None = None
                try:
                    await self._serve(session)
                    attempt = 0
                except ImapAuthError as exc:
                    logger.error(
                        "IMAP login for %s refused: %s. Not retrying (it would only lock the account); "
                        "fix the credentials and restart.",
                        mailbox,
                        exc,
                    )
                    raise
                except (ImapProducerError, PublishError) as exc:
                    if not exc.retriable or self.once:
                        # --once never waits out an outage: the checkpoint stays, the next run resumes there.
                        logger.error("IMAP ingest for %s stopped: %s", mailbox, exc)
                        raise
                    if self._stop.is_set() and isinstance(exc, PublishError):
                        # Asked to stop while the broker was away: the checkpoint stays, the next run re-reads.
                        logger.warning("IMAP ingest for %s stopped before the broker acked (%s); the checkpoint "
                                       "stays at UID %d", mailbox, exc, self._last_uid)
                        continue
                    self.stats.failures += 1
                    # A round that caught up resets the schedule; one that failed before doesn't.
                    attempt = 0 if self._progressed else attempt
                    delay = backoff_delay(attempt, self.config.backoff, self._rand)
                    attempt += 1
                    logger.warning(
                        "IMAP ingest for %s interrupted (%s); reconnecting in %.1fs (attempt %d)",
                        mailbox,
                        exc,
                        delay,
                        attempt,
                    )
                finally:
                    self.health.connected = False
                    await self._in_thread(session.close)
                if delay is not None:
                    await self._pause(delay)
        finally:
            self._stop.set()
            self.health.connected = False
            self.idling.clear()
            self._executor.shutdown(wait=False, cancel_futures=True)

    async def _serve(self, session: ImapSession) -> None:
        """One connection's life: restore (once), select, catch up, then IDLE/poll until stop."""
        self._progressed = False
        if not self._restored:
            await self._restore()
        state = await self._in_thread(session.open)
        self.stats.connects += 1
        self.health.connected = True
        logger.info(
            "IMAP %s selected (UIDVALIDITY %d, %d messages, IDLE %s)",
            self.config.mailbox_id,
            state.uidvalidity,
            state.exists,
            "yes" if state.idle_supported else "no: polling",
        )
        await self._on_selected(session, state)
        while not self._stop.is_set():
            await self._catch_up(session)
            self._progressed = True
            if self.once:
                self._stop.set()
                return
            await self._wait(session, state)

    def _heard(self) -> None:
        """The session's heartbeat (called from the IMAP thread: one attribute write)."""
        self.health.last_activity = self._clock().timestamp()

    async def _in_thread(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, lambda: fn(*args, **kwargs))

    async def _pause(self, delay: float) -> None:
        """The injected sleep, cut short by :meth:`stop`."""
        sleeper = asyncio.ensure_future(self._sleep(delay))
        stopper = asyncio.ensure_future(self._stop_async.wait())
        try:
            await asyncio.wait({sleeper, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (sleeper, stopper):
                task.cancel()

    async def _wait(self, session: ImapSession, state: FolderState) -> None:
        loop = asyncio.get_running_loop()

        def entered() -> None:
            loop.call_soon_threadsafe(self.idling.set)

        self.stats.waits += 1
        timeout = self.config.idle_renew_seconds if state.idle_supported else self.config.poll_interval_seconds
        if not state.idle_supported:
            self.idling.set()
        try:
            await self._in_thread(session.wait_for_mail, timeout, entered)
        finally:
            self.idling.clear()

    # ------------------------------------------------------------------ position

    async def _restore(self) -> None:
        cfg = self.config
        checkpoint = await asyncio.to_thread(self._reader.load, cfg.mailbox_id)
        if checkpoint is not None and checkpoint.uidvalidity is not None:
            self._uidvalidity = checkpoint.uidvalidity
            self._last_uid = checkpoint.last_uid or 0
            since = checkpoint.updated_at - _RESTORE_MARGIN
        else:
            since = self._clock() - timedelta(seconds=cfg.dedup_lookback_seconds)
        ids = await asyncio.to_thread(self._reader.message_ids_since, cfg.tenant, cfg.mailbox_id, since)
        self._recent.update(ids)
        self._restored = True
        logger.info(
            "IMAP %s resumes after UID %d (UIDVALIDITY %s); %d message-ids published since %s remembered",
            cfg.mailbox_id,
            self._last_uid,
            self._uidvalidity,
            len(ids),
            since.isoformat(),
        )

    async def _on_selected(self, session: ImapSession, state: FolderState) -> None:
        cfg = self.config
        if self._uidvalidity is None:
            if cfg.initial_position == "new":
                self._uidvalidity = state.uidvalidity
                await self._checkpoint(await self._in_thread(session.highest_uid))
                logger.info("IMAP %s: first start, ingesting only mail after UID %d", cfg.mailbox_id, self._last_uid)
            self._uidvalidity = state.uidvalidity
            return
        if state.uidvalidity != self._uidvalidity:
            logger.warning(
                "IMAP %s: UIDVALIDITY changed %d -> %d; re-reading the whole folder, "
                "message-ids published in the last %.0fs are skipped",
                cfg.mailbox_id,
                self._uidvalidity,
                state.uidvalidity,
                cfg.dedup_lookback_seconds,
            )
            since = self._clock() - timedelta(seconds=cfg.dedup_lookback_seconds)
            ids = await asyncio.to_thread(self._reader.message_ids_since, cfg.tenant, cfg.mailbox_id, since)
            self._recent.update(ids)
            self._uidvalidity = state.uidvalidity
            self._last_uid = 0

    async def _checkpoint(self, last_uid: int) -> None:
        record = Checkpoint(
            tenant=self.config.tenant,
            mailbox=self.config.mailbox_id,
            kind=SourceKind.IMAP,
            uidvalidity=self._uidvalidity,
            last_uid=last_uid,
            updated_at=self._clock(),
        )
        await self._publish_acked(INGEST_CHECKPOINTS, self.config.mailbox_id, record)
        self._last_uid = last_uid
        self._kept_bodies.drop_through(last_uid)
        self.stats.checkpoints += 1

    # ------------------------------------------------------------------ ingest

    async def _catch_up(self, session: ImapSession) -> None:
        """Ingest everything after the checkpoint; a mail deferred by the tenant's quota ends the pass, and the
        folder is read again from the checkpoint once the quota allows (a later mail never overtakes it)."""
        while True:
            uids = await self._in_thread(session.uids_after, self._last_uid)
            batch = self.config.fetch_batch
            deferred: float | None = None
            for start in range(0, len(uids), batch):
                if self._stop.is_set():
                    return
                deferred = await self._ingest(session, uids[start : start + batch])
                if deferred is not None:
                    break
            if deferred is None or self._stop.is_set():
                return
            await self._pause(deferred)

    async def _ingest(self, session: ImapSession, uids: list[int]) -> float | None:
        """Publish a batch; the seconds to wait when the tenant's quota deferred a mail of it, else None.

        Bodies are fetched when the loop reaches them, in groups (``fetch_budget_bytes``); with a quota, only
        after asking it whether the tenant could take a mail now (a mail fetched and deferred before: its
        remembered count), and no more at once than it could take, so a throttled tenant's deferred mails are not
        downloaded (again) every round. Bodies downloaded but not reached when a mail is deferred are kept for the
        next round.
        """
        cfg = self.config
        # Never above what raw-mail holds, whatever the configuration says: a bigger mail could only fail
        # at the broker. Above it a mail is dead-lettered (headers only) and the checkpoint moves past it.
        limit = min(cfg.max_message_bytes, MAX_MAIL_BYTES)
        envelopes = await self._in_thread(session.envelopes, uids)
        headers = {uid: parse_headers(env.headers) for uid, env in envelopes.items()}
        # Mails whose body will be read: allowed, within the size limit, and not known as published by the
        # Message-ID of their headers (a mail without one needs its body for the id).
        wanted = [
            uid for uid in uids if uid in envelopes and self._allowed(headers[uid]) and envelopes[uid].size <= limit
            and not self._published(headers[uid])
        ]
        bodies: dict[int, bytes] = {}
        fetched: set[int] = set()

        steps: list[tuple[int, Coroutine[Any, Any, bool] | None]] = []
        in_batch: set[str] = set()
        deferred: float | None = None
        deferred_uid: int | None = None
        for uid in uids:
            env = envelopes.get(uid)
            if env is None:
                steps.append((uid, None))  # expunged since the search: nothing to ingest
                continue
            head = headers[uid]
            if not self._allowed(head):
                self.stats.filtered += 1
                logger.info(
                    "IMAP %s UID %d skipped: sender %r / subject not allowed for tenant %s",
                    cfg.mailbox_id,
                    uid,
                    head.sender,
                    cfg.tenant,
                )
                steps.append((uid, None))
                continue
            if uid in wanted and uid not in fetched and head.message_id not in in_batch:
                refusal = self._precheck(self._deferred_costs.cost(self._cost_key(uid)))
                if refusal is not None:
                    # The tenant cannot take even a one-alert mail, or not the alerts this mail was found to carry
                    # when it was fetched and deferred before: defer it without downloading it (again).
                    deferred, deferred_uid = self._defer(uid, refusal, fetched=False), uid
                    break
                bodies.update(await self._fetch_bodies(session, wanted[wanted.index(uid):], fetched, envelopes))
            body = bodies.get(uid)
            message_id = head.message_id or derived_message_id(body if body is not None else env.headers)
            if message_id in self._recent or message_id in in_batch:
                self.stats.duplicates += 1
                logger.info("IMAP %s UID %d: %s already published, skipped", cfg.mailbox_id, uid, message_id)
                steps.append((uid, _done()))
                continue
            in_batch.add(message_id)
            size = max(env.size, len(body)) if body is not None else env.size  # the server's SIZE may be off
            if size > limit:
                reason = (f"message {message_id} of {size} bytes exceeds max_message_bytes={limit}; not published, "
                          "it stays in the mailbox")
                steps.append((uid, self._dead_letter(uid, message_id, env, reason, "MessageTooLarge", size=size)))
            elif body is None:
                steps.append((uid, None))  # expunged between the two fetches
            else:
                admission = None
                if self._quota is not None:
                    # Parsing is CPU work: off the loop (not on the IMAP thread either, which holds the socket).
                    cost = await asyncio.to_thread(self._mail_cost, body)
                    admission = self._quota.admit(cfg.tenant, cost, source="imap")
                    if admission.admitted:
                        self._deferred_costs.forget(self._cost_key(uid))
                    else:
                        self._deferred_costs.remember(self._cost_key(uid), cost)
                if admission is not None and not admission.admitted:
                    deferred, deferred_uid = self._defer(uid, admission, fetched=True), uid
                    break
                steps.append((uid, self._publish_mail(uid, message_id, env, head, body)))
        if deferred_uid is not None:
            # The pass stops here: this mail's body and those read ahead after it wait for the next round.
            self._kept_bodies.keep(self._uidvalidity, {u: b for u, b in bodies.items() if u >= deferred_uid},
                                   after=self._last_uid)

        results = await asyncio.gather(*(c for _, c in steps if c is not None), return_exceptions=True)
        outcomes = iter(results)
        done_uid = self._last_uid
        acted: list[int] = []
        failure: BaseException | None = None
        for uid, coro in steps:
            outcome: object = True if coro is None else next(outcomes)
            if isinstance(outcome, BaseException):
                failure = outcome
                break
            done_uid = uid
            if coro is not None:
                acted.append(uid)
        if done_uid > self._last_uid:
            await self._checkpoint(done_uid)
            await self._after_ingest(session, acted)
        if failure is not None:
            raise failure
        return deferred

    def _allowed(self, head: MailHeaders) -> bool:
        cfg = self.config
        if cfg.allowed_senders:
            sender = (head.sender or "").lower()
            domain = sender[sender.rfind("@") :] if "@" in sender else None
            if sender not in cfg.allowed_senders and domain not in cfg.allowed_senders:
                return False
        if cfg.subject_keywords:
            subject = (head.subject or "").casefold()
            if not any(k.casefold() in subject for k in cfg.subject_keywords):
                return False
        return True

    def _published(self, head: MailHeaders) -> bool:
        """Known as published by the Message-ID in its headers: skipped without fetching its body."""
        return head.message_id is not None and head.message_id in self._recent

    def _precheck(self, cost: int) -> Admission | None:
        """The quota's refusal when the tenant could not take even a one-alert mail now (counted as a deferral of
        one alert), or not ``cost`` alerts, the count remembered from an earlier download of the mail (counted as
        ``cost``, as admitting the fetched mail would have); else None: then the body is worth fetching."""
        if self._quota is None:
            return None
        admission = self._quota.precheck(self.config.tenant, source="imap", count=cost)
        return None if admission.admitted else admission

    def _cost_key(self, uid: int) -> str:
        """A mail's identity in this folder before its body is read (the checkpoint's: UIDVALIDITY and UID)."""
        return f"{self._uidvalidity}:{uid}"

    async def _fetch_bodies(self, session: ImapSession, ahead: list[int], fetched: set[int],
                            envelopes: dict[int, Envelope]) -> dict[int, bytes]:
        """The next bodies, from the first of ``ahead`` (in UID order): at most ``fetch_budget_bytes`` (at least
        one mail) and, with a quota, no more mails than the tenant could take now (each costs at least one alert,
        a digest deferred before its remembered count), so bodies of mails that will have to wait are not
        downloaded. A body kept from an earlier round is not downloaded again. Adds them to ``fetched``."""
        room = self._quota.room(self.config.tenant) if self._quota is not None else None
        uids = [uid for uid in ahead if uid not in fetched]
        if room is not None:
            uids = self._within_room(uids, room)
        group = _budget_groups(uids, envelopes, self.config.fetch_budget_bytes)[0]
        fetched.update(group)
        bodies = self._kept_bodies.take(self._uidvalidity, group)
        missing = [uid for uid in group if uid not in bodies]
        if missing:
            downloaded = await self._in_thread(session.bodies, missing)
            self.stats.bodies_fetched += len(downloaded)
            bodies.update(downloaded)
        return bodies

    def _within_room(self, uids: list[int], room: int) -> list[int]:
        """The first of ``uids`` whose alerts add up to at most ``room`` (at least one mail), and past it those
        whose bodies are kept from an earlier round (no download: their admission decides, as when all were
        read ahead). A mail costs its remembered count when it was downloaded and deferred before, else the least
        a mail costs (one)."""
        taken: list[int] = []
        alerts = 0
        for uid in uids:
            alerts += self._deferred_costs.cost(self._cost_key(uid))
            if taken and alerts > room and not self._kept_bodies.holds(self._uidvalidity, uid):
                break
            taken.append(uid)
        return taken

    def _defer(self, uid: int, admission: Admission, *, fetched: bool) -> float:
        """This mail and every later one stay in the folder, unread; the checkpoint stops before it. The wait."""
        cfg = self.config
        self.stats.deferred += 1
        logger.info("IMAP %s UID %d deferred (%s%s): tenant %s, retry in %.0fs", cfg.mailbox_id, uid,
                    admission.reason, "" if fetched else ", body not fetched", cfg.tenant, admission.retry_after_s)
        return admission.retry_after_s

    async def _publish_mail(self, uid: int, message_id: str, env: Envelope, head: MailHeaders, body: bytes) -> bool:
        cfg = self.config
        record = RawMail(
            tenant=cfg.tenant,
            message_id=message_id,
            mailbox=cfg.mailbox_id,
            source=SourceKind.IMAP,
            received_at=env.internaldate,
            subject=head.subject,
            sender=head.sender,
            raw=body,
        )
        try:
            await self._publish_acked(RAW_MAIL, f"{cfg.tenant}:{message_id}", record)
        except PublishError as exc:
            if exc.retriable:  # only when stopped while the broker was away: not acked, not checkpointed
                raise
            return await self._dead_letter(uid, message_id, env, f"broker refused the mail: {exc}", "PublishError")
        self._recent.add(message_id)
        self.stats.published += 1
        return True

    async def _dead_letter(self, uid: int, message_id: str, env: Envelope, reason: str, error_type: str, *,
                           size: int | None = None) -> bool:
        """Keep a mail that cannot be published, by its headers (the body stays in the mailbox); True once acked.

        ``size``: the whole mail's size when only its headers are kept (``truncated``).
        """
        cfg = self.config
        raw_topic = RAW_MAIL.full_name(self._prefix)
        record = DeadLetter(
            tenant=cfg.tenant,
            stage=STAGE,
            source_topic=raw_topic,
            key=f"{cfg.tenant}:{message_id}".encode(),
            # The headers identify the mail; the body stays in the mailbox for a human to fetch.
            payload=env.headers,
            reason=f"{cfg.mailbox_id} UID {uid}: {reason}"[:4000],
            error_type=error_type,
            at=self._clock(),
            payload_size=size,
            truncated=size is not None,
        )
        await self._publish_acked(DEAD_LETTER, raw_topic, record)
        logger.warning("IMAP %s UID %d (%s) dead-lettered: %s", cfg.mailbox_id, uid, message_id, reason)
        self._recent.add(message_id)
        self.stats.dead_lettered += 1
        return True

    async def _publish_acked(self, spec: TopicSpec, key: str, record: Record) -> None:
        """Publish and await the broker's ack; a transient refusal is sent again until acked or stopped.

        Transient (``PublishError.retriable``: broker down, message timed out in the local queue, no
        leader, not enough replicas, queue full) is retried after 0.5 s doubling to 30 s, without limit,
        logged once when the outage starts and once when acks come back. A permanent refusal is raised
        at once (the caller dead-letters the mail); so is a transient one after :meth:`stop`, so the
        checkpoint stays before this record. While the broker is down, stopping waits for at most the
        attempt in flight (the publisher's ``delivery.timeout.ms``).
        """
        delay = _PUBLISH_RETRY_FIRST_S
        while True:
            try:
                await self._publisher.publish(spec, key, record)
            except PublishError as exc:
                if not exc.retriable or self._stop.is_set():
                    raise
                self._broker_unavailable(exc)
                self.stats.publish_retries += 1
                await self._pause(delay)
                if self._stop.is_set():
                    raise
                delay = min(delay * 2, _PUBLISH_RETRY_MAX_S)
                continue
            self._broker_back()
            return

    def _broker_unavailable(self, exc: PublishError) -> None:
        if self._broker_down_since is None:
            self._broker_down_since = time.monotonic()
            logger.warning(
                "IMAP %s: the broker did not take a record (%s); holding the mails and retrying with backoff "
                "up to %.0fs until it acks, the checkpoint stays at UID %d",
                self.config.mailbox_id, exc, _PUBLISH_RETRY_MAX_S, self._last_uid,
            )

    def _broker_back(self) -> None:
        if self._broker_down_since is not None:
            logger.info("IMAP %s: the broker acks again after %.1fs (%d records sent again so far)",
                        self.config.mailbox_id, time.monotonic() - self._broker_down_since,
                        self.stats.publish_retries)
            self._broker_down_since = None

    async def _after_ingest(self, session: ImapSession, uids: list[int]) -> None:
        action = self.config.after_ingest_action
        if action is AfterIngest.NONE or not uids:
            return
        if action is AfterIngest.SEEN:
            await self._in_thread(session.mark_seen, uids)
        else:
            target = self.config.move_target
            assert target is not None
            await self._in_thread(session.move, uids, target)


async def _done() -> bool:
    return True


def _budget_groups(uids: list[int], envelopes: dict[int, Envelope], budget: int) -> list[list[int]]:
    """Split body fetches so one round never holds more than ``budget`` bytes of mail."""
    groups: list[list[int]] = []
    current: list[int] = []
    size = 0
    for uid in uids:
        need = envelopes[uid].size
        if current and size + need > budget:
            groups.append(current)
            current, size = [], 0
        current.append(uid)
        size += need
    if current:
        groups.append(current)
    return groups
