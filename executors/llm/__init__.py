"""LLM engine for RCA: an OpenAI-compatible client behind a provider seam, the answer contract and the policy gate.

The LLM proposes, the policy disposes: see docs/llm.md.
"""

from executors.llm.answer import (
    ActionParam,
    ActionProposal,
    Diagnosis,
    EvidenceRequest,
    LlmAnswer,
    SchemaLimits,
    parse_answer,
)
from executors.llm.client import LlmClient
from executors.llm.errors import (
    LlmBudgetExceededError,
    LlmCircuitOpenError,
    LlmConfigError,
    LlmContextOverflowError,
    LlmError,
    LlmRateLimitedError,
    LlmRequestError,
    LlmTimeoutError,
    LlmUnavailableError,
)
from executors.llm.gate import AllowedAction, AllowedParam, GateResult, Rejection, gate
from executors.llm.prompt import ClassBrief, PastIncident, build_messages
from executors.llm.provider import (
    PROVIDERS,
    ChatCompletion,
    ChatRequest,
    LlmConfig,
    ResponseMode,
    TenantLimitConfig,
    Usage,
)
from executors.llm.rca import EvidenceFetcher, LlmFailure, LlmOutcome, LlmRca, ToolBudget, analyse

__all__ = [
    "PROVIDERS",
    "ActionParam",
    "ActionProposal",
    "AllowedAction",
    "AllowedParam",
    "ChatCompletion",
    "ChatRequest",
    "ClassBrief",
    "Diagnosis",
    "EvidenceFetcher",
    "EvidenceRequest",
    "GateResult",
    "LlmAnswer",
    "LlmBudgetExceededError",
    "LlmCircuitOpenError",
    "LlmClient",
    "LlmConfig",
    "LlmConfigError",
    "LlmContextOverflowError",
    "LlmError",
    "LlmFailure",
    "LlmOutcome",
    "LlmRateLimitedError",
    "LlmRca",
    "LlmRequestError",
    "LlmTimeoutError",
    "LlmUnavailableError",
    "PastIncident",
    "Rejection",
    "ResponseMode",
    "SchemaLimits",
    "TenantLimitConfig",
    "ToolBudget",
    "Usage",
    "analyse",
    "build_messages",
    "gate",
    "parse_answer",
]
