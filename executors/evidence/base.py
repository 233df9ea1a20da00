"""The evidence lifecycle: read-only tools whose every outcome, failures included, is an ``Evidence`` record.

Actions fail loudly (an ``ExecutionOutcome`` with ``state=failed``); evidence must
not, because a diagnosis is still worth making with half the facts. So the base
turns refused params, upstream errors and timeouts into ``status=error`` records
that carry the exact request and the upstream's own words (STYLE.md §5), and a
tool only fills :meth:`EvidenceTool._gather`.
"""

from __future__ import annotations

import json
import logging
import math
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import ClassVar, Generic, TypeVar

import httpx
from pydantic import ValidationError

from executors.base import ActionSpec, bound_output, validation_message
from executors.errors import ExecutorError, InvalidParamsError
from executors.params import Params
from schemas.records import Evidence, EvidenceStatus

logger = logging.getLogger(__name__)

#: Longest summary we hand on: it goes into a record and, verbatim, into an LLM prompt.
MAX_SUMMARY_CHARS = 2000
#: Longest upstream error body we keep: the reason, not a page of HTML.
MAX_ERROR_CHARS = 600
#: Longest exact-request text we keep (a 4 KB PromQL plus its URL fits).
MAX_QUERY_CHARS = 5000

P = TypeVar("P", bound=Params)


@dataclass(frozen=True, slots=True)
class EvidenceContext:
    """What a read may depend on besides its params: the moment it is "now" for (queries are pinned to it)."""

    now: datetime


@dataclass(slots=True)
class Finding:
    """What ``_gather`` found: bounded text for people and the LLM, numbers for the policy's thresholds.

    ``value`` is the step's main number (stored under the step id); ``extra`` holds
    named companions (stored as ``<step id>_<name>``). NaN and infinities are dropped
    by the runner: a threshold over them would be silently false rather than unknown.
    """

    summary: str
    value: float | None = None
    extra: dict[str, float] = field(default_factory=dict)
    no_data: bool = False


@dataclass(frozen=True, slots=True)
class Observation:
    """One call's record plus its machine values (keys without the step-id prefix: ``""`` is the main value)."""

    evidence: Evidence
    values: Mapping[str, float]

    @property
    def ok(self) -> bool:
        return self.evidence.status in (EvidenceStatus.SUCCESS, EvidenceStatus.NO_DATA)


