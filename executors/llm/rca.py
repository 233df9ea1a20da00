"""LLM root-cause analysis: prompt, one repair on an invalid answer, policy gate, optional evidence round.

The LLM proposes and the policy disposes: whatever the model says, only actions in the class's
allowed list survive, and a failure of any kind is returned as data so the caller keeps the
policy engine's triage.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from executors.errors import ExecutorError
from executors.llm.answer import AnswerProblem, EvidenceRequest, LlmAnswer, answer_json_schema, parse_answer
from executors.llm.client import LlmClient
from executors.llm.errors import LlmCircuitOpenError, LlmContextOverflowError, LlmError, LlmRequestError
from executors.llm.gate import Rejection, gate
from executors.llm.prompt import ClassBrief, PastIncident, build_messages
from executors.llm.provider import ChatMessage, ChatRequest, Usage
from executors.llm.resilience import Clock
from schemas.records import Engine, Evidence, EvidenceStatus, Incident, ProposedAction, RcaResult

logger = logging.getLogger(__name__)

EvidenceFetcher = Callable[[EvidenceRequest], Awaitable[Evidence]]
"""Runs one read-only evidence request the model asked for. The request is model output, so the
fetcher must treat ``query`` as untrusted (read-only endpoints, its own validation and limits)."""

_REPAIR_ECHO = 4000


class ToolBudget(BaseModel):
    """Bounds of the optional evidence round: calls in total, seconds in total, rounds."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_calls: int = Field(default=5, ge=0)
    time_budget_s: float = Field(default=30.0, gt=0)
    max_rounds: int = Field(default=1, ge=0)


class _Spent(BaseModel):
    model: str | None = None
    latency_ms: int = 0
    usage: Usage = Field(default_factory=Usage)
    calls: int = 0


class LlmRca(BaseModel):
    """A gated answer, ready to become an ``RcaResult`` with ``engine=llm``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    ok: Literal[True] = True
    diagnosis: str
    cause: str
    confidence: float
    actions: list[ProposedAction]
    rejected: list[Rejection]
    rollback: list[str]
    evidence_plan: list[EvidenceRequest]
    fetched_evidence: list[Evidence] = Field(default_factory=list)
    model: str | None
    latency_ms: int
    usage: Usage
    calls: int
    repaired: bool = False

    def to_rca_result(self, incident: Incident, now: datetime, evidence: Sequence[Evidence] = ()) -> RcaResult:
        return RcaResult(
            tenant=incident.tenant,
            incident_id=incident.incident_id,
            alert_class=incident.alert_class,
            engine=Engine.LLM,
            diagnosis=self.diagnosis,
            cause=self.cause,
            confidence=self.confidence,
            evidence=[*evidence, *self.fetched_evidence],
            actions=self.actions,
            rollback=self.rollback,
            produced_at=now,
            incident=incident,
            model=self.model,
            latency_ms=self.latency_ms,
            tokens=self.usage.total_tokens or None,
        )


class LlmFailure(BaseModel):
    """No usable answer; ``kind``: unavailable | circuit_open | context_overflow | request | invalid_answer."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    ok: Literal[False] = False
    kind: str
    reason: str
    retriable: bool
    model: str | None = None
    latency_ms: int = 0
    usage: Usage = Field(default_factory=Usage)
    calls: int = 0


LlmOutcome = LlmRca | LlmFailure


