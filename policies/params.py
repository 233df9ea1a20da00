"""Action parameters: rendered from the incident for triage, re-checked against the policy for decide.

Both sides use the same functions, so an action proposed by the policy always passes decide, and
one proposed by anyone else (an LLM) passes only if it is what the policy would have proposed
(bound parameters) or one of the policy's allowed choices (free parameters).
"""

from __future__ import annotations

import hashlib
from typing import Any

from policies.catalog import ACTION_PARAMS
from policies.compiled import CompiledClass
from policies.errors import LabelValidationError
from policies.model import ActionSpec
from policies.render import ResolvedVars, parse_template, render, resolve_vars
from policies.validate import is_valid, preview
from schemas.records import Incident, ProposedAction


def action_id_for(incident_id: str, action_name: str) -> str:
    """Deterministic action id: one action of a given name per incident, idempotent downstream."""
    joined = "\x1f".join(("action", incident_id, action_name))
    return hashlib.sha256(joined.encode("utf-8")).hexdigest()[:24]


def rejected_action_id(incident_id: str, action: ProposedAction) -> str:
    """Id of a rejected proposal: distinct from the accepted action of the same name (its own
    record must not overwrite that action's state) and stable for the same proposal."""
    parts = ["rejected", incident_id, action.name, action.tool, action.operation]
    parts += [f"{k}={v}" for k, v in sorted(action.params.items())]
    return hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()[:24]


def variables_for(cls: CompiledClass, incident: Incident) -> ResolvedVars:
    return resolve_vars(
        cls.vars, incident.event, {"incident_id": incident.incident_id, "alert_class": incident.alert_class}
    )


def context_for(incident: Incident) -> dict[str, Any]:
    """What preconditions and thresholds may read about the incident (CONTEXT_NAMES)."""
    event = incident.event
    return {
        "alert": event.alert,
        "status": str(event.status),
        "severity": event.severity,
        "labels": dict(event.labels),
        "count": incident.count,
        "times": event.metrics.times,
    }


def render_params(spec: ActionSpec, variables: ResolvedVars) -> dict[str, str]:
    """The parameters the policy proposes; raise LabelValidationError naming what could not be rendered."""
    formats = ACTION_PARAMS[(spec.tool, spec.operation)]
    out: dict[str, str] = {}
    for name, param in spec.params.items():
        if param.template is not None:
            missing = [ph.var for ph in parse_template(param.template) if ph.var not in variables.values]
            if missing:
                raise LabelValidationError(variables.problems.get(missing[0], f"no value for {missing[0]}"))
            value = render(param.template, variables.values)
        else:
            value = param.value if param.value is not None else param.default or ""
        if not is_valid(formats[name], value):
            raise LabelValidationError(f"params.{name} {preview(value)} is not a valid {formats[name]}")
        out[name] = value
    return out


def param_problem(
    cls: CompiledClass, spec: ActionSpec, params: dict[str, str], variables: ResolvedVars | None
) -> str | None:
    """Why ``params`` are not allowed for ``spec`` on this incident, or None when they are.

    ``variables`` None: no incident at hand (the executor's re-check of a signed decision); parameters bound
    to the incident by a template are then only checked for their format, everything else as usual.
    """
    formats = ACTION_PARAMS[(spec.tool, spec.operation)]
    unknown = sorted(set(params) - set(spec.params))
    if unknown:
        return f"parameter(s) not in policy: {', '.join(unknown)}"
    missing = sorted(set(spec.params) - set(params))
    if missing:
        return f"missing parameter(s): {', '.join(missing)}"
    for name, param in spec.params.items():
        value = params[name]
        if not is_valid(formats[name], value):
            return f"params.{name} {preview(value)} is not a valid {formats[name]}"
        if param.template is not None:
            if variables is None:
                continue
            try:
                expected = render(param.template, variables.values)
            except LabelValidationError as exc:
                return f"params.{name} cannot be checked against the incident: {exc.message}"
            if value != expected:
                # Both values passed their format above, so they are bounded and safe to show whole.
                return f"params.{name} {value!r} is not the incident's target {expected!r}"
        elif param.value is not None:
            if value != param.value:
                return f"params.{name} {value!r} is not the policy's value {param.value!r}"
        else:
            pattern = cls.param_patterns.get((spec.name, name))
            if param.allowed is not None and value not in param.allowed:
                return f"params.{name} {value!r} is not one of {param.allowed}"
            if pattern is not None and pattern.fullmatch(value) is None:
                return f"params.{name} {value!r} does not match {pattern.pattern!r}"
    return None
