"""The chat end of a load run: the Slack Web API stand-in of the tests, noting when each first response arrived.

The first thing a person sees of an alert is the incident's first response in chat (docs/approvals.md), posted
by the worker's notify agent after decide. So mail → notification is measured where it lands: the wall clock of
each ``chat.postMessage`` arriving at the stand-in, matched to its incident by the id the message names.
"""

from __future__ import annotations

import json
import re
import threading
import time

from starlette.requests import Request
from starlette.responses import Response

from tests.support.slack import BOT_TOKEN, SlackApiStandIn

__all__ = ["BOT_TOKEN", "StampedSlack", "incident_of"]

#: How the Slack message names its incident (executors/notify/slack.py): ``incident `<id>```.
_INCIDENT = re.compile(r"incident `([^`]+)`")


def incident_of(body: dict[str, object]) -> str | None:
    """The incident a posted message is about, from its text and blocks."""
    found = _INCIDENT.search(json.dumps(body, ensure_ascii=False))
    return found.group(1) if found else None


class StampedSlack(SlackApiStandIn):
    """:class:`SlackApiStandIn` that keeps, per incident, when its first message arrived (ms, wall clock),
    and forgets the bodies (a long run posts thousands)."""

    def __init__(self) -> None:
        super().__init__()
        self.first_post_ms: dict[str, float] = {}
        self.posts = 0
        self.updates = 0
        self._lock = threading.Lock()

    async def method(self, request: Request) -> Response:
        at = time.time() * 1000
        name = request.path_params["method"]
        if name in ("chat.postMessage", "chat.update"):
            body = json.loads(await request.body())  # Starlette keeps the body: the stand-in reads it again
            incident = incident_of(body) if name == "chat.postMessage" else None
            with self._lock:
                if name == "chat.update":
                    self.updates += 1
                else:
                    self.posts += 1
                    if incident is not None:
                        self.first_post_ms.setdefault(incident, at)
        response = await super().method(request)
        self.calls.clear()  # nothing here reads them back
        return response
