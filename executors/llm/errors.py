"""The LLM error tree: what a chat call can meet, each saying whether a later retry can help."""

from __future__ import annotations

from executors.errors import ExecutorError


class LlmError(ExecutorError):
    """Base of every error of ``executors.llm``; messages never contain the API key or prompts."""


class LlmConfigError(LlmError):
    """Unknown provider or an impossible setting: fix the configuration, retrying cannot help."""


class LlmRequestError(LlmError):
    """The server refused the request itself (4xx other than 429): our request or our key is wrong."""

    def __init__(self, message: str, *, status: int | None = None, body: str = "") -> None:
        super().__init__(message, retriable=False)
        self.status = status
        self.body = body


class LlmContextOverflowError(LlmRequestError):
    """The prompt (plus the tokens asked for) does not fit the model's context window.

    A 400 like any refused request, but named: the caller can tell "our prompt is too long for this
    model" (shorten the evidence, or pick a model with a larger context) from a malformed request.
    Retrying the same prompt cannot help.
    """


class LlmBudgetExceededError(LlmError):
    """The tenant spent its hourly token budget (``tenants.<name>.llm.tokens_per_hour``); its triage stands."""


class LlmUnavailableError(LlmError):
    """Transport failure, timeout or 5xx: the server may answer later."""

    retriable = True

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class LlmTimeoutError(LlmUnavailableError):
    """No complete answer within the per-call timeout."""


class LlmRateLimitedError(LlmUnavailableError):
    """429; ``retry_after`` is the server's Retry-After in seconds when it sent one."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message, status=429)
        self.retry_after = retry_after


class LlmCircuitOpenError(LlmError):
    """The breaker is open after repeated failures; calls fail fast until the cool-down ends."""

    retriable = True
