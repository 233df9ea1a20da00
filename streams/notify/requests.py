"""The notify agent's input: what to show (a result and its actions, a decision or outcome) or a prune tick.

Agents of every partition ask for notifications through one internal topic keyed
``tenant:incident-id``, so the partition that owns an incident's message row is
the only one that posts or edits it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from pydantic import ValidationError

from schemas.records import ActionEvent, ActionState, RcaResult
from streams.errors import StreamsError
from streams.notify.notifier import remembered_result


class NotifyRequestError(StreamsError):
    """A notify-input record that is not one of ours (nothing to retry: it is skipped and logged)."""

    retriable = False


@dataclass(frozen=True, slots=True)
class PruneTick:
    """Housekeeping: forget what is older than the retention, in the partition the tick arrived on."""


NotifyRequest = tuple[RcaResult, list[ActionEvent]] | ActionEvent | PruneTick


def result_request(result: RcaResult, actions: Sequence[ActionEvent]) -> bytes:
    """The worker's notify-input record for a result and the actions decided for it."""
    return json.dumps({"result": remembered_result(result),
                       "actions": [a.model_dump(mode="json") for a in actions]}, ensure_ascii=False).encode()


def decided_request(action: ActionEvent) -> bytes:
    """The worker's notify-input record for an action that stopped waiting for approval."""
    return json.dumps({"decided": action.model_dump(mode="json")}, ensure_ascii=False).encode()


PRUNE_TICK = b'{"prune": true}'


def parse_request(raw: bytes) -> NotifyRequest:
    """What a notify-input record asks for; :class:`NotifyRequestError` if it is none of the three."""
    try:
        data = json.loads(raw)
        if not isinstance(data, dict):
            raise NotifyRequestError("notify request is not a JSON object")
        if data.get("prune") is True:
            return PruneTick()
        if "decided" in data:
            return ActionEvent.model_validate(data["decided"])
        if "result" in data:
            return RcaResult.model_validate(data["result"]), [ActionEvent.model_validate(a)
                                                              for a in data.get("actions") or []]
    except (ValueError, ValidationError) as exc:
        raise NotifyRequestError(f"unreadable notify request: {type(exc).__name__}") from exc
    raise NotifyRequestError("notify request names no result, decision or prune tick")


#: Final execution states an incident's message shows (succeeded / failed / rolled back).
_OUTCOMES = frozenset({ActionState.SUCCEEDED, ActionState.FAILED, ActionState.ROLLED_BACK})


def shows_outcome(action: ActionEvent) -> bool:
    """Whether ``action`` is an execution outcome the incident's message shows."""
    return action.state in _OUTCOMES
