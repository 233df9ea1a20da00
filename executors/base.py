"""The action lifecycle: a base class owns validation, approval/risk checks, timing and error mapping.

A tool fills one step, :meth:`Executor._run`; everything a reviewer must trust
(that params were validated, that only approved actions run, that failures are
typed) lives here once instead of in every tool.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import ClassVar, Generic, Self, TypeVar

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from executors.errors import (
    ExecutorError,
    InvalidParamsError,
    NotConfirmedError,
    NotExecutableError,
    UnavailableError,
    UpstreamError,
)
from executors.params import Params
from schemas.records import ActionEvent, ActionState, Risk

logger = logging.getLogger(__name__)

#: Output kept in an outcome (and so in ``ActionEvent.result``): enough to read, small enough for a record.
MAX_OUTPUT_CHARS = 4000

RISK_RANK: Mapping[Risk, int] = {Risk.READ: 0, Risk.LOW: 1, Risk.HIGH: 2}

#: States in which an action may really run: approved, or already marked running by the consumer.
EXECUTABLE_STATES = frozenset({ActionState.APPROVED, ActionState.RUNNING})
#: A dry run only describes, so it may also preview an action that still waits for approval.
DRY_RUN_STATES = EXECUTABLE_STATES | {ActionState.PROPOSED, ActionState.AWAITING_APPROVAL}

P = TypeVar("P", bound=Params)


@dataclass(frozen=True, slots=True)
class ActionSpec:
    """One operation, declared once: its name, what it does, its typed params and its inherent risk."""

    name: str
    description: str
    params: type[Params]
    risk: Risk

    def __post_init__(self) -> None:
        tool, sep, operation = self.name.partition(".")
        if not (tool and sep and operation):
            raise ValueError(f"action name {self.name!r} must be 'tool.operation'")

    @property
    def tool(self) -> str:
        return self.name.partition(".")[0]

    @property
    def operation(self) -> str:
        return self.name.partition(".")[2]


class Rollback(BaseModel):
    """How to undo what ran: another action (name + params) the decide stage can propose."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    params: dict[str, str] = Field(default_factory=dict)

    def describe(self) -> str:
        args = " ".join(f"{k}={v}" for k, v in sorted(self.params.items()))
        return f"{self.name} {args}".strip()


class ExecutionOutcome(BaseModel):
    """What happened to one action: ``succeeded`` or ``failed``, never an exception."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    action_id: str
    name: str
    state: ActionState
    output: str = Field(max_length=MAX_OUTPUT_CHARS + 64)
    duration_ms: int = 0
    dry_run: bool
    rollback: Rollback | None = None
    #: For failures: whether the consumer should try the same action again later.
    retriable: bool = False
    #: For failures: the ExecutorError class name, e.g. ``ForbiddenError``.
    error_type: str | None = None

    @property
    def ok(self) -> bool:
        return self.state is ActionState.SUCCEEDED

    def audit_detail(self) -> dict[str, str]:
        """The ``detail`` map for this outcome's ``AuditRecord`` (kind ``execution``): strings only, bounded."""
        detail = {
            "name": self.name,
            "state": self.state.value,
            "dry_run": str(self.dry_run).lower(),
            "duration_ms": str(self.duration_ms),
            "output": bound_output(self.output, 500),
        }
        if self.error_type:
            detail["error_type"] = self.error_type
            detail["retriable"] = str(self.retriable).lower()
        if self.rollback is not None:
            detail["rollback"] = self.rollback.describe()
        return detail

    def to_action_event(self, action: ActionEvent, *, at: datetime) -> ActionEvent:
        """The next record on the ``actions`` topic for this action."""
        result = self.output
        update: dict[str, object] = {}
        if self.rollback is not None:
            result = f"{result}\nrollback: {self.rollback.describe()}"
            if not self.dry_run and action.rollback_of is None:  # a rollback's undo fields name what it undoes
                update = {"undo_action": self.rollback.name, "undo_params": dict(self.rollback.params)}
        return action.model_copy(
            update={
                "state": self.state,
                "result": bound_output(result),
                "dry_run": self.dry_run,
                "duration_ms": self.duration_ms,
                "at": at,
                **update,
            }
        )


