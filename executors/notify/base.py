"""The approval-channel seam: two methods, and a lazy name → "module:Class" registry of channels.

Adding a channel is one module with a class that has these two methods plus one
line in :data:`CHANNELS`.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from executors.notify.errors import NotifyError
from schemas.records import ActionEvent, RcaResult


@dataclass(frozen=True, slots=True)
class MessageRef:
    """Where a sent message lives, for later updates (Slack: channel id + ts; DingTalk: nothing to edit)."""

    channel: str
    conversation: str | None = None
    ts: str | None = None


class ApprovalChannel(Protocol):
    """Posts the first response (diagnosis + approve/reject controls) and later states of its actions."""

    async def notify_first_response(
        self, rca: RcaResult, actions: Sequence[ActionEvent], links: Mapping[str, str] | None = None
    ) -> MessageRef: ...

    async def update(self, ref: MessageRef, rca: RcaResult, actions: Sequence[ActionEvent]) -> None:
        """Show ``actions``' current states: an edit of ``ref`` where the channel can edit, else a new message
        (callers then pass only the actions that changed, to keep it short)."""
        ...


CHANNELS: Mapping[str, str] = {
    "slack": "executors.notify.slack:SlackChannel",
    "dingtalk": "executors.notify.dingtalk:DingTalkChannel",
}


def channel_class(name: str, channels: Mapping[str, str] = CHANNELS) -> type:
    """The class registered as ``name``, imported on first use."""
    try:
        target = channels[name]
    except KeyError:
        raise NotifyError(f"no approval channel {name!r}; known: {', '.join(sorted(channels))}") from None
    module_name, _, attr = target.partition(":")
    cls = getattr(importlib.import_module(module_name), attr, None)
    if not isinstance(cls, type):
        raise NotifyError(f"channel entry {name!r} -> {target!r} is not a class")
    return cls
