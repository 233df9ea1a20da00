"""The policy's disposition of proposed actions: which may run now, which wait for approval, which are dropped.

Risk and approval come from the policy file, never from the proposal, so an LLM that calls a
restart "low risk" changes nothing. Everything is a dry run until executors are trusted.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Final, NamedTuple

from policies.catalog import ACTION_PARAMS, RESTART_OPERATIONS
from policies.loader import PolicySet
from policies.model import ActionSpec
from policies.params import action_id_for, context_for, param_problem, rejected_action_id, variables_for
from policies.validate import is_valid
from schemas.records import ActionEvent, ActionState, Approval, ProposedAction, RcaResult, Risk

_ALWAYS_HIGH_TARGET: Final = re.compile(r"etcd|prometheus", re.IGNORECASE)


class Decisions(NamedTuple):
    """``actions``: accepted (approved / awaiting_approval); ``rejected``: dropped, state ``rejected``.

    Both go to the actions topic, so every proposal leaves a record; the executor runs only
    approved ones. A rejected record keeps only the parameters that passed their format (the
    reason names the others), so no unvalidated text is published as a parameter.
    """

    actions: list[ActionEvent]
    rejected: list[ActionEvent]


def cooldown_key(tenant: str, fingerprint: str, action_name: str) -> str:
    """Key of the "last run" table the caller keeps, so one target is not acted on again too soon."""
    return f"{tenant}:{fingerprint}:{action_name}"


def effective_risk(spec: ActionSpec, params: Mapping[str, str]) -> Risk:
    """The policy's risk of ``spec`` with ``params``: restarting etcd or a Prometheus is always high."""
    if (spec.tool, spec.operation) in RESTART_OPERATIONS and any(
        _ALWAYS_HIGH_TARGET.search(value) for value in params.values()
    ):
        return Risk.HIGH
    return spec.risk


def approval_needed(spec: ActionSpec, risk: Risk) -> bool:
    """Whether a human must approve: high risk, or the policy requires it."""
    return risk is Risk.HIGH or spec.approval is Approval.REQUIRED


def decide(
    result: RcaResult,
    policies: PolicySet,
    now: datetime,
    last_run: Mapping[str, datetime] | None = None,
    went_ahead: Mapping[str, str] | None = None,
) -> Decisions:
    """Check each proposed action against the policy of the incident's class and give it its first state.

    ``last_run`` maps :func:`cooldown_key` to when that action last ran; an action inside its
    cooldown is rejected. ``went_ahead`` maps the same key to the id of the action that went ahead
    then: the same action again (this incident's analysis re-delivered after a worker restart, or the
    LLM proposing what the triage did) is already decided, so it gets no record at all rather than a
    rejection "in cooldown" of itself. Read/low-risk actions with automatic approval are ``approved``; high-risk
    ones or those requiring approval are ``awaiting_approval`` until ``now`` + the approval TTL.
    """
    incident = result.incident
    accepted: list[ActionEvent] = []
    rejected: list[ActionEvent] = []
    cls = policies.get(incident.alert_class)
    if cls is None or result.alert_class != incident.alert_class:
        why = (
            f"no policy class {incident.alert_class!r}: nothing may run"
            if cls is None
            else f"result class {result.alert_class!r} differs from the incident's {incident.alert_class!r}"
        )
        return Decisions([], [_rejected(result, action, why, now) for action in result.actions])

    variables = variables_for(cls, incident)
    context = context_for(incident)
    seen: set[str] = set()
    for action in result.actions:
        spec = cls.action(action.name)
        reason: str | None = None
        if spec is None:
            reason = policies.disabled.get((cls.id, action.name)) or \
                f"action {action.name!r} is not in the policy for class {cls.id}"
        elif (action.tool, action.operation) != (spec.tool, spec.operation):
            reason = f"action {action.name} must be {spec.tool}.{spec.operation}, not {action.tool}.{action.operation}"
        elif action.name in seen:
            reason = f"action {action.name} proposed twice for one incident"
        else:
            reason = param_problem(cls, spec, action.params, variables)
        if reason is None and spec is not None:
            for expr in cls.preconditions.get(spec.name, []):
                if expr.evaluate(context) is not True:
                    reason = f"precondition not met: {expr.source}"
                    break
        key = cooldown_key(incident.tenant, incident.fingerprint, action.name)
        if reason is None and spec is not None and (went_ahead or {}).get(key) == action_id_for(
            incident.incident_id, spec.name
        ):
            seen.add(action.name)
            continue
        if reason is None and spec is not None and last_run:
            last = last_run.get(key)
            if last is not None and now - last < spec.cooldown:
                reason = f"in cooldown until {(last + spec.cooldown).isoformat()}"
        if reason is not None or spec is None:
            rejected.append(_rejected(result, action, reason or "not allowed", now))
            continue
        seen.add(action.name)

        risk = effective_risk(spec, action.params)
        needs_approval = approval_needed(spec, risk)
        accepted.append(
            ActionEvent(
                tenant=incident.tenant,
                action_id=action_id_for(incident.incident_id, spec.name),
                incident_id=incident.incident_id,
                alert_class=cls.id,
                name=spec.name,
                tool=spec.tool,
                operation=spec.operation,
                params=dict(action.params),
                risk=risk,
                state=ActionState.AWAITING_APPROVAL if needs_approval else ActionState.APPROVED,
                dry_run=True,
                reason=spec.description,
                at=now,
                expires_at=now + policies.approval_ttl(cls.id, spec.name) if needs_approval else None,
                on_failure=spec.on_failure,
            )
        )
    return Decisions(accepted, rejected)


def _rejected(result: RcaResult, action: ProposedAction, reason: str, now: datetime) -> ActionEvent:
    formats = ACTION_PARAMS.get((action.tool, action.operation), {})
    kept = {k: v for k, v in action.params.items() if k in formats and is_valid(formats[k], v)}
    dropped = sorted(set(action.params) - set(kept))
    if dropped:
        reason += f" (parameter(s) not recorded: {', '.join(dropped)})"
    return ActionEvent(
        tenant=result.incident.tenant,
        action_id=rejected_action_id(result.incident.incident_id, action),
        incident_id=result.incident.incident_id,
        alert_class=result.incident.alert_class,
        name=action.name,
        tool=action.tool,
        operation=action.operation,
        params=kept,
        risk=action.risk,
        state=ActionState.REJECTED,
        dry_run=True,
        reason=reason,
        at=now,
    )