@dataclass(frozen=True, slots=True)
class RunContext:
    """What a tool may know about the action besides its params (ids for idempotency, the clock)."""

    tenant: str
    action_id: str
    incident_id: str
    dry_run: bool
    now: datetime


@dataclass(frozen=True, slots=True)
class ToolResult:
    """What ``_run`` returns: readable output and, when the operation can be undone, how."""

    output: str
    rollback: Rollback | None = None


@dataclass(frozen=True, slots=True)
class Check:
    """One look at whether a real run took effect: done, still converging, or failed for good."""

    done: bool
    detail: str
    failed: bool = False


@dataclass(frozen=True, slots=True)
class ConfirmPolicy:
    """How long the executor watches an effect before it calls the action failed, and how often it looks."""

    within_s: float = 300.0
    every_s: float = 2.0


def bound_output(text: str, limit: int = MAX_OUTPUT_CHARS) -> str:
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… [{len(text) - limit} more characters cut]"


def validation_message(exc: ValidationError) -> str:
    """A one-line summary naming each bad field, without echoing the (untrusted) input value."""
    parts = []
    for err in exc.errors(include_input=False, include_url=False):
        loc = ".".join(str(p) for p in err["loc"]) or "params"
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)


class Executor(ABC, Generic[P]):
    """Base of every operation. ``run()`` is the lifecycle; subclasses implement ``_run()`` only.

    Guarantees: ``_run`` is only reached with params that passed ``spec.params``;
    a real run only for an approved (or running) action whose declared risk is at
    least the operation's risk and whose approval has not expired; any failure
    leaves ``run`` as an :class:`ExecutorError` (transport errors become the
    retriable :class:`UnavailableError`).
    """

    spec: ClassVar[ActionSpec]
    #: Key of the backend (cluster client, endpoint table) this operation needs in the registry.
    backend: ClassVar[str | None] = None

    @classmethod
    def from_backend(cls, backend: object | None) -> Self:
        """Build the executor from the registry's backend; families that need one override this."""
        del backend
        return cls()

    def validate(self, action: ActionEvent) -> P:
        try:
            return self.spec.params.model_validate(action.params)  # type: ignore[return-value]
        except ValidationError as exc:
            raise InvalidParamsError(f"invalid params for {self.spec.name}: {validation_message(exc)}") from exc

    def check_executable(self, action: ActionEvent, *, dry_run: bool, now: datetime) -> None:
        allowed = DRY_RUN_STATES if dry_run else EXECUTABLE_STATES
        if action.state not in allowed:
            raise NotExecutableError(
                f"{self.spec.name} cannot {'preview' if dry_run else 'run'} an action in state "
                f"{action.state.value!r}; it must be one of {sorted(s.value for s in allowed)}"
            )
        if RISK_RANK[action.risk] < RISK_RANK[self.spec.risk]:
            raise NotExecutableError(
                f"action declares risk {action.risk.value!r} but {self.spec.name} is "
                f"{self.spec.risk.value!r}; the policy must declare at least that"
            )
        if not dry_run and action.expires_at is not None and now >= _aware(action.expires_at):
            raise NotExecutableError(f"approval of {action.action_id} expired at {action.expires_at.isoformat()}")

    async def run(self, action: ActionEvent, *, dry_run: bool, now: datetime | None = None) -> ExecutionOutcome:
        now = _aware(now or datetime.now(UTC))
        params = self.validate(action)
        self.check_executable(action, dry_run=dry_run, now=now)
        ctx = RunContext(
            tenant=action.tenant,
            action_id=action.action_id,
            incident_id=action.incident_id,
            dry_run=dry_run,
            now=now,
        )
        started = time.monotonic()
        try:
            result = await self._run(params, ctx)
        except ExecutorError:
            raise
        except httpx.TimeoutException as exc:
            raise UnavailableError(f"{self.spec.name}: timed out talking to {_where(exc)}") from exc
        except httpx.TransportError as exc:
            raise UnavailableError(f"{self.spec.name}: cannot reach {_where(exc)}: {type(exc).__name__}") from exc
        except httpx.RequestError as exc:
            # Refused before sending (e.g. the host is not in the outbound allow-list): configuration, not weather.
            raise UpstreamError(f"{self.spec.name}: request to {_where(exc)} not sent: {exc}") from exc
        except json.JSONDecodeError as exc:
            raise UpstreamError(f"{self.spec.name}: upstream answered with something that is not JSON") from exc
        duration_ms = int((time.monotonic() - started) * 1000)
        logger.info(
            "%s %s for action %s in %d ms",
            self.spec.name,
            "planned" if dry_run else "ran",
            action.action_id,
            duration_ms,
            extra={"tenant": action.tenant, "action_id": action.action_id},
        )
        return ExecutionOutcome(
            action_id=action.action_id,
            name=self.spec.name,
            state=ActionState.SUCCEEDED,
            output=bound_output(result.output),
            duration_ms=duration_ms,
            dry_run=dry_run,
            rollback=result.rollback,
        )

    @abstractmethod
    async def _run(self, params: P, ctx: RunContext) -> ToolResult:
        """Do (or, when ``ctx.dry_run``, describe) the operation; raise ExecutorError on failure."""

    async def _check(self, params: P, ctx: RunContext) -> Check | None:
        """Look once at the effect of a real run; None means the tool's own answer already confirmed it.

        A PATCH that the API server accepted only says the wish was recorded: a
        rollout can still hang on pods that never become ready. Tools whose
        effect converges later override this so the executor can wait for it.
        """
        del params, ctx
        return None

    async def confirm(
        self, action: ActionEvent, outcome: ExecutionOutcome, *, policy: ConfirmPolicy, now: datetime | None = None
    ) -> ExecutionOutcome:
        """Watch a successful real run until its effect shows; a failure or timeout turns it into ``failed``.

        The failed outcome keeps the run's rollback hint, so the caller can undo it.
        """
        if not outcome.ok or outcome.dry_run:
            return outcome
        params = self.validate(action)
        ctx = RunContext(tenant=action.tenant, action_id=action.action_id, incident_id=action.incident_id,
                         dry_run=False, now=_aware(now or datetime.now(UTC)))
        started = time.monotonic()
        deadline = started + policy.within_s
        last = "no answer yet"
        while True:
            try:
                check = await self._check(params, ctx)
            except ExecutorError as exc:
                if not exc.retriable:
                    return self._unconfirmed(outcome, f"check failed: {exc.message}", started)
                last = exc.message
            except httpx.TransportError as exc:
                last = f"cannot reach {_where(exc)}: {type(exc).__name__}"
            else:
                if check is None:
                    return outcome
                if check.failed:
                    return self._unconfirmed(outcome, check.detail, started)
                if check.done:
                    return outcome.model_copy(update={
                        "output": bound_output(f"{outcome.output}\nconfirmed: {check.detail}"),
                        "duration_ms": outcome.duration_ms + int((time.monotonic() - started) * 1000),
                    })
                last = check.detail
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return self._unconfirmed(outcome, f"not confirmed within {policy.within_s:g} s: {last}", started)
            await asyncio.sleep(min(policy.every_s, remaining))

    def _unconfirmed(self, outcome: ExecutionOutcome, why: str, started: float) -> ExecutionOutcome:
        logger.warning("%s for action %s took effect but failed its check: %s", self.spec.name,
                       outcome.action_id, why, extra={"action_id": outcome.action_id})
        return outcome.model_copy(update={
            "state": ActionState.FAILED,
            "output": bound_output(f"{outcome.output}\n{why}"),
            "duration_ms": outcome.duration_ms + int((time.monotonic() - started) * 1000),
            "error_type": NotConfirmedError.__name__,
            "retriable": False,
        })


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _where(exc: httpx.RequestError) -> str:
    try:
        url = exc.request.url
    except RuntimeError:
        return "the upstream"
    # Never the full URL: query strings may carry tokens.
    return f"{url.scheme}://{url.host}{':' + str(url.port) if url.port else ''}"