async def analyse(
    client: LlmClient,
    incident: Incident,
    brief: ClassBrief,
    evidence: Sequence[Evidence] = (),
    similar: Sequence[PastIncident] = (),
    *,
    fetch_evidence: EvidenceFetcher | None = None,
    budget: ToolBudget | None = None,
    clock: Clock = time.monotonic,
) -> LlmOutcome:
    """Ask the model for an RCA of ``incident`` and gate its actions by ``brief.allowed_actions``."""
    spent = _Spent()
    tenant = incident.tenant
    messages = build_messages(brief, incident.event, evidence, similar)
    first = await _ask(client, messages, brief, tenant, spent)
    if isinstance(first, LlmFailure):
        return first
    answer, repaired = first

    fetched: list[Evidence] = []
    if fetch_evidence is not None:
        budget = budget or ToolBudget()
        # Reads that already ran; a "skipped" one (planned but not run, refused, not configured) may be asked for.
        seen = {(e.tool, e.operation, e.query) for e in evidence if e.status is not EvidenceStatus.SKIPPED}
        started = clock()
        for _ in range(budget.max_rounds):
            requests = _wanted(answer, brief, seen)[: max(0, budget.max_calls - len(fetched))]
            logger.info("LLM evidence round: the model asked for %d read(s), %d to run",
                        len(answer.evidence_plan), len(requests), extra={"incident_id": incident.incident_id})
            if not requests:
                break
            for request in requests:
                if clock() - started > budget.time_budget_s:
                    break
                seen.add((request.tool, request.operation, request.query))
                fetched.append(await _fetch(fetch_evidence, request))
            messages = build_messages(brief, incident.event, [*evidence, *fetched], similar)
            again = await _ask(client, messages, brief, tenant, spent)
            if isinstance(again, LlmFailure):
                logger.warning("LLM follow-up after evidence failed (%s); keeping the first answer", again.reason)
                break
            answer, repaired = again[0], repaired or again[1]

    gated = gate(answer.actions, brief.allowed_actions, incident.incident_id)
    for rejection in gated.rejected:
        logger.info(
            "LLM action %r dropped by policy: %s",
            rejection.name,
            rejection.reason,
            extra={"incident_id": incident.incident_id, "alert_class": incident.alert_class},
        )
    return LlmRca(
        diagnosis=answer.diagnosis.summary,
        cause=answer.diagnosis.cause,
        confidence=answer.diagnosis.confidence,
        actions=gated.accepted,
        rejected=gated.rejected,
        rollback=list(answer.rollback),
        evidence_plan=list(answer.evidence_plan),
        fetched_evidence=fetched,
        model=spent.model,
        latency_ms=spent.latency_ms,
        usage=spent.usage,
        calls=spent.calls,
        repaired=repaired,
    )


async def _ask(
    client: LlmClient, messages: list[ChatMessage], brief: ClassBrief, tenant: str, spent: _Spent
) -> tuple[LlmAnswer, bool] | LlmFailure:
    """One answer, with one repair round when the first reply does not validate."""
    schema = answer_json_schema(brief.evidence_tools, client.config.schema_limits)
    problem: AnswerProblem | None = None
    for attempt in range(2):
        try:
            completion = await client.complete(ChatRequest(messages=messages, json_schema=schema), tenant=tenant)
        except LlmError as exc:
            return _failure(exc, spent)
        spent.calls += 1
        spent.model = completion.model
        spent.latency_ms += completion.latency_ms
        spent.usage = spent.usage + completion.usage
        parsed = parse_answer(completion.content, completion.finish_reason)
        if isinstance(parsed, LlmAnswer):
            return parsed, attempt > 0
        if problem is not None:
            return LlmFailure(
                kind="invalid_answer",
                reason=f"invalid answer after one repair: {parsed.reason} (first reply: {problem.reason})",
                retriable=False,
                model=spent.model,
                latency_ms=spent.latency_ms,
                usage=spent.usage,
                calls=spent.calls,
            )
        problem = parsed
        logger.info("LLM answer invalid (%s); asking once for a repair", parsed.reason)
        messages = [
            *messages,
            ChatMessage(role="assistant", content=(completion.content or "(empty)")[:_REPAIR_ECHO]),
            ChatMessage(
                role="user",
                content=(
                    f"Your reply was not a valid answer: {parsed.reason}. Reply again with only the complete "
                    "JSON object in the required shape, no prose and no Markdown; keep texts short."
                ),
            ),
        ]
    raise AssertionError("unreachable")  # pragma: no cover


def _failure(exc: LlmError, spent: _Spent) -> LlmFailure:
    if isinstance(exc, LlmCircuitOpenError):
        kind = "circuit_open"
    elif isinstance(exc, LlmContextOverflowError):
        kind = "context_overflow"
    elif isinstance(exc, LlmRequestError):
        kind = "request"
    else:
        kind = "unavailable"
    return LlmFailure(
        kind=kind,
        reason=exc.message,
        retriable=exc.retriable,
        model=spent.model,
        latency_ms=spent.latency_ms,
        usage=spent.usage,
        calls=spent.calls,
    )


def _wanted(answer: LlmAnswer, brief: ClassBrief, seen: set[tuple[str, str, str]]) -> list[EvidenceRequest]:
    """Requests for allowed read-only tools that were not run yet, without identical repeats."""
    out: list[EvidenceRequest] = []
    keys: set[tuple[str, str, str]] = set()
    for request in answer.evidence_plan:
        key = (request.tool, request.operation, request.query)
        if request.operation in brief.evidence_tools.get(request.tool, ()) and key not in seen and key not in keys:
            out.append(request)
            keys.add(key)
    return out


async def _fetch(fetch: EvidenceFetcher, request: EvidenceRequest) -> Evidence:
    try:
        return await fetch(request)
    except ExecutorError as exc:
        return Evidence(
            tool=request.tool,
            operation=request.operation,
            query=request.query,
            status=EvidenceStatus.ERROR,
            summary=f"requested by the LLM: {request.purpose[:200]}",
            error=exc.message,
        )
