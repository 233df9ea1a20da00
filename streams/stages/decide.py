"""rca-result → actions: only what the policy allows, in the state its risk calls for, cooldowns applied."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta

from policies import Decisions, PolicySet, cooldown_key, decide
from policies.decision_signature import DecisionKeys
from policies.tenant_scope import TenantScope
from schemas.records import ActionEvent, ActionState, RcaResult
from schemas.topics import ACTIONS
from streams.stages.core import Out, StageContext, StageResult

STAGE = "decide"

#: The grouping key of records that cannot be decoded (they are dead-lettered by the decide stage).
UNKNOWN_GROUP = "unknown"


def group_key(result: RcaResult) -> str:
    """The decide stage's grouping key: the cooldown memory of one target lives in one partition."""
    return f"{result.tenant}:{result.incident.fingerprint}"


def outside_scope(scope: TenantScope, result: RcaResult, action: ActionEvent) -> str | None:
    """Why ``action`` is not the tenant's to take (``outside tenant scope: …``), or None.

    The mail that named the target is untrusted, so the target is judged as the executor
    would meet it: the namespace the action names (none: the whole cluster) and every
    cluster the action or the alert names.
    """
    namespace = action.params.get("namespace") or None
    named = {c for c in (action.params.get("cluster"), result.incident.event.labels.get("cluster")) if c}
    clusters: list[str | None] = [*sorted(named)] or [None]
    for cluster in clusters:
        reason = scope.why_not_write(cluster=cluster, namespace=namespace)
        if reason is not None:
            return reason
    return None


def within_scope(
    scope: TenantScope, result: RcaResult, actions: list[ActionEvent]
) -> tuple[list[ActionEvent], list[ActionEvent]]:
    """Split accepted actions into those inside the tenant's scope and, for the rest, their rejected
    records: neither approved nor sent for approval, with the reason.

    A refused action keeps its own id: the record is that action's decision, so whoever follows
    the proposal (demo, replay, the chat message) sees it settle. The policy binds an action's
    namespace and cluster to the incident's labels, so every proposal of one action for one
    incident gets the same verdict; were a policy to leave them free, a later refusal would at
    worst mark an earlier approval rejected (a denial, never an escalation).
    """
    inside: list[ActionEvent] = []
    refused: list[ActionEvent] = []
    for action in actions:
        reason = outside_scope(scope, result, action)
        if reason is None:
            inside.append(action)
            continue
        refused.append(action.model_copy(update={
            "state": ActionState.REJECTED,
            "reason": reason,
            "expires_at": None,
        }))
    return inside, refused


class Decide:
    """Turns an analysis (the policy's triage or the LLM's answer) into action records."""

    def __init__(
        self,
        policies: PolicySet,
        *,
        scopes: Mapping[str, TenantScope],
        context: StageContext | None = None,
        keys: DecisionKeys | None = None,
        auto_valid_for: timedelta = timedelta(hours=1),
        tenant_policies: Mapping[str, PolicySet] | None = None,
    ) -> None:
        self.policies = policies
        #: tenant → its effective policy (base + overlay, policies.tenant_overlay); others use ``policies``.
        self.tenant_policies: Mapping[str, PolicySet] = tenant_policies or {}
        #: Signs what the policy approves by itself, valid ``auto_valid_for`` (None: unsigned, e.g. for explain).
        self.keys = keys
        self.auto_valid_for = auto_valid_for
        #: tenant → scope (``scopes[tenant]`` answers for any tenant: streams.wiring.runtime.build_scopes).
        self.scopes = scopes
        self.context = context or StageContext()

    def __call__(self, result: RcaResult, last_run: Mapping[str, str] | None = None) -> StageResult:
        """``last_run`` (cooldown key → ``"<ISO time> <action id>"``) is the caller's memory of when each action
        last went ahead for this fingerprint and which action it was; the updated memory is in
        ``StageResult.state``. Rows written before the action id was kept hold the time alone.

        The action id makes a decision idempotent: after a worker restart the analyses since the last commit
        are decided again, and each used to be rejected "in cooldown" of itself, or, once the cooldown was
        over, approved again at the restart's time, which then put the next alert's action in cooldown.
        """
        now = self.context.now()
        memory: dict[str, datetime] = {}
        went_ahead: dict[str, str] = {}
        for key, value in (last_run or {}).items():
            at, _, action_id = value.partition(" ")
            memory[key] = datetime.fromisoformat(at)
            if action_id:
                went_ahead[key] = action_id
        policies = self.tenant_policies.get(result.incident.tenant, self.policies)
        decision = decide(result, policies, now, last_run=memory, went_ahead=went_ahead)
        inside, refused = within_scope(self.scopes[result.incident.tenant], result, decision.actions)
        decision = Decisions(inside, [*decision.rejected, *refused])
        decision = decision._replace(actions=[self._signed(a, now) for a in decision.actions])
        outs = [Out(ACTIONS, f"{a.tenant}:{a.action_id}", a) for a in decision.actions]
        outs += [Out(ACTIONS, f"{a.tenant}:{a.action_id}", a) for a in decision.rejected]
        updated = dict(last_run or {})
        for action in decision.actions:
            updated[cooldown_key(action.tenant, result.incident.fingerprint, action.name)] = \
                f"{now.isoformat()} {action.action_id}"
        metrics = self.context.metrics
        if metrics:
            for action in decision.actions + decision.rejected:
                metrics.actions.labels(state=action.state.value, risk=action.risk.value,
                                       tenant=metrics.tenant(action.tenant)).inc()
        self.context.count(STAGE, "ok")
        return StageResult(outs, state=updated, subject=result)

    def _signed(self, action: ActionEvent, now: datetime) -> ActionEvent:
        """An approved action carries the decision signature the executor checks; a waiting one is signed
        when a person approves it (the approval stage)."""
        if self.keys is None or action.state is not ActionState.APPROVED:
            return action
        return self.keys.sign(action, decided_at=now, valid_for=self.auto_valid_for)
