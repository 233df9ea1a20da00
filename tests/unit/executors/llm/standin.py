"""A scripted OpenAI-compatible chat-completions server (Starlette, reached through httpx.ASGITransport).

Each POST /chat/completions takes the next scripted :class:`Reply`; requests are recorded so tests
can check what the client sent. ``supports_json_schema=False`` makes it answer like servers that
only know ``json_object`` (a 400 naming response_format), without using up a reply.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from executors.llm import LlmClient, LlmConfig
from executors.llm.resilience import Clock, Sleep


@dataclass
class Reply:
    content: str | None = None
    status: int = 200
    finish_reason: str = "stop"
    headers: dict[str, str] = field(default_factory=dict)
    no_choices: bool = False
    hang: bool = False
    delay: float = 0.0
    text: str | None = None


@dataclass
class ChatStandIn:
    replies: list[Reply] = field(default_factory=list)
    supports_json_schema: bool = True
    model: str = "qwen-plus-2025-09-11"
    requests: list[dict[str, Any]] = field(default_factory=list)
    auth_headers: list[str] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    pause: int = 0

    async def chat(self, request: Request) -> Response:
        body = json.loads(await request.body())
        self.auth_headers.append(request.headers.get("authorization", ""))
        fmt = (body.get("response_format") or {}).get("type")
        if fmt == "json_schema" and not self.supports_json_schema:
            self.requests.append(body)
            return JSONResponse(
                {
                    "error": {
                        "message": "<400> InternalError.Algo.InvalidParameter: 'json_schema' is not supported "
                        "for response_format.type",
                        "type": "invalid_request_error",
                    }
                },
                status_code=400,
            )
        self.requests.append(body)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            for _ in range(self.pause):
                await asyncio.sleep(0)
            reply = self.replies.pop(0) if self.replies else Reply(status=500, text="script exhausted")
            if reply.hang:
                await asyncio.Event().wait()
            if reply.delay:
                await asyncio.sleep(reply.delay)
            if reply.status != 200:
                return Response(
                    reply.text or json.dumps({"error": {"message": "scripted error"}}),
                    status_code=reply.status,
                    headers=reply.headers,
                )
            choices = (
                []
                if reply.no_choices
                else [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": reply.content},
                        "finish_reason": reply.finish_reason,
                    }
                ]
            )
            return JSONResponse(
                {
                    "id": "chatcmpl-1",
                    "object": "chat.completion",
                    "model": self.model,
                    "choices": choices,
                    "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120},
                }
            )
        finally:
            self.in_flight -= 1

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/v1/chat/completions", self.chat, methods=["POST"])])

    def http(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app()), base_url="http://llm.test")


@dataclass
class FakeClock:
    """Monotonic time that only moves when the code under test sleeps (or the test advances it)."""

    now: float = 1000.0
    slept: list[float] = field(default_factory=list)

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


SECRET = "sk-test-0123456789abcdef"


def make_client(
    standin: ChatStandIn, http: httpx.AsyncClient, clock: FakeClock | None = None, **overrides: Any
) -> LlmClient:
    overrides.setdefault("base_url", "http://llm.test/v1")
    config = LlmConfig(api_key=SECRET, **overrides)
    fake = clock or FakeClock()
    sleep: Sleep = fake.sleep
    tick: Clock = fake
    return LlmClient(config, http, clock=tick, sleep=sleep)


def answer_json(
    actions: list[dict[str, Any]] | None = None,
    summary: str = "etcd WAL fsync is slow on the node's disk",
    cause: str = "slow disk: fsync p99 above 500ms",
    confidence: float = 0.8,
    evidence_plan: list[dict[str, str]] | None = None,
) -> str:
    return json.dumps(
        {
            "evidence_plan": evidence_plan or [],
            "diagnosis": {"summary": summary, "cause": cause, "confidence": confidence},
            "actions": actions or [],
            "rollback": ["collect_diagnostics: nothing to undo"],
        }
    )
