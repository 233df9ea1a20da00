"""Turn Graph notifications into RawMail records on raw-mail, exactly once per Message-ID as far as we can.

Flow: the webhook verifies and spools notifications (``accept``), answers 202, and a
``drain`` processes the spool: a ``created`` item fetches the MIME and publishes it;
``missed``/``subscriptionRemoved`` run a delta catch-up from the deltaLink checkpoint;
``reauthorizationRequired`` reauthorizes. Publishing waits for the broker's ack; the
delta checkpoint is written only after every mail of the catch-up was acked.

A tenant over its ingest quota or its fair share of the intake budget is deferred on both paths, never
dropped: a notified mail stays in the spool, and a catch-up stops before the first mail it may not take,
keeps the previous deltaLink and stays due; the next round resumes at the delta page it stopped on (a new
process, or a page link Graph no longer serves, pages from the deltaLink again).
A mail costs the alerts it carries (``producers.mail.alert_count``), counted from its MIME. So before fetching
a mail the quota is asked whether the tenant could take even a one-alert mail now (nothing taken): if not, the
mail is deferred without being fetched, and a throttled tenant's waiting mails are not downloaded round after
round. A mail the tenant could take one alert of but not all of its alerts (a digest, a nearly empty bucket) is
fetched, counted and deferred, and its count is remembered (``producers.deferred_costs``, per mailbox by Graph id,
bounded, in memory): later rounds ask the quota for that count before fetching it, so it is fetched once more when
it fits, not once per round (after a restart, or once forgotten, it is fetched and counted once more).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.header import decode_header, make_header
from email.parser import BytesHeaderParser
from email.policy import compat32
from typing import Any, Protocol

from producers.deferred_costs import DeferredCosts
from producers.mail.alert_count import MailCost
from producers.msgraph.client import GraphClient
from producers.msgraph.config import MailboxConfig, MsgraphConfig
from producers.msgraph.errors import (
    GraphAuthError,
    GraphError,
    GraphNotFoundError,
    GraphThrottledError,
    MailTooLargeError,
    NotificationRejected,
    TenantDeferredError,
)
from producers.msgraph.notifications import EntryKind, LifecycleEvent, parse_body, verify
from producers.msgraph.retry import retry_delay
from producers.msgraph.spool import Spool
from producers.msgraph.subscriptions import SubscriptionManager
from producers.oversize import oversize_dead_letter
from producers.publisher import Publisher, PublishError
from producers.quota import Admission, IngestQuota
from producers.recent_ids import RecentIds
from schemas.limits import MAX_MAIL_BYTES
from schemas.records import Checkpoint, DeadLetter, RawMail, SourceKind
from schemas.topics import DEAD_LETTER, INGEST_CHECKPOINTS, RAW_MAIL

logger = logging.getLogger(__name__)


class CheckpointSource(Protocol):
    """Start-up reads: the last checkpoint of a mailbox and the Message-IDs it published since a time.

    ``producers.imap.state.KafkaCheckpointReader`` implements it for both producers.
    """

    def load(self, mailbox: str) -> Checkpoint | None: ...

    def message_ids_since(self, tenant: str, mailbox: str, since: datetime) -> list[str]: ...


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _header(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return str(make_header(decode_header(value))).strip() or None
    except (LookupError, UnicodeDecodeError, ValueError):
        return value.strip() or None


def mail_headers(mime: bytes) -> tuple[str | None, str | None, str | None]:
    """Message-ID, Subject and From of a raw message; only the header block is parsed."""
    end = mime.find(b"\r\n\r\n")
    if end < 0:
        end = mime.find(b"\n\n")
    head = mime if end < 0 else mime[: end + 2]
    msg = BytesHeaderParser(policy=compat32).parsebytes(head)
    message_id = msg.get("Message-ID")
    return (
        str(message_id).strip() if message_id else None,
        _header(msg.get("Subject")),
        _header(msg.get("From")),
    )


@dataclass(frozen=True, slots=True)
class _DeltaResume:
    """Where an unfinished delta catch-up goes on: ``link`` is the page it stopped on (the page holding the first
    mail its tenant could not take, or the one a failure interrupted), every mail of the pages before it taken.

    Valid only for the walk from the checkpoint ``base`` (the deltaLink, None for the initial sync) it began at;
    ``not_before`` carries a resync's cut-off (after an expired delta token). The position within the page is not
    kept: the page's earlier mails are in the recent ids and are skipped without a request, which stays right even
    if Graph orders the page differently the second time.
    """

    base: str | None
    link: str
    not_before: datetime | None


class GraphIngest:
    """Per-process ingest state for all configured mailboxes: delta links, recent ids, the spool."""

    def __init__(
        self,
        config: MsgraphConfig,
        client: GraphClient,
        publisher: Publisher,
        spool: Spool,
        *,
        subscriptions: SubscriptionManager | None = None,
        now: Callable[[], datetime] = _utcnow,
        rand: Callable[[], float] = random.random,
        quota: IngestQuota | None = None,
        mail_cost: Callable[[bytes], int] | None = None,
    ) -> None:
        self._config = config
        #: The tenants' ingest quota: a new mail of a tenant over it stays spooled (or unread by the catch-up).
        self._quota = quota
        #: What a mail takes from the quota: the alerts the worker will read from it (a digest costs its rows);
        #: default: counted with the bundled templates. Only called when there is a quota.
        self._mail_cost = mail_cost if mail_cost is not None else MailCost()
        #: The shortest Retry-After of the mails deferred since the maintenance round began (None: none).
        self._deferred_for: float | None = None
        self._rand = rand
        self._client = client
        self._publisher = publisher
        self._spool = spool
        self._subs = subscriptions or SubscriptionManager(config, client, now=now)
        self._now = now
        self._mailboxes = {m.mailbox_id: m for m in config.mailboxes}
        self._delta: dict[str, Checkpoint] = {}
        self._recent: dict[str, RecentIds] = {m: RecentIds(config.dedup_capacity) for m in self._mailboxes}
        self._locks: dict[str, asyncio.Lock] = {m: asyncio.Lock() for m in self._mailboxes}
        self._drain_lock = asyncio.Lock()
        #: Mailboxes whose last catch-up failed; the maintenance loop tries them again.
        self._catch_up_due: set[str] = set()
        #: Per mailbox, where an unfinished catch-up goes on (in memory only: a restart pages from the checkpoint).
        self._resume: dict[str, _DeltaResume] = {}
        #: Per mailbox, the MIME downloads (``$value`` answers) since start: what a throttled tenant costs Graph.
        self._bodies_fetched: dict[str, int] = dict.fromkeys(self._mailboxes, 0)
        #: Per mailbox, by Graph id, the cost of each mail fetched and deferred: not fetched again until it fits.
        self._deferred_costs: dict[str, DeferredCosts] = {m: DeferredCosts() for m in self._mailboxes}

    @property
    def subscriptions(self) -> SubscriptionManager:
        return self._subs

    def mailbox(self, mailbox_id: str) -> MailboxConfig:
        return self._mailboxes[mailbox_id]

    @property
    def bodies_fetched(self) -> dict[str, int]:
        """Per mailbox, the mails whose MIME was downloaded since start (a copy; the metric reads it)."""
        return dict(self._bodies_fetched)

    def delta_link(self, mailbox_id: str) -> str | None:
        checkpoint = self._delta.get(mailbox_id)
        return checkpoint.delta_link if checkpoint else None

    # ------------------------------------------------------------------ start-up

    def restore(self, source: CheckpointSource, lookback: timedelta = timedelta(days=7)) -> None:
        """Load each mailbox's delta checkpoint and the Message-IDs raw-mail still holds (blocking I/O)."""
        since = self._now() - lookback
        for mailbox_id, mailbox in self._mailboxes.items():
            checkpoint = source.load(mailbox_id)
            if checkpoint is not None and checkpoint.delta_link:
                self._delta[mailbox_id] = checkpoint
            published = source.message_ids_since(mailbox.tenant, mailbox_id, since)
            self._recent[mailbox_id].update(f"m:{mid}" for mid in published)
            logger.info(
                "restored %s: delta checkpoint %s, %d recent Message-IDs",
                mailbox_id, "present" if checkpoint else "absent", len(published),
            )

    # ------------------------------------------------------------------ webhook side

    def accept(self, body: bytes) -> tuple[int, int]:
        """Verify a notification POST and spool its valid items; returns (accepted, rejected).

        Raises NotificationRejected for a malformed body and SpoolError when the spool
        cannot be written (then the caller must not answer 2xx, so Graph retries).
        """
        verdict = verify(parse_body(body), self._config.mailboxes)
        for entry in verdict.entries:
            self._spool.put(entry)
        return len(verdict.entries), verdict.rejected

    async def drain(self) -> int:
        """Process every spooled entry; entries failing retriably stay for the next drain."""
        processed = 0
        #: Tenants deferred in this drain: their later mails wait too (not fetched, never overtaking).
        waiting: set[str] = set()
        async with self._drain_lock:
            for key, entry in self._spool.pending():
                if self._waits(entry, waiting):
                    continue
                try:
                    await self.process(entry)
                except TenantDeferredError as exc:
                    waiting.add(exc.tenant)
                    continue
                except GraphError as exc:
                    if exc.retriable:
                        logger.warning("notification %s kept for retry: %s", key, exc)
                        continue
                    if not await self._dead_letter(key, entry, exc):
                        continue
                except PublishError as exc:
                    # The broker may come back; the mail must not be lost, so the entry stays either way.
                    logger.warning("notification %s kept: broker refused the record: %s", key, exc)
                    continue
                except NotificationRejected as exc:
                    if not await self._dead_letter(key, entry, exc):
                        continue
                self._spool.done(key)
                processed += 1
        return processed

    def _waits(self, entry: dict[str, Any], waiting: set[str]) -> bool:
        """A new mail of a tenant already deferred in this drain stays in the spool (the next drain takes it)."""
        mailbox = self._mailboxes.get(str(entry.get("mailbox")))
        return mailbox is not None and entry.get("kind") == EntryKind.CREATED and mailbox.tenant in waiting

    async def _admit_mail(self, mailbox: MailboxConfig, mime: bytes, what: str, message_id: str) -> None:
        """Take the mail's alerts (a digest costs its rows) from its tenant's quota and the intake budget, or
        raise :class:`TenantDeferredError` and remember the count, so the mail (Graph id ``message_id``) is not
        fetched again before it fits. Counting parses the mail, off the event loop."""
        if self._quota is None:
            return
        cost = await asyncio.to_thread(self._mail_cost, mime)
        costs = self._deferred_costs[mailbox.mailbox_id]
        if not self._admitted(mailbox, what, cost):
            costs.remember(message_id, cost)
            raise TenantDeferredError(mailbox.tenant)
        costs.forget(message_id)

    def _admitted(self, mailbox: MailboxConfig, what: str, cost: int) -> bool:
        """Take ``cost`` alerts of the mailbox's tenant from its quota and the intake budget; False (logged,
        counted by the quota, the wait remembered for the maintenance round) when the tenant has to wait."""
        if self._quota is None:
            return True
        admission = self._quota.admit(mailbox.tenant, cost, source="msgraph")
        if admission.admitted:
            return True
        self._deferred(mailbox, what, admission, fetched=True)
        return False

    def _precheck(self, mailbox: MailboxConfig, what: str, message_id: str) -> None:
        """Before fetching a mail: raise :class:`TenantDeferredError` when its tenant could not take even a
        one-alert mail now (any larger count would be refused too), or not the count the mail (Graph id
        ``message_id``) was found to carry when it was fetched and deferred before, so the mail is not downloaded
        only to wait. The quota counts such a deferral as one alert, the least a mail costs, or as the remembered
        count (what admitting the fetched mail would have counted); nothing is taken either way."""
        if self._quota is None:
            return
        cost = self._deferred_costs[mailbox.mailbox_id].cost(message_id)
        admission = self._quota.precheck(mailbox.tenant, source="msgraph", count=cost)
        if not admission.admitted:
            self._deferred(mailbox, what, admission, fetched=False)
            raise TenantDeferredError(mailbox.tenant)

    def _deferred(self, mailbox: MailboxConfig, what: str, admission: Admission, *, fetched: bool) -> None:
        """Log a deferral and remember its wait, so the maintenance round comes back when it has passed."""
        wait = admission.retry_after_s
        self._deferred_for = wait if self._deferred_for is None else min(self._deferred_for, wait)
        logger.info("%s of %s deferred (%s%s): tenant %s, retry in %.0fs", what, mailbox.mailbox_id,
                    admission.reason, "" if fetched else ", not fetched", mailbox.tenant, wait)

    async def _dead_letter(self, key: str, entry: dict[str, Any], exc: Exception) -> bool:
        """Keep a notification that can never be processed where people look; True once it is there."""
        mailbox = self._mailboxes.get(str(entry.get("mailbox")))
        record = DeadLetter(
            tenant=mailbox.tenant if mailbox else "unknown",
            stage="msgraph",
            source_topic="msgraph-notifications",
            key=key.encode("utf-8"),
            payload=json.dumps(entry, sort_keys=True, default=str).encode("utf-8"),
            reason=f"{type(exc).__name__}: {exc}"[:4000],
            error_type=type(exc).__name__,
            at=self._now(),
        )
        try:
            await self._publisher.publish(DEAD_LETTER, "msgraph-notifications", record)
        except PublishError as publish_exc:
            logger.warning("notification %s kept: dead-letter refused too: %s", key, publish_exc)
            return False
        logger.error("notification %s cannot be processed, kept in dead-letter: %s", key, exc)
        return True

    async def process(self, entry: dict[str, Any]) -> None:
        mailbox = self._mailboxes.get(str(entry.get("mailbox")))
        if mailbox is None:
            raise NotificationRejected(f"spool entry for unknown mailbox {entry.get('mailbox')!r}")
        kind = entry.get("kind")
        if kind == EntryKind.CREATED:
            await self.ingest_message(mailbox, str(entry["message_id"]))
            return
        if kind != EntryKind.LIFECYCLE:
            raise NotificationRejected(f"spool entry of unknown kind {kind!r}")
        event = LifecycleEvent(str(entry["event"]))
        subscription_id = str(entry["subscription_id"])
        logger.info("lifecycle %s for %s (subscription %s)", event.value, mailbox.mailbox_id, subscription_id)
        if event is LifecycleEvent.REAUTHORIZATION_REQUIRED:
            await self._subs.reauthorize(mailbox, subscription_id)
        elif event is LifecycleEvent.SUBSCRIPTION_REMOVED:
            await self._subs.create(mailbox)
            await self.catch_up(mailbox)
        else:
            await self.catch_up(mailbox)

    # ------------------------------------------------------------------ mail

    async def ingest_message(self, mailbox: MailboxConfig, message_id: str, internet_id: str | None = None) -> bool:
        """Fetch one message's MIME and publish it, unless it was published before; True if published."""
        async with self._locks[mailbox.mailbox_id]:
            return await self._ingest_locked(mailbox, message_id, internet_id)

    def _published_before(self, mailbox: MailboxConfig, message_id: str, internet_id: str | None) -> bool:
        recent = self._recent[mailbox.mailbox_id]
        return f"g:{message_id}" in recent or bool(internet_id and f"m:{internet_id}" in recent)

    async def _ingest_locked(self, mailbox: MailboxConfig, message_id: str, internet_id: str | None) -> bool:
        recent = self._recent[mailbox.mailbox_id]
        if self._published_before(mailbox, message_id, internet_id):
            return False
        # Asked before the download: a mail that turns out deleted, too large or published under its header's
        # Message-ID is found so once its tenant may take a mail again (it waits, it is not lost or repeated).
        self._precheck(mailbox, f"message {(internet_id or message_id)[:80]}", message_id)
        try:
            # Never above what raw-mail holds, whatever the configuration says.
            limit = min(self._config.max_message_bytes, MAX_MAIL_BYTES)
            mime = await self._client.message_mime(mailbox.user, message_id, limit)
        except GraphNotFoundError:
            logger.warning("message %s of %s was deleted before it could be fetched", message_id[:40],
                           mailbox.mailbox_id)
            return False
        except MailTooLargeError as exc:
            self._bodies_fetched[mailbox.mailbox_id] += 1
            await self._dead_letter_oversize(mailbox, exc)
            recent.add(f"g:{message_id}")  # dead-lettered once: not fetched again by the next drain
            return False
        self._bodies_fetched[mailbox.mailbox_id] += 1
        header_id, subject, sender = mail_headers(mime)
        rfc_id = header_id or internet_id or f"<{message_id}@graph.invalid>"
        if f"m:{rfc_id}" in recent:
            recent.add(f"g:{message_id}")
            return False
        await self._admit_mail(mailbox, mime, f"message {rfc_id[:80]}", message_id)
        record = RawMail(
            tenant=mailbox.tenant,
            message_id=rfc_id,
            mailbox=mailbox.mailbox_id,
            source=SourceKind.MSGRAPH,
            received_at=self._now(),
            subject=subject,
            sender=sender,
            raw=mime,
        )
        await self._publisher.publish(RAW_MAIL, f"{mailbox.tenant}:{rfc_id}", record)
        recent.add(f"g:{message_id}")
        recent.add(f"m:{rfc_id}")
        logger.info("published %s from %s", rfc_id, mailbox.mailbox_id)
        return True

    async def _dead_letter_oversize(self, mailbox: MailboxConfig, exc: MailTooLargeError) -> None:
        """Keep a mail raw-mail cannot hold where people look; a refused dead letter propagates (kept for retry)."""
        header_id, _subject, _sender = mail_headers(exc.head)
        record = oversize_dead_letter(
            tenant=mailbox.tenant, stage="msgraph", mailbox=mailbox.mailbox_id, message_id=header_id,
            where=f"Graph id {exc.graph_id[:80]}", size=exc.size, limit=exc.limit, head=exc.head, sha256=exc.sha256,
            at=self._now())
        await self._publisher.publish(DEAD_LETTER, record.source_topic, record)
        logger.error("%s: %s", mailbox.mailbox_id, record.reason)

    async def catch_up(self, mailbox: MailboxConfig) -> int:
        """Page through the folder's delta from the checkpoint, publish what is new, store the new deltaLink.

        Without a checkpoint this is the initial sync: ``initial_position=new`` only records
        the deltaLink. An expired delta token (410) restarts the sync, publishing only
        messages received since the last checkpoint (minus a day), deduplicated.

        A mail its tenant may not take now (quota, fair share of the intake budget) ends the catch-up before
        it: nothing after it is fetched (nor the mail itself while the tenant could take no mail at all), the
        deltaLink stays where it was and the mailbox stays due. The next round (in this process) resumes at the
        page that held that mail instead of paging from the checkpoint again; a restart, or a page link Graph no
        longer serves, pages from the checkpoint as before. Either way what was published meanwhile is skipped
        unfetched.
        """
        self._catch_up_due.add(mailbox.mailbox_id)
        published = 0
        deferred = False
        async with self._locks[mailbox.mailbox_id]:
            previous = self._delta.get(mailbox.mailbox_id)
            base = previous.delta_link if previous and previous.delta_link else None
            publish = base is not None or mailbox.initial_position == "all"
            start = base if base is not None else self._client.delta_start(mailbox.user, mailbox.folder)
            resume = self._resume.get(mailbox.mailbox_id)
            if resume is not None and resume.base != base:
                resume = None  # it continued a walk from another checkpoint
            link = resume.link if resume is not None else start
            not_before: datetime | None = resume.not_before if resume is not None else None
            # Resuming at the checkpoint's own link is what a fresh walk does: its 410 means a resync, as before.
            resuming = resume is not None and link != start
            while True:
                try:
                    page = await self._client.delta_page(link)
                except GraphError as exc:
                    if resuming and not exc.retriable and not isinstance(exc, GraphAuthError):
                        # Graph no longer serves the page the last round stopped at (an expired skip token):
                        # page from the checkpoint, as a new process would.
                        logger.warning("the delta page where the catch-up of %s stopped is no longer served (%s); "
                                       "paging from the checkpoint again", mailbox.mailbox_id, exc)
                        self._resume.pop(mailbox.mailbox_id, None)
                        resuming, link, not_before = False, start, None
                        continue
                    if exc.status != 410 or previous is None or not_before is not None:
                        raise
                    logger.warning("delta token of %s expired; resyncing the folder", mailbox.mailbox_id)
                    not_before = previous.updated_at - timedelta(days=1)
                    link = self._client.delta_start(mailbox.user, mailbox.folder)
                    continue
                resuming = False
                # Every mail of the pages before this one was taken (or skipped for good): a round that stops on
                # this page (deferred, or failed) may go on from here, within this process.
                self._resume[mailbox.mailbox_id] = _DeltaResume(base, link, not_before)
                for item in page.items:
                    if item.removed or not publish:
                        continue
                    if not_before is not None and item.received_at is not None and item.received_at < not_before:
                        continue
                    if self._published_before(mailbox, item.id, item.internet_message_id):
                        continue
                    try:
                        if await self._ingest_locked(mailbox, item.id, item.internet_message_id):
                            published += 1
                    except TenantDeferredError:
                        deferred = True
                        break
                if deferred:
                    break
                if page.next_link:
                    link = page.next_link
                    continue
                assert page.delta_link is not None  # delta_page guarantees one of the two
                await self._save_checkpoint(mailbox, page.delta_link)
                self._resume.pop(mailbox.mailbox_id, None)
                break
        if deferred:
            logger.info("delta catch-up of %s published %d mails and waits for its tenant's quota or share; the "
                        "deltaLink stays, the next round resumes at the page it stopped on", mailbox.mailbox_id,
                        published)
            return published
        self._catch_up_due.discard(mailbox.mailbox_id)
        logger.info("delta catch-up of %s published %d mails", mailbox.mailbox_id, published)
        return published

    async def _save_checkpoint(self, mailbox: MailboxConfig, delta_link: str) -> None:
        checkpoint = Checkpoint(
            tenant=mailbox.tenant,
            mailbox=mailbox.mailbox_id,
            kind=SourceKind.MSGRAPH,
            delta_link=delta_link,
            updated_at=self._now(),
        )
        await self._publisher.publish(INGEST_CHECKPOINTS, mailbox.mailbox_id, checkpoint)
        self._delta[mailbox.mailbox_id] = checkpoint

    async def catch_up_all(self) -> int:
        return sum([await self.catch_up(m) for m in self._config.mailboxes])

    async def maintain(
        self, stop: asyncio.Event, interval_seconds: float = 60.0, *, ensure_subscriptions: bool = True,
        initial_delay_seconds: float = 5.0, wait: Callable[[float], Awaitable[None]] | None = None,
    ) -> None:
        """Background duty of a long-running process: retry spooled items and renew subscriptions.

        The first round waits ``initial_delay_seconds``: creating a subscription makes Graph call
        the webhook at once, so the HTTP server has to be listening by then. A round that succeeded is
        followed by the next after ``interval_seconds``; one that failed is tried again after
        :meth:`round_retry_delay` (Graph's Retry-After when it sent one, else exponential backoff with
        jitter up to ``round_retry.cap_seconds``), so a short outage is bridged in seconds and a long
        one, or a throttled app, is not hammered. A round that deferred mails for their tenant's quota or share
        is followed by the next once the shortest of their Retry-Afters has passed, if that comes sooner.
        ``wait`` (tests) replaces waiting on ``stop``.
        """
        async def pause(seconds: float) -> None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=seconds)

        delay, failures = initial_delay_seconds, 0
        while not stop.is_set():
            await (wait or pause)(delay)
            if stop.is_set():
                return
            self._deferred_for = None
            try:
                await self.drain()
                for mailbox_id in sorted(self._catch_up_due):
                    await self.catch_up(self._mailboxes[mailbox_id])
                if ensure_subscriptions:
                    for mailbox in self._config.mailboxes:
                        await self._subs.ensure(mailbox)
            except (GraphError, PublishError) as exc:
                delay = self.round_retry_delay(failures, exc)
                failures += 1
                logger.warning("Graph maintenance round failed (%s); round %d failed in a row, next in %.1fs%s", exc,
                               failures, delay,
                               " (Graph's Retry-After)" if isinstance(exc, GraphThrottledError) and exc.retry_after
                               is not None else "")
                continue
            if failures:
                logger.info("Graph maintenance round succeeded after %d failed rounds", failures)
            delay, failures = interval_seconds, 0
            if self._deferred_for is not None:
                delay = min(delay, self._deferred_for)

    def round_retry_delay(self, failures: int, exc: BaseException) -> float:
        """Seconds before the round after ``failures + 1`` failed ones: Retry-After first, then capped backoff."""
        hint = exc.retry_after if isinstance(exc, GraphThrottledError) else None
        return retry_delay(failures, hint, self._config.round_retry, self._rand)
