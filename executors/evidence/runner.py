"""Run a class's rendered evidence plan: concurrently, each call under a timeout, all under one budget.

The plan comes in as plain steps (id, tool, operation, rendered query) so this
package never imports ``policies``; the composition root renders the plan (see
:func:`plan_from_triage`) and passes the values back to ``policies.triage``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from executors.errors import InvalidParamsError
from executors.evidence.base import EvidenceTool, Observation
from schemas.records import Evidence, EvidenceStatus

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PlannedStep:
    """One rendered step. ``blocked`` is set when ``policies`` could not render it safely: it is reported, not run.

    ``alternatives`` are further queries for the same number (metric names that differ across versions), tried
    in order while the one before finds no series.
    """

    id: str
    tool: str
    operation: str
    query: str
    description: str = ""
    blocked: Evidence | None = None
    alternatives: tuple[str, ...] = ()

    @property
    def queries(self) -> tuple[str, ...]:
        return (self.query, *self.alternatives)

    @property
    def name(self) -> str:
        return f"{self.tool}.{self.operation}"


def plan_from_triage(step_ids: Sequence[str], evidence: Sequence[Evidence],
                     alternatives: Mapping[str, Sequence[str]] | None = None) -> list[PlannedStep]:
    """Pair a class's evidence step ids (in plan order) with the entries ``policies.triage`` rendered for them.

    ``triage`` writes one entry per plan step, in order, before any action entries;
    an entry with ``status=error`` is a step whose variables had no valid value.
    ``alternatives``: the rendered alternative queries by step id (``policies.triage.alternative_queries``).
    """
    more = alternatives or {}
    if len(evidence) < len(step_ids):
        raise ValueError(f"{len(step_ids)} step ids but only {len(evidence)} evidence entries")
    return [
        PlannedStep(
            id=step_id,
            tool=entry.tool,
            operation=entry.operation,
            query=entry.query,
            blocked=entry if entry.status is EvidenceStatus.ERROR else None,
            alternatives=tuple(more.get(step_id, ())),
        )
        for step_id, entry in zip(step_ids, evidence, strict=False)
    ]


class ReadScope(Protocol):
    """What the runner asks before a read (``policies.tenant_scope.TenantScope`` is one): why the tenant may
    not read ``namespace`` (None: every namespace) of ``cluster`` (None: the configured one), or None."""

    @property
    def tenant(self) -> str:
        """Whose scope it is: picks the tenant's own backends (executors.evidence.tenant_routing)."""
        ...

    def why_not_read(self, *, cluster: str | None, namespace: str | None) -> str | None: ...


@dataclass(frozen=True, slots=True)
class ReadTarget:
    """Whose analysis a plan serves: the tenant's scope and the cluster and namespace the alert names.

    Backends are shared by every tenant, so with a target a step runs only when the alert's
    namespace is the tenant's to read (else no step runs, Prometheus included: the queries are
    written around that namespace) and every namespace the step itself reads is too.
    """

    scope: ReadScope
    cluster: str | None
    namespace: str | None

    def why_not(self, step: PlannedStep, tool: EvidenceTool[Any]) -> str | None:
        """Judged on every query the step may send (its alternatives too): one outside the scope stops it."""
        about = self.scope.why_not_read(cluster=self.cluster, namespace=self.namespace)
        if about is not None:
            return about
        for query in step.queries:
            try:
                namespaces = tool.namespaces_in(query)
            except (InvalidParamsError, ValueError):
                return "the step's query does not parse, so the namespaces it would read are unknown"
            if namespaces is None:
                continue
            for namespace in namespaces or (None,):
                why = self.scope.why_not_read(cluster=self.cluster, namespace=namespace)
                if why is not None:
                    return why
        return None


@dataclass(frozen=True, slots=True)
class EvidenceReport:
    """The evidence records in plan order, and the numbers keyed by step id (``<id>_<extra>`` for companions)."""

    evidence: list[Evidence]
    values: dict[str, float]


