"""The provider seam: one method, ``chat(request) -> ChatCompletion``; providers are found by name, lazily.

Adding a provider means adding a module with a class that takes ``(config, http)`` and
implements :class:`ChatProvider`, plus one entry in :data:`PROVIDERS`.
"""

from __future__ import annotations

import importlib
from enum import StrEnum
from typing import Any, Literal, Protocol

import httpx
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from executors.llm.answer import SchemaLimits
from executors.llm.errors import LlmConfigError

DEFAULT_BASE_URL = "https://dashscope.aliyuncs.com/compatible-mode/v1"
DEFAULT_MODEL = "qwen-plus"


class ResponseMode(StrEnum):
    """How the server is asked for JSON, best first; a server that refuses one is asked the next."""

    JSON_SCHEMA = "json_schema"
    JSON_OBJECT = "json_object"
    TEXT = "text"


class TenantLimitConfig(BaseModel):
    """One tenant's own LLM limits; an unset field falls back to the client-wide one."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_concurrency: int | None = Field(default=None, ge=1)
    rate: float | None = Field(default=None, gt=0)
    burst: float | None = Field(default=None, ge=1)
    tokens_per_hour: int | None = Field(default=None, ge=1)


class LlmConfig(BaseModel):
    """Everything the client needs; built by ``streams.settings`` (the key from QWEN_API_KEY)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    provider: str = "openai_compat"
    base_url: str = DEFAULT_BASE_URL
    model: str = DEFAULT_MODEL
    api_key: SecretStr = SecretStr("")
    temperature: float = Field(default=0.1, ge=0.0, le=2.0)
    max_tokens: int | None = Field(default=2000, ge=1)
    #: How JSON is asked for first; a server that refuses it with a 400 is asked the next mode. Start lower
    #: for a server known not to support ``json_schema`` (saves the first 400).
    response_mode: ResponseMode = ResponseMode.JSON_SCHEMA
    #: Length and list limits sent in the JSON schema (``answer.SchemaLimits``); None: not sent (some hosted
    #: servers reject the keywords). For a grammar-compiling local server running a small model.
    schema_limits: SchemaLimits | None = None
    timeout_s: float = Field(default=60.0, gt=0)
    max_retries: int = Field(default=3, ge=0)
    backoff_base_s: float = Field(default=0.5, gt=0)
    backoff_max_s: float = Field(default=20.0, gt=0)
    max_retry_after_s: float = Field(default=60.0, gt=0)
    breaker_threshold: int = Field(default=5, ge=1)
    breaker_cooldown_s: float = Field(default=30.0, gt=0)
    max_concurrency_per_tenant: int = Field(default=4, ge=1)
    rate_per_tenant_per_s: float = Field(default=1.0, gt=0)
    burst_per_tenant: float = Field(default=5.0, ge=1)
    #: tenant -> its own limits (``max_concurrency``, ``rate``, ``burst``, ``tokens_per_hour``); others use the above.
    tenant_limits: dict[str, TenantLimitConfig] = Field(default_factory=dict)


class Usage(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
            total_tokens=self.total_tokens + other.total_tokens,
        )


class ChatMessage(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    role: Literal["system", "user", "assistant"]
    content: str


class ChatRequest(BaseModel):
    """One logical chat call; ``schema`` is the JSON schema the answer must follow (named ``schema_name``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    messages: list[ChatMessage]
    json_schema: dict[str, Any] | None = None
    schema_name: str = "answer"


class ChatCompletion(BaseModel):
    """The first choice's text and what it cost; ``content`` is None when the server sent no choice."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    content: str | None
    finish_reason: str | None = None
    model: str
    usage: Usage = Field(default_factory=Usage)
    latency_ms: int = 0
    mode: ResponseMode = ResponseMode.TEXT


class ChatProvider(Protocol):
    async def chat(self, request: ChatRequest) -> ChatCompletion:
        """Make one attempt; raise an ``LlmError`` subclass, never a foreign exception."""
        ...


PROVIDERS: dict[str, str] = {
    "openai_compat": "executors.llm.openai_compat:OpenAICompatProvider",
    "qwen": "executors.llm.openai_compat:OpenAICompatProvider",
}
"""Provider name -> "module:Class"; imported only when used."""


def load_provider(config: LlmConfig, http: httpx.AsyncClient) -> ChatProvider:
    target = PROVIDERS.get(config.provider)
    if target is None:
        raise LlmConfigError(f"unknown LLM provider {config.provider!r}; known: {', '.join(sorted(PROVIDERS))}")
    module_name, _, class_name = target.partition(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    provider: ChatProvider = cls(config, http)
    return provider
