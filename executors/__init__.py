"""Outbound adapters: the action lifecycle, the tools it runs, approval signatures and the audit chain.

Depends only on ``schemas``; tools are imported lazily through the registry.
"""

from executors.audit import AuditChain, AuditChains, AuditProblem, verify
from executors.base import (
    ActionSpec,
    Check,
    ConfirmPolicy,
    ExecutionOutcome,
    Executor,
    Rollback,
    RunContext,
    ToolResult,
)
from executors.errors import ExecutorError
from executors.execute import audit_outcome, execute
from executors.registry import DEFAULT_TOOLS, ToolRegistry

__all__ = [
    "DEFAULT_TOOLS",
    "ActionSpec",
    "AuditChain",
    "AuditChains",
    "AuditProblem",
    "Check",
    "ConfirmPolicy",
    "ExecutionOutcome",
    "Executor",
    "ExecutorError",
    "Rollback",
    "RunContext",
    "ToolRegistry",
    "ToolResult",
    "audit_outcome",
    "execute",
    "verify",
]
