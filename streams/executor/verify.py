"""The executor's check before any side effect: it runs only what a decider signed and the policy still allows.

Anyone who can write to the actions topic can write an ``approved`` record, so
the record itself proves nothing. Before it starts an action the executor checks,
in this order: (a) the decision signature verifies with the current or a previous
decision key; (b) it is not past its signed ``not_after``; (c) the tenant's policy
allows exactly this action, parameters and risk for the alert class
(:func:`policies.recheck.recheck`), and an action that needs a human carries an
approver from the tenant's approvers; (d) the tenant's write scope
(:class:`policies.tenant_scope.TenantScope`) covers the target.

A refused record is kept whole in dead-letter (stage ``executor``, the reason,
its partition and offset) and answered with a ``rejected`` record of the same
action, unsigned, so the refusal shows in the tenant's audit chain and on the
incident; a rejected record can never make anything run. A record refused for an
action that already started (a forgery, or a copy of its approval written after
the run started) is answered under a refusal id of its own (:func:`refusal_id`),
so the audit chain shows it without the action's own state turning ``rejected``.

Every signed window is at most :attr:`ActionVerifier.max_valid_for` long (the
longest any decider grants): the executor's ledger reads that far back, so a
genuine approval replayed while it is still valid finds its earlier run.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Collection, Mapping
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Protocol

from prometheus_client import REGISTRY, CollectorRegistry, Counter

from policies.catalog import ACTION_PARAMS
from policies.decision_signature import DEFAULT_APPROVAL_VALID_FOR, DecisionKeys, DecisionSignatureError
from policies.loader import PolicySet
from policies.recheck import recheck
from policies.tenant_scope import TenantScope
from policies.validate import is_valid
from schemas.records import ActionEvent, ActionState, DeadLetter
from schemas.tenant_label import TenantLabels
from streams.errors import StreamsError
from streams.executor.rollbacks import ROLLBACK_VALID_FOR

logger = logging.getLogger(__name__)

#: The dead-letter ``stage`` of records the executor refused to run.
STAGE = "executor"
#: The identity an approval link that names nobody decides as (only where the policy allows it).
ANONYMOUS_LINK_APPROVER = "link:anonymous"
#: Longest untrusted name copied from a refused record into its rejected answer.
_NAME_CHARS = 200


class ReadRecord(Protocol):
    """Where a refused record was read and its bytes (a confluent-kafka ``Message`` is one)."""

    def topic(self) -> str | None: ...
    def partition(self) -> int | None: ...
    def offset(self) -> int | None: ...
    def key(self) -> str | bytes | None: ...
    def value(self) -> str | bytes | None: ...


class RefusalReason(StrEnum):
    """Why the executor did not run an approved record: the closed label set of the refusal metric."""

    UNSIGNED = "unsigned"
    UNKNOWN_KEY = "unknown_key"
    BAD_SIGNATURE = "bad_signature"
    EXPIRED = "expired"
    NOT_IN_POLICY = "not_in_policy"
    NO_APPROVER = "no_approver"
    OUT_OF_SCOPE = "out_of_scope"
    #: A copy of an approval written after the action's run started: never a second run.
    REPLAYED = "replayed"


class ActionRefusedError(StreamsError):
    """An approved record the executor will not run; ``reason`` is the metric label, the message says why."""

    def __init__(self, reason: RefusalReason, message: str, *, tenant: str, action_id: str) -> None:
        self.reason = reason
        self.tenant = tenant
        self.action_id = action_id
        super().__init__(f"action {action_id} of tenant {tenant} not run ({reason.value}): {message}")


_COUNTERS: weakref.WeakKeyDictionary[CollectorRegistry, Counter] = weakref.WeakKeyDictionary()


def longest_validity(policies: PolicySet, auto_valid_for: timedelta) -> timedelta:
    """The longest window any decider signs: auto-approvals, human approvals (the policy's approval TTLs, or the
    default when an action has none), rollbacks."""
    ttls = [policies.document.defaults.approval_ttl,
            *(a.approval_ttl for c in policies.document.classes for a in c.actions if a.approval_ttl is not None)]
    return max(auto_valid_for, DEFAULT_APPROVAL_VALID_FOR, ROLLBACK_VALID_FOR, *ttls)


def refusal_id(action_id: str, partition: int | None, offset: int | None) -> str:
    """The id a refusal of a record for an already started action is audited under (one per refused record)."""
    return f"{action_id[:_NAME_CHARS]}:refused@{partition}.{offset}"


def _refusals(registry: CollectorRegistry) -> Counter:
    """One counter per registry, however many executors a process (a test) builds."""
    counter = _COUNTERS.get(registry)
    if counter is None:
        counter = Counter("rcaflow_executor_refused_total",
                          "Approved action records the executor refused to run, by reason and tenant.",
                          ["reason", "tenant"], registry=registry)
        _COUNTERS[registry] = counter
    return counter


class ActionVerifier:
    """Decides whether an approved record may run, and writes up the refusal when it may not."""

    def __init__(
        self,
        keys: DecisionKeys,
        policies: PolicySet,
        *,
        approvers: Mapping[str, Collection[str]],
        scopes: Mapping[str, TenantScope],
        registry: CollectorRegistry = REGISTRY,
        auto_valid_for: timedelta = timedelta(hours=1),
        tenant_policies: Mapping[str, PolicySet] | None = None,
    ) -> None:
        self.keys = keys
        #: tenant → its effective policy (base + overlay): what the decide stage decided by, checked again here.
        self._tenant_policies: Mapping[str, PolicySet] = tenant_policies or {}
        #: No record valid for longer runs; the ledger reads back this far (plus clock skew) on assignment.
        self.max_valid_for = longest_validity(policies, auto_valid_for)
        self._policies = policies
        self._approvers = approvers
        self._scopes = scopes
        self._refused = _refusals(registry)
        #: The configured tenants (those with a scope) are the only ``tenant`` label values besides ``_other``.
        self.tenant_label = TenantLabels.of(scopes)

    @property
    def tenants(self) -> frozenset[str]:
        return self.tenant_label.tenants

    def check(self, action: ActionEvent, now: datetime) -> None:
        """Return when ``action`` may run now; raise :class:`ActionRefusedError` naming the first problem."""

        def refuse(reason: RefusalReason, message: str) -> ActionRefusedError:
            return ActionRefusedError(reason, message, tenant=action.tenant, action_id=action.action_id)

        try:
            self.keys.verify(action, now)
        except DecisionSignatureError as exc:
            raise refuse(RefusalReason(exc.problem.value), exc.message) from exc
        assert action.decided_at is not None and action.not_after is not None  # verify() requires both
        if action.not_after - action.decided_at > self.max_valid_for:
            raise refuse(RefusalReason.EXPIRED,
                         f"signed valid for {action.not_after - action.decided_at}, longer than any decider grants "
                         f"({self.max_valid_for}); the executor's replay check reads back only that far")
        verdict = recheck(action, self._tenant_policies.get(action.tenant, self._policies))
        if verdict.problem is not None:
            raise refuse(RefusalReason.NOT_IN_POLICY, verdict.problem)
        approver = action.approver or ""
        if action.rollback_of is not None and action.state is ActionState.APPROVED and not approver.strip():
            raise refuse(RefusalReason.NO_APPROVER, "a requested rollback names no operator")
        if verdict.needs_approval and not self._may_approve(action, approver):
            who = f"approver {approver[:_NAME_CHARS]!r} is not" if approver else "no approver is"
            raise refuse(RefusalReason.NO_APPROVER, f"{action.name} needs a human approval and {who} one of "
                                                    f"tenant {action.tenant}'s approvers")
        scope = self._scopes.get(action.tenant)
        namespace = action.params.get("namespace") or action.undo_params.get("namespace")
        problem = (f"tenant {action.tenant} is not configured, so it may change nothing" if scope is None
                   else scope.why_not_write(cluster=action.params.get("cluster"), namespace=namespace))
        if problem is not None:
            raise refuse(RefusalReason.OUT_OF_SCOPE, problem)

    def _may_approve(self, action: ActionEvent, approver: str) -> bool:
        if approver and approver in self._approvers.get(action.tenant, ()):
            return True
        policies = self._tenant_policies.get(action.tenant, self._policies)
        return approver == ANONYMOUS_LINK_APPROVER and policies.allows_anonymous_approval(
            action.alert_class, action.name)

    def refusal(self, error: ActionRefusedError, action: ActionEvent, read: ReadRecord, *,
                at: datetime, started: bool = False) -> tuple[DeadLetter, ActionEvent]:
        """The dead letter keeping the refused record as read, and the ``rejected`` record that audits it.

        ``started``: the action already ran (or runs); its refusal is audited under :func:`refusal_id`, so that
        the action's own latest state (running, succeeded...) stays what the views and the executor read."""
        topic, partition, offset, key, payload = read.topic(), read.partition(), read.offset(), read.key(), read.value()
        topic = topic or "actions"
        payload = payload.encode("utf-8") if isinstance(payload, str) else payload or b""
        key = key.encode("utf-8") if isinstance(key, str) else key
        self._refused.labels(error.reason.value, self.tenant_label(error.tenant)).inc()
        logger.warning("executor: refused %s[%s]@%s: %s", topic, partition, offset, error.message,
                       extra={"tenant": action.tenant, "action_id": action.action_id, "reason": error.reason.value})
        letter = DeadLetter(tenant=action.tenant, stage=STAGE, source_topic=topic, partition=partition, offset=offset,
                            key=key, payload=payload, reason=f"{error.reason.value}: {error.message}"[:4000],
                            error_type=type(error).__name__, at=at)
        rejected = ActionEvent(
            tenant=action.tenant, action_id=refusal_id(action.action_id, partition, offset) if started
            else action.action_id, incident_id=action.incident_id[:_NAME_CHARS],
            alert_class=action.alert_class[:_NAME_CHARS], name=action.name[:_NAME_CHARS],
            tool=action.tool[:_NAME_CHARS], operation=action.operation[:_NAME_CHARS], params=_valid_params(action),
            risk=action.risk, state=ActionState.REJECTED, dry_run=True,
            reason=f"refused by the executor ({error.reason.value}): {error.message}"[:4000],
            result=f"not run; the approved record {topic}[{partition}]@{offset} is kept in dead-letter", at=at,
            rollback_of=action.rollback_of[:_NAME_CHARS] if action.rollback_of else None,
        )
        return letter, rejected


def _valid_params(action: ActionEvent) -> dict[str, str]:
    """Only parameters that pass their format: a refused record's text is untrusted (as in decide's rejections)."""
    formats = ACTION_PARAMS.get((action.tool, action.operation), {})
    return {k: v for k, v in action.params.items() if k in formats and is_valid(formats[k], v)}
