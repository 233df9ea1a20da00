"""A misbehaving OpenAI-compatible chat-completions server: the one stand-in the fault suite allows.

Request k gets fault ``FAULTS[k % len(FAULTS)]``: garbage, a hang past the client's timeout, 429 with
Retry-After, 500, truncated JSON, no choices, an empty answer, and now and then a good answer.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections import Counter
from dataclasses import dataclass, field

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.unit.executors.llm.standin import answer_json

FAULTS = ("garbage", "hang", "429", "500", "truncated", "ok", "no_choices", "empty", "html_502")


def _completion(content: str | None, choices: bool = True) -> dict[str, object]:
    return {
        "id": "chatcmpl-faults", "object": "chat.completion", "model": "faults-standin",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}]
        if choices else [],
        "usage": {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20},
    }


@dataclass
class FaultyLlm:
    hang_s: float = 8.0
    served: Counter[str] = field(default_factory=Counter)
    _turn: itertools.count[int] = field(default_factory=itertools.count)

    async def chat(self, request: Request) -> Response:
        await request.body()
        fault = FAULTS[next(self._turn) % len(FAULTS)]
        self.served[fault] += 1
        if fault == "garbage":
            return Response(b"\x00\xffnot json at all \xfe", media_type="application/json")
        if fault == "hang":
            await asyncio.sleep(self.hang_s)
            return JSONResponse(_completion(answer_json()))
        if fault == "429":
            return JSONResponse({"error": {"message": "rate limited"}}, status_code=429, headers={"Retry-After": "1"})
        if fault == "500":
            return JSONResponse({"error": {"message": "internal"}}, status_code=500)
        if fault == "truncated":
            text = json.dumps(_completion(answer_json()))
            return Response(text[: len(text) // 2], media_type="application/json")
        if fault == "no_choices":
            return JSONResponse(_completion(None, choices=False))
        if fault == "empty":
            return JSONResponse(_completion('{"diagnosis": {"summary": '))
        if fault == "html_502":
            return Response(b"<html><body>502 Bad Gateway</body></html>", status_code=502, media_type="text/html")
        return JSONResponse(_completion(answer_json()))

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/v1/chat/completions", self.chat, methods=["POST"])])
