"""Turning untrusted text (labels, diagnoses, LLM output) into safe message text for each channel."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from schemas.records import ActionEvent, ActionState, RcaResult

#: States a person (or the approval window, or the incident's resolution) put an action in: shown with their time.
DECISION_STATES = frozenset({ActionState.APPROVED, ActionState.REJECTED, ActionState.EXPIRED, ActionState.WITHDRAWN})

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
#: DingTalk's markdown subset has no reliable backslash escapes, so the characters that could open a
#: link, an image or HTML are swapped for full-width look-alikes; emphasis stays harmless.
_MD_SWAP = str.maketrans({"[": "［", "]": "］", "<": "‹", ">": "›", "`": "'", "\\": "＼"})


def clip(text: str, limit: int) -> str:
    """At most ``limit`` characters, control characters removed, an ellipsis when cut."""
    text = _CONTROL.sub("", text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def slack_escape(text: str, limit: int = 500) -> str:
    """Slack mrkdwn: escape ``& < >`` so no text can form a link, mention or ``<!channel>``."""
    return clip(text, limit).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def md_escape(text: str, limit: int = 500) -> str:
    """DingTalk markdown: nothing can form a link, image or HTML tag; one line."""
    return clip(text, limit).replace("\n", " ").translate(_MD_SWAP)


def utc(moment: datetime) -> str:
    aware = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return aware.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def params_line(action: ActionEvent) -> str:
    """``k=v`` pairs, sorted, unescaped (each channel escapes the result)."""
    return " ".join(f"{k}={v}" for k, v in sorted(action.params.items())) or "(no parameters)"


def with_runbook(rca: RcaResult, link: str) -> RcaResult:
    """The result with its class's runbook after the diagnosis (docs/runbooks/<class>.md or the deployment's
    copy): the on-call engineer's next click. The link comes from configuration and the policy's class id."""
    if not link:
        return rca
    return rca.model_copy(update={"diagnosis": f"{rca.diagnosis}\nRunbook: {clip(link, 300)}"})


def with_history(rca: RcaResult, history: str) -> RcaResult:
    """The result as a first response shows it: the knowledge base's ``seen 3 times before; last fixed by X``
    after the diagnosis (the record on rca-result stays as it is). Each channel escapes the text."""
    if not history:
        return rca
    return rca.model_copy(update={"diagnosis": f"{rca.diagnosis}\nHistory: {clip(history, 200)}"})