class EvidenceRunner:
    """Runs plans against the configured tools (``"tool.operation"`` → :class:`EvidenceTool`).

    Guarantees: ``run`` returns one record per step, in plan order, and never raises
    for a tool's failure; a tool that is not configured gives ``skipped``, a call
    over ``call_timeout_s`` or still running when ``budget_s`` is spent gives
    ``error`` with the request it was making. At most ``concurrency`` calls run at once.
    """

    def __init__(
        self,
        tools: Mapping[str, EvidenceTool[Any]],
        *,
        call_timeout_s: float = 10.0,
        budget_s: float = 30.0,
        concurrency: int = 4,
    ) -> None:
        self.tools = dict(tools)
        self.call_timeout_s = call_timeout_s
        self.budget_s = budget_s
        self._concurrency = max(1, concurrency)

    async def run(
        self, steps: Sequence[PlannedStep], *, now: datetime | None = None, target: ReadTarget | None = None
    ) -> EvidenceReport:
        """``target``: the tenant's scope and the alert's cluster/namespace; a step outside the scope is
        not run and comes back ``skipped`` with the reason (None: no scope applies, e.g. ``rcaflow explain``)."""
        moment = now or datetime.now(UTC)
        gate = asyncio.Semaphore(self._concurrency)
        tasks: dict[int, asyncio.Task[Observation]] = {}
        results: dict[int, Observation] = {}
        for index, step in enumerate(steps):
            early = self._not_runnable(step, target)
            if early is not None:
                results[index] = early
            else:
                tasks[index] = asyncio.create_task(self._one(step, gate, moment), name=f"evidence:{step.id}")
        if tasks:
            _, pending = await asyncio.wait(tasks.values(), timeout=self.budget_s)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
        for index, task in tasks.items():
            step = steps[index]
            if task.cancelled() or not task.done():
                results[index] = _timed_out(step, f"the evidence budget of {self.budget_s:g}s ran out first")
            else:
                results[index] = task.result()  # _one never raises for a tool failure; a bug propagates
        evidence: list[Evidence] = []
        values: dict[str, float] = {}
        for index, step in enumerate(steps):
            observation = results[index]
            evidence.append(observation.evidence)
            for suffix, number in observation.values.items():
                values[step.id if not suffix else f"{step.id}_{suffix}"] = number
        return EvidenceReport(evidence, values)

    def _not_runnable(self, step: PlannedStep, target: ReadTarget | None) -> Observation | None:
        if step.blocked is not None:
            return Observation(step.blocked, {})
        if step.name not in self.tools:
            return Observation(
                Evidence(tool=step.tool, operation=step.operation, query=step.query, status=EvidenceStatus.SKIPPED,
                         summary=f"{step.id}: {step.name} is not configured in this deployment"),
                {},
            )
        why = target.why_not(step, self.tools[step.name]) if target is not None else None
        if why is not None:
            logger.info("evidence step %s not run: %s", step.id, why)
            return Observation(
                Evidence(tool=step.tool, operation=step.operation, query=step.query, status=EvidenceStatus.SKIPPED,
                         summary=f"{step.id}: not read: {why}"),
                {},
            )
        return None

    async def _one(self, step: PlannedStep, gate: asyncio.Semaphore, now: datetime) -> Observation:
        """The step's queries in order, each under the call timeout, until one finds series.

        Only "no series" moves on to the next query (the metric is named differently in this version); an
        error or a timeout is about the backend and ends the step. The record is the answering query's, its
        summary says which of the step's queries answered (or that none did).
        """
        tool = self.tools[step.name]
        queries = step.queries
        observation: Observation | None = None
        answered = 0
        async with gate:
            for answered, query in enumerate(queries):  # noqa: B007 - the index of the answering query is kept
                try:
                    async with asyncio.timeout(self.call_timeout_s):
                        observation = await tool.observe_query(query, now=now)
                except TimeoutError:
                    logger.info("evidence step %s timed out after %gs", step.id, self.call_timeout_s)
                    return _timed_out(step, f"no answer within {self.call_timeout_s:g}s", query)
                if observation.evidence.status is not EvidenceStatus.NO_DATA:
                    break
        assert observation is not None  # a step has at least one query
        if observation.evidence.status is not EvidenceStatus.SUCCESS:
            logger.info("evidence step %s: %s", step.id, observation.evidence.status.value)
        evidence = observation.evidence
        prefix = f"{step.id}: "
        if len(queries) > 1:
            prefix += _which(answered, queries, evidence.status)
        return Observation(evidence.model_copy(update={"summary": prefix + evidence.summary}), observation.values)


def _which(index: int, queries: Sequence[str], status: EvidenceStatus) -> str:
    """Which of a step's queries this record is about, for the reader who reruns it."""
    if status is EvidenceStatus.NO_DATA:
        return f"none of its {len(queries)} queries found series (tried: {'; '.join(queries)}); "
    if index == 0:
        return f"answered by its first query (of {len(queries)}); "
    return (f"answered by alternative {index} of {len(queries) - 1} (no series for: "
            f"{'; '.join(queries[:index])}); ")


def _timed_out(step: PlannedStep, why: str, query: str | None = None) -> Observation:
    return Observation(
        Evidence(tool=step.tool, operation=step.operation, query=query or step.query, status=EvidenceStatus.ERROR,
                 summary=f"{step.id}: timed out", error=f"{step.name}: {why}"),
        {},
    )
