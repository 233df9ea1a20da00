"""Per-tenant policy overlays: a tenant may only tighten the base policy, never loosen it.

A deployment shares one remediation policy file; a tenant's overlay (a small YAML file named by
``tenants.<name>.policy_overlay``) switches off classes or actions, raises risk, requires approval,
lengthens cooldowns, shortens approval TTLs, narrows a parameter's allowed values and makes a
threshold harder to meet. Anything that would loosen the base (lower risk, drop approval, widen a
parameter, raise a limit) is refused at load time with an error naming the field, because an
overlay is data that a tenant's operators edit, and a typo there must never let an action run that
the base policy holds back.
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from policies.checks import compile_document
from policies.errors import PolicyError, PolicyFileError
from policies.loader import PolicySet
from policies.model import (
    ActionSpec,
    ClassPolicy,
    Duration,
    Identifier,
    NonEmpty,
    ParamSpec,
    Threshold,
    format_duration,
)
from policies.yamlsource import format_path, load_yaml
from schemas.records import Approval, Risk

_RISK_ORDER: Final = {Risk.READ: 0, Risk.LOW: 1, Risk.HIGH: 2}
#: The threshold form an overlay may retune: one comparison of a variable with a number.
_COMPARISON: Final = re.compile(
    r"^\s*(?P<var>[a-z_][a-z0-9_]*)\s*(?P<op>>=|<=|>|<)\s*(?P<num>-?[0-9]+(?:\.[0-9]+)?)\s*$")


#: (field path, message): one refused or impossible change.
Problem = tuple[tuple[str | int, ...], str]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ParamOverlay(_Model):
    #: The values this tenant allows; must be a subset of the base's ``allowed``.
    allowed: list[NonEmpty] = Field(min_length=1)


class ActionOverlay(_Model):
    risk: Risk | None = None
    approval: Approval | None = None
    cooldown: Duration | None = None
    approval_ttl: Duration | None = None
    anonymous_approval: Literal[False] | None = None
    params: dict[str, ParamOverlay] = Field(default_factory=dict)


class ClassOverlay(_Model):
    #: Actions of the class that never run for this tenant (proposals are recorded as rejected).
    disable_actions: list[Identifier] = Field(default_factory=list)
    #: Threshold id -> new number of its comparison; the threshold must then hold in fewer cases.
    thresholds: dict[Identifier, float] = Field(default_factory=dict)
    actions: dict[Identifier, ActionOverlay] = Field(default_factory=dict)


class PolicyOverlay(_Model):
    version: Literal[1]
    #: Classes none of whose actions run for this tenant (alerts are still triaged and notified).
    disable_classes: list[Identifier] = Field(default_factory=list)
    classes: dict[Identifier, ClassOverlay] = Field(default_factory=dict)


def load_overlay(base: PolicySet, path: Path, tenant: str) -> PolicySet:
    """The tenant's effective policy: ``base`` with the overlay file at ``path`` applied; PolicyFileError."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyFileError([PolicyError(f"cannot read: {exc}", file=str(path))]) from exc
    return apply_overlay(base, text, tenant, file=str(path))


def apply_overlay(base: PolicySet, text: str, tenant: str, file: str = "<overlay>") -> PolicySet:
    """Validate overlay YAML against ``base`` and compile the tightened policy (every problem is reported)."""
    data, lines = load_yaml(text, file)
    try:
        overlay = PolicyOverlay.model_validate(data)
    except ValidationError as exc:
        raise PolicyFileError([
            PolicyError(str(err.get("msg", "invalid value")), file=file,
                        line=lines.line_of(tuple(p for p in err["loc"] if isinstance(p, str | int))),
                        field=format_path(tuple(p for p in err["loc"] if isinstance(p, str | int))) or None)
            for err in exc.errors()
        ]) from exc
    problems: list[Problem] = []
    disabled: dict[tuple[str, str], str] = {}
    known = {c.id for c in base.document.classes}
    for i, name in enumerate(overlay.disable_classes):
        if name not in known:
            problems.append((("disable_classes", i), f"{name!r} is not a class of the base policy"))
    for name in overlay.classes:
        if name not in known:
            problems.append((("classes", name), f"{name!r} is not a class of the base policy"))
    classes = [
        _tightened_class(cls, overlay.classes.get(cls.id, ClassOverlay()), cls.id in overlay.disable_classes,
                         base, tenant, disabled, problems)
        for cls in base.document.classes
    ]
    if problems:
        raise PolicyFileError([
            PolicyError(message, file=file, line=lines.line_of(path), field=format_path(path))
            for path, message in problems
        ])
    document = base.document.model_copy(update={"classes": classes})
    compiled, compile_problems = compile_document(document)
    if compile_problems:
        raise PolicyFileError([PolicyError(p.message, file=file, field=format_path(p.path)) for p in compile_problems])
    return PolicySet(document, compiled, f"{base.source}+{file}", disabled=disabled)


