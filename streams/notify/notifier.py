"""First-response notifications: one message per incident, posted for the policy result, updated after.

The policy engine's result is posted at once (diagnosis, evidence, actions with
approve/reject controls); the LLM's second opinion updates the same message
(Slack ``chat.update``; DingTalk robots cannot edit, so a follow-up). What was
sent is remembered per incident in an injectable store (the worker backs it with
a Faust table keyed ``tenant:incident_id``), so a redelivered result sends
nothing twice: the stream is at-least-once, people should not see that.

Approval links that decide in someone's name (one per ``link:`` approver) never go into the shared
message: each approver gets their own privately, through a channel that can reach them alone
(:class:`PrivateDelivery`; Slack by direct message). DingTalk's group robot has no private path, so its
approvers get none (the shared message carries only anonymous links, see docs/approvals.md).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, runtime_checkable

from pydantic import ValidationError

from executors.approvals import LinkSigner
from executors.notify import ApprovalChannel, MessageRef, NotifyError, RateLimitedError
from executors.notify.text import with_history, with_runbook
from policies.checks import UNCLASSIFIED
from schemas.records import ActionEvent, ActionState, Engine, Incident, RcaResult, Risk
from streams.errors import StreamsError
from streams.notify.links import ApprovalLinkSigner, approval_links, approver_links
from streams.stages.table_pruning import forget_older

logger = logging.getLogger(__name__)

#: Actions remembered per incident (newest kept): enough for any policy class, bounded for a table row.
MAX_ACTIONS = 20
#: An action's result text kept in the store; the message builders show at most 300 characters of it.
_RESULT_CHARS = 500


@dataclass(frozen=True, slots=True)
class NotificationRef:
    """What one ``handle`` did: the message per channel, and which channels were posted, updated or left alone."""

    tenant: str
    incident_id: str
    messages: Mapping[str, MessageRef]
    posted: tuple[str, ...] = ()
    updated: tuple[str, ...] = ()
    unchanged: tuple[str, ...] = ()


class NotifyStageError(StreamsError):
    """One or more channels failed; what did reach a channel is remembered, so a retry sends only the rest."""

    def __init__(self, failures: Mapping[str, NotifyError]) -> None:
        super().__init__("; ".join(f"{name}: {exc.message}" for name, exc in sorted(failures.items())),
                         retriable=all(exc.retriable for exc in failures.values()))
        self.failures = dict(failures)
        waits = [exc.retry_after for exc in failures.values()
                 if isinstance(exc, RateLimitedError) and exc.retry_after is not None]
        self.retry_after: float | None = max(waits) if waits else None


@dataclass
class _Sent:
    """The store's row for one incident, as plain JSON (a Faust table serialises it as such)."""

    engine: str | None = None
    channels: dict[str, dict[str, Any]] = field(default_factory=dict)
    actions: list[dict[str, Any]] = field(default_factory=list)
    #: The result on screen, trimmed to what the messages show: a decision rebuilds the message from it.
    result: dict[str, Any] | None = None
    #: ISO time of the last change; :func:`forget_stale` drops rows older than the retention.
    updated_at: str | None = None
    #: Action id -> the approvers who were sent their own link for it (privately), so a redelivery sends none.
    private: dict[str, list[str]] = field(default_factory=dict)
    #: The incident whose result the row's (top-level) message shows; the row is keyed by the incident's group.
    owner: str | None = None
    #: Later members of the group: incident id -> {"channels": {name: ref + digest}, "actions": [...]}.
    members: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: Every member ever answered in the group's thread (also those dropped from ``members``): never twice.
    replied: list[str] = field(default_factory=list)

    @classmethod
    def load(cls, raw: object) -> _Sent:
        if not isinstance(raw, Mapping):
            return cls()
        channels = raw.get("channels")
        actions = raw.get("actions")
        result = raw.get("result")
        private = raw.get("private")
        members = raw.get("members")
        replied = raw.get("replied")
        return cls(
            engine=raw.get("engine") if isinstance(raw.get("engine"), str) else None,
            channels={k: dict(v) for k, v in channels.items() if isinstance(v, Mapping)}
            if isinstance(channels, Mapping) else {},
            actions=[dict(a) for a in actions if isinstance(a, Mapping)] if isinstance(actions, list) else [],
            result=dict(result) if isinstance(result, Mapping) else None,
            updated_at=raw.get("updated_at") if isinstance(raw.get("updated_at"), str) else None,
            private={k: [str(p) for p in v] for k, v in private.items() if isinstance(v, list)}
            if isinstance(private, Mapping) else {},
            owner=raw.get("owner") if isinstance(raw.get("owner"), str) else None,
            members={k: dict(v) for k, v in members.items() if isinstance(v, Mapping)}
            if isinstance(members, Mapping) else {},
            replied=[str(r) for r in replied] if isinstance(replied, list) else [],
        )

    def dump(self) -> dict[str, Any]:
        return {"engine": self.engine, "channels": self.channels, "actions": self.actions,
                "result": self.result, "updated_at": self.updated_at, "private": self.private,
                "owner": self.owner, "members": self.members, "replied": self.replied}

    def shown_result(self) -> RcaResult | None:
        if self.result is None:
            return None
        try:
            return RcaResult.model_validate(self.result)
        except ValidationError:
            logger.warning("notify: dropping an unreadable remembered result")
            return None


