"""OpenAI-compatible ``POST {base_url}/chat/completions`` (DashScope/Qwen, OpenAI, vLLM, Ollama ...).

Structured output is asked for as ``json_schema``; a server that answers 400 about the response
format is asked with ``json_object`` next, then with plain text, and the choice is remembered per
server so the 400 is paid once.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from executors.llm.errors import (
    LlmContextOverflowError,
    LlmRateLimitedError,
    LlmRequestError,
    LlmTimeoutError,
    LlmUnavailableError,
)
from executors.llm.provider import ChatCompletion, ChatRequest, LlmConfig, ResponseMode, Usage

logger = logging.getLogger(__name__)

_BODY_PREVIEW = 300
#: llama.cpp says "JSON schema error at #: ..." when it cannot compile a schema into a grammar.
_FORMAT_WORDS = ("response_format", "json_schema", "json_object", "response format", "json schema")
#: How servers say "the prompt does not fit the context": llama.cpp (exceed_context_size_error), OpenAI
#: (context_length_exceeded), vLLM ("maximum context length"), DashScope ("Range of input length").
_CONTEXT_WORDS = ("exceed_context_size", "context_length_exceeded", "maximum context length",
                  "exceeds the available context", "context window", "range of input length")


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Retry-After as seconds: either delta-seconds or an HTTP-date (RFC 9110 §10.2.3)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


class OpenAICompatProvider:
    """One attempt per ``chat`` call (retries belong to :class:`executors.llm.client.LlmClient`)."""

    def __init__(self, config: LlmConfig, http: httpx.AsyncClient) -> None:
        self._config = config
        self._http = http
        self._url = config.base_url.rstrip("/") + "/chat/completions"
        self._modes: dict[str, ResponseMode] = {}

    def mode(self) -> ResponseMode:
        """The response mode this server is currently asked with."""
        return self._modes.get(self._url, self._config.response_mode)

    async def chat(self, request: ChatRequest) -> ChatCompletion:
        while True:
            mode = self.mode() if request.json_schema is not None else ResponseMode.TEXT
            try:
                return await self._post(request, mode)
            except LlmRequestError as exc:
                following = _next_mode(mode)
                overflow = isinstance(exc, LlmContextOverflowError)
                if overflow or exc.status != 400 or following is None or not _about_format(exc.body):
                    raise
                logger.warning(
                    "LLM server %s refused response_format %s; asking with %s from now on",
                    self._url,
                    mode,
                    following,
                )
                self._modes[self._url] = following

    def _body(self, request: ChatRequest, mode: ResponseMode) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self._config.model,
            "messages": [m.model_dump() for m in request.messages],
            "temperature": self._config.temperature,
        }
        if self._config.max_tokens is not None:
            body["max_tokens"] = self._config.max_tokens
        if mode is ResponseMode.JSON_SCHEMA and request.json_schema is not None:
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": request.schema_name, "strict": True, "schema": request.json_schema},
            }
        elif mode is ResponseMode.JSON_OBJECT:
            body["response_format"] = {"type": "json_object"}
        return body

    async def _post(self, request: ChatRequest, mode: ResponseMode) -> ChatCompletion:
        key = self._config.api_key.get_secret_value()
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self._config.timeout_s):
                response = await self._http.post(
                    self._url,
                    json=self._body(request, mode),
                    headers=headers,
                    timeout=self._config.timeout_s,
                )
        except (TimeoutError, httpx.TimeoutException) as exc:
            raise LlmTimeoutError(f"no answer from {self._url} within {self._config.timeout_s:g}s") from exc
        except httpx.TransportError as exc:
            raise LlmUnavailableError(f"cannot reach {self._url}: {type(exc).__name__}") from exc
        except httpx.HTTPError as exc:  # e.g. a body that does not decode (bad gzip): the server is misbehaving
            raise LlmUnavailableError(f"unreadable answer from {self._url}: {type(exc).__name__}") from exc
        latency_ms = int((time.perf_counter() - started) * 1000)

        status = response.status_code
        if status == 429:
            retry_after = parse_retry_after(response.headers.get("retry-after"))
            raise LlmRateLimitedError(f"{self._url} answered 429 (rate limited)", retry_after=retry_after)
        if status >= 500:
            raise LlmUnavailableError(f"{self._url} answered {status}: {_preview(response.text)}", status=status)
        if status >= 400 and _about_context(response.text):
            raise LlmContextOverflowError(
                f"{self._url} answered {status}: the prompt does not fit the model's context: "
                f"{_preview(response.text)}",
                status=status,
                body=response.text,
            )
        if status >= 400:
            raise LlmRequestError(
                f"{self._url} answered {status}: {_preview(response.text)}", status=status, body=response.text
            )
        try:
            data = response.json()
        except ValueError as exc:
            raise LlmUnavailableError(f"{self._url} answered {status} with a body that is not JSON") from exc
        return _completion(data, self._config.model, latency_ms, mode)


#: Usage counters above this are nonsense from a broken server; clamped so they still fit an Avro long.
_MAX_COUNT = 2**31 - 1
_MODEL_NAME_CHARS = 200


def _completion(data: Any, default_model: str, latency_ms: int, mode: ResponseMode) -> ChatCompletion:
    """The completion in a decoded body; any shape a broken server sends becomes "no content", never an error."""
    if not isinstance(data, dict):
        raise LlmUnavailableError("the chat completion is not a JSON object")
    choices = data.get("choices")
    first = choices[0] if isinstance(choices, list) and choices else None
    content: str | None = None
    finish: str | None = None
    if isinstance(first, dict):
        message = first.get("message")
        raw = message.get("content") if isinstance(message, dict) else None
        content = raw if isinstance(raw, str) else None
        reason = first.get("finish_reason")
        finish = reason[:_MODEL_NAME_CHARS] if isinstance(reason, str) else None
    usage_raw = data.get("usage")
    if not isinstance(usage_raw, dict):
        usage_raw = {}
    usage = Usage(
        prompt_tokens=_count(usage_raw.get("prompt_tokens")),
        completion_tokens=_count(usage_raw.get("completion_tokens")),
        total_tokens=_count(usage_raw.get("total_tokens")),
    )
    model = data.get("model")
    return ChatCompletion(
        content=content,
        finish_reason=finish,
        model=model[:_MODEL_NAME_CHARS] if isinstance(model, str) and model else default_model,
        usage=usage,
        latency_ms=latency_ms,
        mode=mode,
    )


def _count(value: object) -> int:
    """A token counter as the server sent it, or 0 when it is not a sane non-negative integer."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0
    if not math.isfinite(value):
        return 0
    return max(0, min(int(value), _MAX_COUNT))


def _next_mode(mode: ResponseMode) -> ResponseMode | None:
    return {ResponseMode.JSON_SCHEMA: ResponseMode.JSON_OBJECT, ResponseMode.JSON_OBJECT: ResponseMode.TEXT}.get(mode)


def _about_format(body: str) -> bool:
    lowered = body.lower()
    return any(word in lowered for word in _FORMAT_WORDS)


def _about_context(body: str) -> bool:
    lowered = body.lower()
    return any(word in lowered for word in _CONTEXT_WORDS)


def _preview(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _BODY_PREVIEW else text[:_BODY_PREVIEW] + "..."
