"""The executor's second look at a decided action: would the policy still allow exactly this, and who must approve.

The decide stage checks a proposal against the incident (:func:`policies.decide.decide`);
the executor has no incident, only the signed record. So this re-runs the same
checks that need no incident: the class and action exist, the tool and operation
are the policy's, every parameter is allowed (fixed values, choices, patterns,
formats; a parameter bound to the incident by a template is checked for its
format, its binding is what the signature vouches for), and the risk and failure
handling are the policy's own. A rollback is allowed as the recorded inverse of an
action the policy lists.
"""

from __future__ import annotations

from dataclasses import dataclass

from policies.decide import approval_needed, effective_risk
from policies.loader import PolicySet
from policies.params import param_problem
from schemas.operations import BY_NAME, OperationKind
from schemas.records import ActionEvent

#: Suffix of a rollback's name (``<policy action>:rollback``), as the executor writes it.
ROLLBACK_SUFFIX = ":rollback"


@dataclass(frozen=True, slots=True)
class Verdict:
    """``problem``: why the policy does not allow the record (None: it does); ``needs_approval``: whether a
    person from the tenant's approvers must have decided it."""

    problem: str | None
    needs_approval: bool = False


def recheck(action: ActionEvent, policies: PolicySet) -> Verdict:
    """The policy's verdict on running ``action`` as recorded (see the module docstring for what is checked)."""
    if action.rollback_of is not None:
        return _recheck_rollback(action, policies)
    cls = policies.get(action.alert_class)
    if cls is None:
        return Verdict(f"no policy class {action.alert_class!r}: nothing may run")
    spec = cls.action(action.name)
    if spec is None:
        return Verdict(f"action {action.name!r} is not in the policy for class {cls.id}")
    if (action.tool, action.operation) != (spec.tool, spec.operation):
        return Verdict(f"action {spec.name} must be {spec.tool}.{spec.operation}, "
                       f"not {action.tool}.{action.operation}")
    problem = param_problem(cls, spec, dict(action.params), None)
    if problem is not None:
        return Verdict(problem)
    risk = effective_risk(spec, action.params)
    if action.risk is not risk:
        return Verdict(f"risk {action.risk.value} is not the policy's {risk.value} for {spec.name}")
    if action.on_failure != spec.on_failure:
        return Verdict(f"on_failure {action.on_failure!r} is not the policy's {spec.on_failure!r}")
    return Verdict(None, needs_approval=approval_needed(spec, risk))


def _recheck_rollback(action: ActionEvent, policies: PolicySet) -> Verdict:
    """A rollback undoes a policy action with an inverse operation rcaflow implements (or the same operation)."""
    original = action.name.removesuffix(ROLLBACK_SUFFIX)
    cls = policies.get(action.alert_class)
    spec = cls.action(original) if cls is not None and action.name.endswith(ROLLBACK_SUFFIX) else None
    if spec is None:
        return Verdict(f"rollback {action.name!r} does not undo an action of the policy for class "
                       f"{action.alert_class!r}")
    if action.undo_action != f"{spec.tool}.{spec.operation}":
        return Verdict(f"rollback of {spec.name} must undo {spec.tool}.{spec.operation}, not {action.undo_action}")
    operation = BY_NAME.get(f"{action.tool}.{action.operation}")
    if operation is None or operation.kind is not OperationKind.ACTION:
        return Verdict(f"{action.tool}.{action.operation} is not an operation rcaflow implements")
    if not operation.inverse_only and operation.key != (spec.tool, spec.operation):
        return Verdict(f"{operation.name} is neither an inverse nor {spec.tool}.{spec.operation} itself")
    return Verdict(None)