def _merge(known: Iterable[dict[str, Any]], new: Sequence[ActionEvent]) -> list[ActionEvent]:
    """Latest record per action id (by ``at``; a tie goes to the newer call), first-seen order, newest kept."""
    merged: dict[str, ActionEvent] = {}
    for raw in known:
        try:
            action = ActionEvent.model_validate(raw)
        except ValidationError:
            logger.warning("notify: dropping an unreadable remembered action")
            continue
        merged[action.action_id] = action
    for action in new:
        old = merged.get(action.action_id)
        if old is None or action.at >= old.at:
            merged[action.action_id] = action
    return list(merged.values())[-MAX_ACTIONS:]


def _worth_a_follow_up(action: ActionEvent) -> bool:
    """For channels that cannot edit (DingTalk): decisions, failures and rollbacks, and what a human approved."""
    if action.state is ActionState.SUCCEEDED:
        return action.risk is Risk.HIGH or action.rollback_of is not None
    return True


def _digest(result: RcaResult, actions: Sequence[ActionEvent]) -> str:
    """What a reader would see change; links are left out (they carry fresh nonces every time)."""
    shown = {
        "engine": result.engine.value, "diagnosis": result.diagnosis, "cause": result.cause,
        "confidence": round(result.confidence, 2),
        "actions": [[a.action_id, a.state.value, a.result or "", a.dry_run,
                     a.expires_at.isoformat() if a.expires_at else ""] for a in actions],
    }
    return hashlib.sha256(json.dumps(shown, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:32]


def _stored(action: ActionEvent) -> dict[str, Any]:
    data = action.model_dump(mode="json")
    if isinstance(data.get("result"), str):
        data["result"] = data["result"][:_RESULT_CHARS]
    return data


def remembered_result(result: RcaResult) -> dict[str, Any]:
    """The result as the messages show it: at most 5 evidence lines, long texts clipped, proposals dropped."""
    evidence = [e.model_copy(update={"query": e.query[:200], "summary": e.summary[:200],
                                     "error": e.error[:200] if e.error else e.error})
                for e in result.evidence[:5]]
    trimmed = result.model_copy(update={"evidence": evidence, "actions": [], "rollback": [],
                                        "diagnosis": result.diagnosis[:1000], "cause": result.cause[:800]})
    return trimmed.model_dump(mode="json")


def _utcnow() -> datetime:
    return datetime.now(UTC)


def forget_stale(
    store: MutableMapping[str, Any],
    *,
    now: datetime,
    keep: timedelta,
    owned: Callable[[str], bool] = lambda _key: True,
) -> list[str]:
    """Delete the rows of ``store`` last changed more than ``keep`` before ``now``; returns their keys.

    A long-running worker must not remember every incident forever. A row with no readable
    ``updated_at`` (written before rows had one) counts as stale. ``owned`` limits the sweep to
    the keys this caller may delete (a Faust worker: the keys of the partition it is handling).
    """
    return forget_older(store, field="updated_at", now=now, keep=keep, owned=owned)


@runtime_checkable
class ThreadReplies(Protocol):
    """A channel that can answer under a posted message (Slack: ``thread_ts``): how a group's later members are
    shown without a second top-level message."""

    async def reply(self, parent: MessageRef, rca: RcaResult, actions: Sequence[ActionEvent],
                    links: Mapping[str, str] | None = None) -> MessageRef: ...


#: Later members whose message (thread reply) a group's row keeps for edits; older ones are only remembered.
MAX_MEMBERS = 50
#: Member ids remembered as answered per group row.
MAX_REPLIED = 2000


@runtime_checkable
class PrivateDelivery(Protocol):
    """A channel that can send one person a message nobody else sees (Slack: a direct message)."""

    def reaches(self, approver: str) -> bool: ...

    async def send_privately(self, approver: str, rca: RcaResult, action: ActionEvent, url: str) -> None: ...


class Notifier:
    """Posts the first response of an incident and keeps it current; at most one message per incident
    and channel (plus, on DingTalk, a new card when new actions wait for approval).

    Guarantees: the same result delivered twice sends nothing the second time; an LLM result
    updates the message the policy result posted (or posts one, if none was); a policy result
    never overwrites an LLM diagnosis already shown; a failing channel does not keep the others
    from being notified, and ``handle`` then raises :class:`NotifyStageError` after remembering
    what was sent.
    """

    def __init__(
        self,
        channels: Mapping[str, Mapping[str, ApprovalChannel]],
        store: MutableMapping[str, Any],
        *,
        link_signer: LinkSigner | ApprovalLinkSigner | None = None,
        public_base_url: str | None = None,
        clock: Callable[[], datetime] = _utcnow,
        approvers: Mapping[str, Iterable[str]] | None = None,
        history: Callable[[Incident], Awaitable[str]] | None = None,
        runbook: Callable[[str], str] | None = None,
    ) -> None:
        self._channels = {tenant: dict(chs) for tenant, chs in channels.items()}
        self._store = store
        #: Class id -> its runbook link (policies.runbooks.runbook_link); None: no runbook line.
        self._runbook = runbook
        self._signer = link_signer
        self._base_url = public_base_url
        self._clock = clock
        #: tenant -> approver identities (``approvals.approvers``): who gets a link of their own.
        self._approvers = {tenant: tuple(ids) for tenant, ids in (approvers or {}).items()}
        #: "seen 3 times before; last fixed by X" from the knowledge base (None: no KB); never raises.
        self._history = history

    @staticmethod
    def key(tenant: str, incident_id: str) -> str:
        return f"{tenant}:{incident_id}"

    def _links(self, actions: Sequence[ActionEvent]) -> dict[str, str]:
        if self._signer is None or not self._base_url:
            return {}
        return approval_links(self._signer, self._base_url, actions, self._clock())

    async def handle(self, result: RcaResult, actions: list[ActionEvent]) -> NotificationRef | None:
        """Notify the tenant's channels of ``result`` and the actions decided for it; None if it has none."""
        channels = self._channels.get(result.tenant)
        if not channels:
            return None
        # One row, so one top-level message, per incident group (an incident alone is its own group).
        key = self.key(result.tenant, result.incident.group_id or result.incident_id)
        sent = _Sent.load(self._store.get(key))
        if sent.owner is None and sent.channels:
            sent.owner = result.incident.group_id or result.incident_id  # a row written before groups
        if sent.owner is not None and sent.owner != result.incident_id:
            return await self._member(key, sent, channels, result, actions)
        sent.owner = result.incident_id
        merged = _merge(sent.actions, actions)
        sent.actions = [_stored(a) for a in merged]
        sent.updated_at = self._clock().isoformat()
        if result.engine is Engine.POLICY and sent.engine == Engine.LLM.value:
            # A re-triage or a redelivery after the second opinion: keep the LLM's diagnosis on screen.
            self._store[key] = sent.dump()
            logger.info("notify: policy result after the LLM's for %s; message left as it is", key,
                        extra={"tenant": result.tenant, "incident_id": result.incident_id})
            return NotificationRef(result.tenant, result.incident_id, self._refs(sent), unchanged=tuple(channels))
        if self._history is not None:
            result = with_history(result, await self._history(result.incident))
        if self._runbook is not None and result.alert_class != UNCLASSIFIED:
            result = with_runbook(result, self._runbook(result.alert_class))
        digest = _digest(result, merged)
        awaiting = sorted(a.action_id for a in merged if a.state is ActionState.AWAITING_APPROVAL)
        posted: list[str] = []
        updated: list[str] = []
        unchanged: list[str] = []
        failures: dict[str, NotifyError] = {}
        for name, channel in channels.items():
            entry = sent.channels.get(name)
            try:
                if entry is None or (not entry.get("ts") and set(awaiting) - set(entry.get("offered", []))):
                    # First message; or a channel that cannot edit (DingTalk) and has new approvals to offer.
                    ref = await channel.notify_first_response(result, merged, self._links(merged))
                    sent.channels[name] = {"conversation": ref.conversation, "ts": ref.ts, "digest": digest,
                                           "offered": awaiting}
                    posted.append(name)
                elif entry.get("digest") == digest:
                    unchanged.append(name)
                else:
                    ref = MessageRef(channel=name, conversation=entry.get("conversation"), ts=entry.get("ts"))
                    await channel.update(ref, result, merged)
                    sent.channels[name] = {**entry, "digest": digest}
                    updated.append(name)
            except NotifyError as exc:
                logger.warning("notify: %s failed for %s: %s", name, key, exc.message,
                               extra={"tenant": result.tenant, "incident_id": result.incident_id})
                failures[name] = exc
        await self._send_private_links(result, merged, sent, failures)
        if posted or updated:
            sent.engine = result.engine.value
            sent.result = remembered_result(result)
        elif sent.result is None:
            sent.result = remembered_result(result)
        self._store[key] = sent.dump()
        if failures:
            raise NotifyStageError(failures)
        return NotificationRef(result.tenant, result.incident_id, self._refs(sent),
                               tuple(posted), tuple(updated), tuple(unchanged))

    async def _member(self, key: str, sent: _Sent, channels: Mapping[str, ApprovalChannel], result: RcaResult,
                      actions: list[ActionEvent]) -> NotificationRef:
        """A later member of a group whose message is out: a reply in that message's thread, edited afterwards;
        never a second top-level message (a channel that cannot reply in a thread shows nothing for it)."""
        entry = sent.members.get(result.incident_id) or {"channels": {}, "actions": []}
        raw_known = entry.get("channels")
        known: dict[str, Any] = dict(raw_known) if isinstance(raw_known, Mapping) else {}
        merged = _merge(entry.get("actions") or [], actions)
        digest = _digest(result, merged)
        posted: list[str] = []
        updated: list[str] = []
        unchanged: list[str] = []
        failures: dict[str, NotifyError] = {}
        for name, channel in channels.items():
            mine, top = known.get(name), sent.channels.get(name)
            try:
                if mine is None:
                    if (result.incident_id in sent.replied or top is None or not top.get("ts")
                            or not isinstance(channel, ThreadReplies)):
                        unchanged.append(name)  # summarised by the group's message; no second top-level one
                        continue
                    parent = MessageRef(channel=name, conversation=top.get("conversation"), ts=top.get("ts"))
                    ref = await channel.reply(parent, result, merged, self._links(merged))
                    known[name] = {"conversation": ref.conversation, "ts": ref.ts, "digest": digest}
                    posted.append(name)
                elif mine.get("digest") == digest:
                    unchanged.append(name)
                else:
                    ref = MessageRef(channel=name, conversation=mine.get("conversation"), ts=mine.get("ts"))
                    await channel.update(ref, result, merged)
                    known[name] = {**mine, "digest": digest}
                    updated.append(name)
            except NotifyError as exc:
                logger.warning("notify: %s failed for member %s of %s: %s", name, result.incident_id, key,
                               exc.message, extra={"tenant": result.tenant, "incident_id": result.incident_id})
                failures[name] = exc
        await self._send_private_links(result, merged, sent, failures)
        entry = {"channels": known, "actions": [_stored(a) for a in merged]}
        sent.members.pop(result.incident_id, None)
        sent.members[result.incident_id] = entry
        sent.members = dict(list(sent.members.items())[-MAX_MEMBERS:])
        if posted and result.incident_id not in sent.replied:
            sent.replied = [*sent.replied, result.incident_id][-MAX_REPLIED:]
        sent.updated_at = self._clock().isoformat()
        self._store[key] = sent.dump()
        if failures:
            raise NotifyStageError(failures)
        return NotificationRef(result.tenant, result.incident_id, self._refs(sent), tuple(posted), tuple(updated),
                               tuple(unchanged))

    async def decided(self, action: ActionEvent) -> NotificationRef | None:
        """Show a decision (approved / rejected / expired) or an outcome (succeeded / failed / rolled back).

        Slack: ``chat.update`` of the posted message, rebuilt with the action's new state (who, when;
        its buttons gone). DingTalk cannot edit: one short follow-up naming only this action. Nothing
        is sent when the tenant has no channels or no message is remembered for the incident (never
        posted, or forgotten after ``keep_hours``): None. A redelivered decision sends nothing.
        """
        channels = self._channels.get(action.tenant)
        if not channels:
            return None
        key = self.key(action.tenant, action.incident_id)
        sent = _Sent.load(self._store.get(key))
        shown = sent.shown_result()
        if shown is None or not sent.channels:
            # Not posted yet (an auto-approved action can finish before its first response is out): keep the
            # state, so the first message shows it; or the message was forgotten, and the row goes again later.
            sent.actions = [_stored(a) for a in _merge(sent.actions, [action])]
            sent.updated_at = self._clock().isoformat()
            self._store[key] = sent.dump()
            logger.info("notify: no message for %s yet; %s of %s kept for it", key, action.state.value,
                        action.action_id, extra={"tenant": action.tenant, "incident_id": action.incident_id})
            return None
        merged = _merge(sent.actions, [action])
        sent.actions = [_stored(a) for a in merged]
        sent.updated_at = self._clock().isoformat()
        digest = _digest(shown, merged)
        latest = [a for a in merged if a.action_id == action.action_id]
        updated: list[str] = []
        unchanged: list[str] = []
        failures: dict[str, NotifyError] = {}
        for name, channel in channels.items():
            entry = sent.channels.get(name)
            if entry is None or entry.get("digest") == digest:
                unchanged.append(name)  # never posted there (a retry of the first response will), or shown
                continue
            ref = MessageRef(channel=name, conversation=entry.get("conversation"), ts=entry.get("ts"))
            if not ref.ts and not _worth_a_follow_up(action):
                unchanged.append(name)  # a chat that cannot edit gets no message per routine success
                continue
            try:
                await channel.update(ref, shown, merged if ref.ts else latest)
            except NotifyError as exc:
                logger.warning("notify: %s failed for %s: %s", name, key, exc.message,
                               extra={"tenant": action.tenant, "incident_id": action.incident_id})
                failures[name] = exc
                continue
            sent.channels[name] = {**entry, "digest": digest}
            updated.append(name)
        self._store[key] = sent.dump()
        if failures:
            raise NotifyStageError(failures)
        return NotificationRef(action.tenant, action.incident_id, self._refs(sent), (), tuple(updated),
                               tuple(unchanged))

    async def _send_private_links(self, result: RcaResult, actions: Sequence[ActionEvent], sent: _Sent,
                                  failures: dict[str, NotifyError]) -> None:
        """Each ``link:`` approver's own link for each newly waiting action, through a channel that reaches them
        alone; an approver no channel reaches privately gets none (logged), never one in the shared message."""
        if not isinstance(self._signer, ApprovalLinkSigner) or not self._base_url:
            return
        waiting = [a for a in actions if a.state is ActionState.AWAITING_APPROVAL]
        links = approver_links(self._signer, self._base_url, waiting, self._clock(), self._approvers)
        private = [(name, ch) for name, ch in self._channels.get(result.tenant, {}).items()
                   if isinstance(ch, PrivateDelivery)]
        for action in waiting:
            done = sent.private.setdefault(action.action_id, [])
            for approver, url in links.get(action.action_id, {}).items():
                if approver in done:
                    continue
                route = next(((name, ch) for name, ch in private if ch.reaches(approver)), None)
                if route is None:
                    logger.warning("notify: no private channel reaches %s; their own link for %s is not sent",
                                   approver, action.action_id,
                                   extra={"tenant": result.tenant, "action_id": action.action_id})
                    continue
                try:
                    await route[1].send_privately(approver, result, action, url)
                except NotifyError as exc:
                    logger.warning("notify: private link to %s via %s failed: %s", approver, route[0], exc.message,
                                   extra={"tenant": result.tenant, "action_id": action.action_id})
                    failures[f"{route[0]}:{approver}"] = exc
                    continue
                done.append(approver)

    @staticmethod
    def _refs(sent: _Sent) -> dict[str, MessageRef]:
        return {name: MessageRef(channel=name, conversation=e.get("conversation"), ts=e.get("ts"))
                for name, e in sent.channels.items()}
