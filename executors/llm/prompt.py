"""Build the chat messages from the packaged prompt files; untrusted text only inside delimited JSON blocks."""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import cache
from importlib import resources
from string import Template
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from executors.llm.gate import AllowedAction
from executors.llm.provider import ChatMessage
from schemas.operations import EVIDENCE, by_family
from schemas.records import AlertEvent, Evidence

DEFAULT_EVIDENCE_TOOLS: dict[str, tuple[str, ...]] = by_family(op for op in EVIDENCE if op.offered_to_llm)
"""Read-only tools the model may ask for: the catalogue's evidence offered to the LLM (``schemas.operations``)."""

_MAX_FIELD = 4000


class PastIncident(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    incident_id: str
    alert: str
    diagnosis: str
    cause: str = ""
    resolution: str = ""


class ClassBrief(BaseModel):
    """What the policy says about the incident's class, rendered for this incident by the caller."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    title: str = ""
    description: str = ""
    runbooks: list[str] = Field(default_factory=list)
    known_causes: list[str] = Field(default_factory=list)
    allowed_actions: list[AllowedAction] = Field(default_factory=list)
    evidence_tools: dict[str, tuple[str, ...]] = Field(default_factory=lambda: dict(DEFAULT_EVIDENCE_TOOLS))


@cache
def prompt_text(name: str) -> str:
    return resources.files("executors.llm.prompts").joinpath(name).read_text(encoding="utf-8")


def data_block(value: Any) -> str:
    """JSON with ``<``, ``>`` and ``&`` escaped, so untrusted text cannot close its delimiter block."""
    text = json.dumps(value, ensure_ascii=False, indent=1, default=str)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _clip(text: str) -> str:
    return text if len(text) <= _MAX_FIELD else text[:_MAX_FIELD] + " [truncated]"


def alert_data(event: AlertEvent) -> dict[str, Any]:
    return {
        "alert": _clip(event.alert),
        "severity": _clip(event.severity),
        "status": str(event.status),
        "labels": {_clip(k): _clip(v) for k, v in event.labels.items()},
        "annotations": {_clip(k): _clip(v) for k, v in event.annotations.items()},
        "times": event.metrics.times,
        "first_occur": event.metrics.first_occur.isoformat() if event.metrics.first_occur else None,
        "mail_subject": _clip(event.raw.mail_subject or ""),
    }


def evidence_data(evidence: Sequence[Evidence]) -> list[dict[str, Any]]:
    return [
        {
            "tool": e.tool,
            "operation": e.operation,
            "query": _clip(e.query),
            "status": str(e.status),
            "summary": _clip(e.summary),
            "error": _clip(e.error) if e.error else None,
        }
        for e in evidence
    ]


def _allowed_actions_text(actions: Sequence[AllowedAction]) -> str:
    if not actions:
        return "(none: propose no action)"
    lines = []
    for action in actions:
        lines.append(f"- {action.name}: {action.description} (risk {action.risk}, approval {action.approval})")
        for name, rule in action.params.items():
            if rule.values is not None:
                allowed = " | ".join(json.dumps(v, ensure_ascii=False) for v in rule.values)
            else:
                allowed = f"pattern {rule.pattern}" if rule.pattern else "(none)"
            default = f", default {json.dumps(rule.default, ensure_ascii=False)}" if rule.default else ""
            lines.append(f"    {name}: {allowed}{default}")
    return "\n".join(lines)


#: How each tool's ``query`` is written, so a model's evidence_plan entry can run as asked.
_QUERY_FORMS: dict[str, str] = {
    "prom": "query: PromQL",
    "k8s": "query: key=value pairs, e.g. namespace=<ns> pod=<pod> (pods: selector=<label>=<value>)",
    "es": 'query: field:"value" AND ... AND @timestamp:[now-15m TO now]',
}


def _evidence_tools_text(tools: dict[str, tuple[str, ...]]) -> str:
    lines = []
    for tool, ops in tools.items():
        form = _QUERY_FORMS.get(tool)
        lines.append(f"- {tool}: {', '.join(ops)}" + (f" ({form})" if form else ""))
    return "\n".join(lines) or "(none)"


def build_messages(
    brief: ClassBrief,
    event: AlertEvent,
    evidence: Sequence[Evidence],
    similar: Sequence[PastIncident] = (),
) -> list[ChatMessage]:
    user = Template(prompt_text("user.txt")).substitute(
        class_id=brief.id,
        class_title=brief.title,
        class_description=brief.description,
        runbooks="\n".join(f"- {url}" for url in brief.runbooks) or "(none)",
        known_causes="\n".join(f"- {c}" for c in brief.known_causes) or "(none)",
        allowed_actions=_allowed_actions_text(brief.allowed_actions),
        evidence_tools=_evidence_tools_text(brief.evidence_tools),
        alert_json=data_block(alert_data(event)),
        evidence_json=data_block(evidence_data(evidence)),
        past_json=data_block([p.model_dump() for p in similar]),
    )
    return [ChatMessage(role="system", content=prompt_text("system.txt")), ChatMessage(role="user", content=user)]
