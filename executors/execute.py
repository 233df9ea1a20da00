"""The executor consumer's one entry point: an action record in, an outcome out, never an exception."""

from __future__ import annotations

import logging
import time
from datetime import datetime

from executors.audit import AuditChain
from executors.base import ConfirmPolicy, ExecutionOutcome, bound_output
from executors.errors import ExecutorError
from executors.registry import ToolRegistry
from schemas.records import ActionEvent, ActionState, AuditKind, AuditRecord

logger = logging.getLogger(__name__)


async def execute(
    action: ActionEvent,
    *,
    registry: ToolRegistry,
    dry_run: bool,
    now: datetime | None = None,
    confirm: ConfirmPolicy | None = None,
) -> ExecutionOutcome:
    """Run (or preview) ``action``; tool failures, unknown operations and bad params come back as ``failed``.

    With ``confirm``, a real run is then watched until its effect shows (see
    :meth:`Executor.confirm`); an effect that never shows is ``failed`` too,
    with the run's rollback hint kept.

    Only :class:`ExecutorError` is turned into an outcome; anything else is a bug
    in rcaflow and propagates to the consumer's process boundary.
    """
    name = f"{action.tool}.{action.operation}"
    started = time.monotonic()
    try:
        executor = registry.get(name)
        outcome = await executor.run(action, dry_run=dry_run, now=now)
        if confirm is not None:
            outcome = await executor.confirm(action, outcome, policy=confirm, now=now)
        return outcome
    except ExecutorError as exc:
        logger.warning(
            "action %s (%s) failed: %s [%s, retriable=%s]",
            action.action_id,
            name,
            exc.message,
            type(exc).__name__,
            exc.retriable,
            extra={"tenant": action.tenant, "action_id": action.action_id},
        )
        return ExecutionOutcome(
            action_id=action.action_id,
            name=name,
            state=ActionState.FAILED,
            output=bound_output(exc.message),
            duration_ms=int((time.monotonic() - started) * 1000),
            dry_run=dry_run,
            retriable=exc.retriable,
            error_type=type(exc).__name__,
        )


def audit_outcome(
    chain: AuditChain,
    action: ActionEvent,
    outcome: ExecutionOutcome,
    *,
    actor: str = "rcaflow-executor",
    at: datetime | None = None,
) -> AuditRecord:
    """The audit record for one execution (dry runs included), appended to the tenant's chain."""
    if chain.tenant != action.tenant:
        raise ValueError(f"audit chain of {chain.tenant!r} cannot record an action of {action.tenant!r}")
    detail = {**outcome.audit_detail(), "incident_id": action.incident_id, "risk": action.risk.value}
    return chain.append(
        kind=AuditKind.EXECUTION,
        actor=actor,
        subject_id=action.action_id,
        action=outcome.name,
        detail=detail,
        at=at,
    )