class RequestLog:
    """The exact requests a gather sent, filled before each send so a failure still shows what was asked."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def sent(self, method: str, url: str, payload: Mapping[str, object] | None = None) -> None:
        text = f"{method} {url}"
        if payload:
            text += " " + json.dumps(payload, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
        self.lines.append(text)

    def text(self) -> str:
        return bound_output("\n".join(self.lines), MAX_QUERY_CHARS)


class EvidenceTool(ABC, Generic[P]):
    """Base of every read-only operation. ``observe()`` is the lifecycle; subclasses implement ``_gather()``.

    Guarantees: ``_gather`` only sees params that passed ``spec.params``; ``observe``
    never raises for bad input or an upstream failure (only for rcaflow bugs), and
    its ``Evidence.query`` is the request as sent (or, if refused, as asked).
    """

    spec: ClassVar[ActionSpec]

    def parse_query(self, query: str) -> dict[str, str]:
        """A plan step's query text → params; tools whose params are not just ``query`` override this."""
        return {"query": query}

    def namespaces_in(self, query: str) -> tuple[str, ...] | None:
        """The Kubernetes namespaces a plan step's query reads, so a tenant's scope can be checked before it
        runs: None for a tool whose reads are not about namespaces (the default), ``()`` for a read over
        every namespace. Parsed exactly as the tool itself will parse it; raises InvalidParamsError or
        ValueError for a query the tool would refuse too."""
        return None

    def validate(self, raw: Mapping[str, str]) -> P:
        try:
            return self.spec.params.model_validate(dict(raw))  # type: ignore[return-value]
        except ValidationError as exc:
            raise InvalidParamsError(f"refused {self.spec.name}: {validation_message(exc)}") from exc

    async def observe_query(self, query: str, *, now: datetime | None = None) -> Observation:
        """Run a plan step given as query text (the form ``policies`` renders)."""
        try:
            raw = self.parse_query(query)
        except InvalidParamsError as exc:
            return self._failed(_clip(query), exc.message)
        return await self.observe(raw, now=now, asked=query)

    async def observe(
        self, raw: Mapping[str, str], *, now: datetime | None = None, asked: str | None = None
    ) -> Observation:
        ctx = EvidenceContext(now=_aware(now or datetime.now(UTC)))
        shown = asked if asked is not None else " ".join(f"{k}={v}" for k, v in sorted(raw.items()))
        try:
            params = self.validate(raw)
        except InvalidParamsError as exc:
            # The refused input is untrusted: show it only through the length clip, never parse it again.
            return self._failed(_clip(shown), exc.message)
        log = RequestLog()
        started = time.monotonic()
        try:
            finding = await self._gather(params, ctx, log)
        except ExecutorError as exc:
            return self._failed(log.text() or _clip(shown), exc.message)
        except httpx.TimeoutException:
            return self._failed(log.text() or _clip(shown), f"{self.spec.name}: timed out waiting for the upstream")
        except httpx.TransportError as exc:
            return self._failed(log.text() or _clip(shown), f"{self.spec.name}: cannot reach the upstream: "
                                f"{type(exc).__name__}")
        except (json.JSONDecodeError, UnicodeDecodeError):
            return self._failed(log.text() or _clip(shown), f"{self.spec.name}: the upstream answer is not JSON")
        logger.debug("%s gathered in %d ms", self.spec.name, int((time.monotonic() - started) * 1000))
        values = {"": finding.value} if finding.value is not None else {}
        values.update(finding.extra)
        return Observation(
            Evidence(
                tool=self.spec.tool,
                operation=self.spec.operation,
                query=log.text() or _clip(shown),
                status=EvidenceStatus.NO_DATA if finding.no_data else EvidenceStatus.SUCCESS,
                summary=bound_output(finding.summary, MAX_SUMMARY_CHARS),
            ),
            {k: float(v) for k, v in values.items() if math.isfinite(v)},
        )

    def _failed(self, query: str, message: str) -> Observation:
        return Observation(
            Evidence(
                tool=self.spec.tool,
                operation=self.spec.operation,
                query=query,
                status=EvidenceStatus.ERROR,
                summary=f"{self.spec.name} failed",
                error=bound_output(message, MAX_ERROR_CHARS),
            ),
            {},
        )

    @abstractmethod
    async def _gather(self, params: P, ctx: EvidenceContext, log: RequestLog) -> Finding:
        """Read, summarise, return; call ``log.sent(...)`` before each request; raise ExecutorError on failure."""


def _clip(text: str) -> str:
    return bound_output(text, MAX_QUERY_CHARS)


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def upstream_body(response: httpx.Response) -> str:
    """The upstream's own words, one line, bounded: what an on-call reader needs to correct the query."""
    return " ".join(response.text.split())[:MAX_ERROR_CHARS]


def stats_line(name: str, numbers: Iterable[float]) -> tuple[str, dict[str, float]]:
    """``name: min=… max=… avg=… last=…`` over finite numbers, and the same as values."""
    finite = [n for n in numbers if math.isfinite(n)]
    if not finite:
        return f"{name}: no finite samples", {}
    stats = {
        "min": min(finite),
        "max": max(finite),
        "avg": sum(finite) / len(finite),
        "last": finite[-1],
    }
    text = " ".join(f"{k}={v:.6g}" for k, v in stats.items())
    return f"{name}: {text} ({len(finite)} samples)", stats
