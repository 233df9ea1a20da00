"""A stand-in for the Slack Web API, written from Slack's documentation (https://api.slack.com/methods).

Every method answers HTTP 200 with ``{"ok": true, ...}`` or ``{"ok": false, "error": "<code>"}``; a request
without the bot token (``Authorization: Bearer <token>``) gets ``invalid_auth``; a throttled one HTTP 429 with
``Retry-After``. Methods: ``chat.postMessage``, ``chat.update``, ``conversations.open`` (``users``: one user id
of the workspace, else ``user_not_found`` / ``users_list_not_supplied``; answers ``{"channel": {"id": "D…"}}``,
the same id for the same user every time). A message to a direct-message channel nobody opened is
``channel_not_found``. Interaction ``response_url`` posts are recorded too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

BOT_TOKEN = "test-bot-token"


@dataclass
class SlackApiStandIn:
    """chat.postMessage / chat.update / conversations.open as the Web API answers them, plus response_url."""

    token: str = BOT_TOKEN
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    error: str | None = None
    throttled: bool = False
    #: The workspace's members (user ids): conversations.open knows only them.
    users: frozenset[str] = frozenset({"U1", "U2", "U0ALICE", "U0CAROL"})
    #: Direct-message channels opened so far: channel id -> user id.
    dms: dict[str, str] = field(default_factory=dict)

    def direct_messages(self, user: str) -> list[dict[str, Any]]:
        """The messages posted into ``user``'s direct-message channel."""
        return [body for name, body in self.calls
                if name == "chat.postMessage" and self.dms.get(str(body.get("channel"))) == user]

    def _open(self, body: dict[str, Any]) -> Response:
        users = [u for u in str(body.get("users", "")).split(",") if u]
        if not users:
            return JSONResponse({"ok": False, "error": "users_list_not_supplied"})
        if len(users) != 1 or users[0] not in self.users:
            return JSONResponse({"ok": False, "error": "user_not_found"})
        channel = f"D{users[0]}"
        self.dms[channel] = users[0]
        return JSONResponse({"ok": True, "channel": {"id": channel}})

    async def method(self, request: Request) -> Response:
        name = request.path_params["method"]
        if self.throttled:
            return JSONResponse({"ok": False, "error": "ratelimited"}, status_code=429, headers={"Retry-After": "3"})
        if request.headers.get("authorization") != f"Bearer {self.token}":
            return JSONResponse({"ok": False, "error": "invalid_auth"})
        body = json.loads(await request.body())
        self.calls.append((name, body))
        if self.error:
            return JSONResponse({"ok": False, "error": self.error})
        if name == "conversations.open":
            return self._open(body)
        if name == "chat.postMessage":
            channel = str(body.get("channel", ""))
            if channel.startswith("D") and channel not in self.dms:
                return JSONResponse({"ok": False, "error": "channel_not_found"})
            return JSONResponse({"ok": True, "channel": channel if channel in self.dms else "C0123",
                                 "ts": "1764072000.000100", "message": body})
        if name == "chat.update":
            return JSONResponse({"ok": True, "channel": body["channel"], "ts": body["ts"]})
        return JSONResponse({"ok": False, "error": "unknown_method"})

    async def response_url(self, request: Request) -> Response:
        self.calls.append(("response_url", json.loads(await request.body())))
        return JSONResponse({"ok": True})

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/api/{method}", self.method, methods=["POST"]),
                                 Route("/actions/{rest:path}", self.response_url, methods=["POST"])])
