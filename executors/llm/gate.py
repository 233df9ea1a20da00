"""The policy gate for LLM proposals: only allowed actions, only with allowed parameter values.

The allowed actions arrive as data (the caller renders them from the class policy for this
incident), so this module stays independent of ``policies``. Risk, approval, tool and operation
are always copied from the allowed action, never from the model. ``policies.decide`` checks the
survivors once more; this gate exists so a bad proposal is dropped, with a reason, at the source.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from typing import NamedTuple

from pydantic import BaseModel, ConfigDict, Field

from executors.llm.answer import ActionProposal
from schemas.records import Approval, ProposedAction, Risk

_PREVIEW = 64


class AllowedParam(BaseModel):
    """One parameter: ``values`` lists every allowed value (a single value means "bound to this
    incident"), ``pattern`` is a full-match regex for free values; with neither, nothing is allowed.
    A missing parameter takes ``default``, or the only allowed value."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    values: tuple[str, ...] | None = None
    pattern: str | None = None
    default: str | None = None
    description: str = ""


class AllowedAction(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    description: str = ""
    tool: str
    operation: str
    params: dict[str, AllowedParam] = Field(default_factory=dict)
    risk: Risk = Risk.LOW
    approval: Approval = Approval.AUTO
    rollback: str | None = None


class Rejection(BaseModel):
    """A dropped proposal, for the audit trail; ``name`` is a bounded preview of the model's text."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    reason: str


class GateResult(NamedTuple):
    accepted: list[ProposedAction]
    rejected: list[Rejection]


def action_id(incident_id: str, action_name: str) -> str:
    """Same derivation as ``policies.action_id_for``: one action of a name per incident."""
    joined = "\x1f".join(("action", incident_id, action_name))
    return hashlib.sha256(joined.encode("utf-8")).hexdigest()[:24]


def gate(proposals: Sequence[ActionProposal], allowed: Sequence[AllowedAction], incident_id: str) -> GateResult:
    by_name = {a.name: a for a in allowed}
    accepted: list[ProposedAction] = []
    rejected: list[Rejection] = []
    seen: set[str] = set()
    for proposal in proposals:
        spec = by_name.get(proposal.name)
        reason: str | None
        params: dict[str, str] = {}
        if spec is None:
            reason = "action is not allowed for this alert class"
        elif proposal.name in seen:
            reason = "action proposed twice"
        else:
            params, reason = _check_params(proposal, spec)
        if reason is not None or spec is None:
            rejected.append(Rejection(name=bounded(proposal.name), reason=reason or "not allowed"))
            continue
        seen.add(spec.name)
        accepted.append(
            ProposedAction(
                action_id=action_id(incident_id, spec.name),
                name=spec.name,
                tool=spec.tool,
                operation=spec.operation,
                params=params,
                risk=spec.risk,
                approval=spec.approval,
                rollback=spec.rollback,
                reason=proposal.reason[:500] or spec.description,
            )
        )
    return GateResult(accepted, rejected)


def _check_params(proposal: ActionProposal, spec: AllowedAction) -> tuple[dict[str, str], str | None]:
    given: dict[str, str] = {}
    for param in proposal.params:
        if param.name in given:
            return {}, f"parameter {preview(param.name)} given twice"
        given[param.name] = param.value
    unknown = sorted(set(given) - set(spec.params))
    if unknown:
        return {}, "parameter(s) not in policy: " + ", ".join(preview(u) for u in unknown)
    out: dict[str, str] = {}
    for name, rule in spec.params.items():
        value = given.get(name)
        if value is None:
            if rule.default is not None:
                value = rule.default
            elif rule.values is not None and len(rule.values) == 1:
                value = rule.values[0]
            else:
                return {}, f"missing parameter {name}"
        if rule.values is not None:
            if value not in rule.values:
                return {}, f"params.{name} {preview(value)} is not one of the allowed values {list(rule.values)}"
        elif rule.pattern is not None:
            if re.fullmatch(rule.pattern, value) is None:
                return {}, f"params.{name} {preview(value)} does not match {rule.pattern!r}"
        else:
            return {}, f"params.{name}: the policy allows no value"
        out[name] = value
    return out, None


def bounded(text: str) -> str:
    """Untrusted text cut to a printable, bounded form (control characters become spaces)."""
    cleaned = "".join(ch if ch.isprintable() else " " for ch in text)
    return cleaned if len(cleaned) <= _PREVIEW else cleaned[:_PREVIEW] + "..."


def preview(text: str) -> str:
    """A bounded, printable rendering of untrusted text for reasons and logs."""
    shown = text if len(text) <= _PREVIEW else text[:_PREVIEW] + "..."
    return repr(shown)