def _tightened_class(
    cls: ClassPolicy,
    patch: ClassOverlay,
    class_off: bool,
    base: PolicySet,
    tenant: str,
    disabled: dict[tuple[str, str], str],
    problems: list[Problem],
) -> ClassPolicy:
    names = {a.name for a in cls.actions}
    for i, name in enumerate(patch.disable_actions):
        if name not in names:
            problems.append((("classes", cls.id, "disable_actions", i), f"{name!r} is not an action of class {cls.id}"))
    for name in patch.actions:
        if name not in names:
            problems.append((("classes", cls.id, "actions", name), f"{name!r} is not an action of class {cls.id}"))
    for name in patch.thresholds:
        if name not in {t.id for t in cls.thresholds}:
            problems.append((("classes", cls.id, "thresholds", name), f"{name!r} is not a threshold of class {cls.id}"))
    off = names if class_off else set(patch.disable_actions)
    actions = []
    for action in cls.actions:
        if action.name in off:
            disabled[(cls.id, action.name)] = (
                f"class {cls.id} is disabled for tenant {tenant} by its policy overlay" if class_off
                else f"action {action.name} is disabled for tenant {tenant} by its policy overlay")
            continue
        at = ("classes", cls.id, "actions", action.name)
        actions.append(_tightened_action(action, patch.actions.get(action.name), base, cls.id, at, problems))
    thresholds = [_tightened_threshold(t, patch.thresholds.get(t.id), ("classes", cls.id, "thresholds", t.id),
                                       problems) for t in cls.thresholds]
    return cls.model_copy(update={"actions": actions, "thresholds": thresholds})


def _tightened_action(
    action: ActionSpec,
    patch: ActionOverlay | None,
    base: PolicySet,
    class_id: str,
    at: tuple[str | int, ...],
    problems: list[Problem],
) -> ActionSpec:
    if patch is None:
        return action
    update: dict[str, Any] = {}
    if patch.risk is not None:
        if _RISK_ORDER[patch.risk] < _RISK_ORDER[action.risk]:
            problems.append(((*at, "risk"), f"{patch.risk.value!r} is lower than the base policy's "
                             f"{action.risk.value!r}; an overlay may only raise risk"))
        update["risk"] = patch.risk
        if patch.risk is Risk.HIGH:
            update["approval"] = Approval.REQUIRED  # high risk always waits for a person
    if patch.approval is not None:
        if patch.approval is Approval.AUTO and (action.approval is not Approval.AUTO or "approval" in update):
            problems.append(((*at, "approval"), "the base policy (or this overlay's risk) requires approval "
                             f"({action.approval.value!r}); an overlay may not remove it"))
        else:
            update["approval"] = patch.approval
    if patch.cooldown is not None:
        if patch.cooldown < action.cooldown:
            problems.append(((*at, "cooldown"), f"{_fmt(patch.cooldown)} is shorter than the base policy's "
                             f"{_fmt(action.cooldown)}; an overlay may only lengthen it"))
        update["cooldown"] = patch.cooldown
    if patch.approval_ttl is not None:
        current = base.approval_ttl(class_id, action.name)
        if patch.approval_ttl > current:
            problems.append(((*at, "approval_ttl"), f"{_fmt(patch.approval_ttl)} is longer than the base policy's "
                             f"{_fmt(current)}; an overlay may only shorten it"))
        update["approval_ttl"] = patch.approval_ttl
    if patch.anonymous_approval is not None:
        update["anonymous_approval"] = False
    if patch.params:
        params = dict(action.params)
        for name, param in patch.params.items():
            where = (*at, "params", name, "allowed")
            spec = action.params.get(name)
            if spec is None:
                problems.append(((*at, "params", name), f"{name!r} is not a parameter of action {action.name}"))
                continue
            if spec.allowed is None:
                problems.append((where, "the base policy does not list allowed values for this parameter, so an "
                                 "overlay cannot narrow it (its values are bound by a template, value or pattern)"))
                continue
            extra = sorted(set(param.allowed) - set(spec.allowed))
            if extra:
                problems.append((where, f"{', '.join(map(repr, extra))} not allowed by the base policy; an "
                                 "overlay may only remove values"))
                continue
            default = spec.default if spec.default in param.allowed else param.allowed[0]
            params[name] = ParamSpec(allowed=list(param.allowed), default=default, pattern=spec.pattern)
        update["params"] = params
    return action.model_copy(update=update)


def _tightened_threshold(
    threshold: Threshold,
    number: float | None,
    at: tuple[str | int, ...],
    problems: list[Problem],
) -> Threshold:
    if number is None:
        return threshold
    match = _COMPARISON.match(threshold.expr)
    if match is None:
        problems.append((at, f"the base threshold {threshold.expr!r} is not one comparison of a variable with a "
                         "number, so an overlay cannot retune it"))
        return threshold
    old, op = float(match["num"]), match["op"]
    # The threshold must hold in fewer cases: ``x > n`` / ``x >= n`` only with a larger n, ``<`` with a smaller.
    looser = number < old if op in (">", ">=") else number > old
    if looser:
        problems.append((at, f"{number!r} would make '{threshold.expr}' hold more often; an overlay may only "
                         f"make a threshold harder to meet ({'raise' if op in ('>', '>=') else 'lower'} it)"))
        return threshold
    return threshold.model_copy(update={"expr": f"{match['var']} {op} {number!r}"})


def _fmt(value: timedelta) -> str:
    return format_duration(value)
