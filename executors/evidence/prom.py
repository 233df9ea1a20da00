"""prom.query / prom.query_range against the Prometheus (or VictoriaMetrics) HTTP API.

Queries are sent as POST form bodies by default: no URL length limit, and the
query text stays out of proxies' access logs. The base URL comes from config,
never from an alert.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated, Any, Literal

import httpx
from pydantic import AfterValidator, BaseModel, ConfigDict

from executors.base import ActionSpec
from executors.errors import UpstreamError, error_for_status
from executors.evidence.auth import BackendAuth
from executors.evidence.base import EvidenceContext, EvidenceTool, Finding, RequestLog, stats_line, upstream_body
from executors.evidence.promql import check_promql
from executors.params import Params
from executors.tools._http import safe_base_url
from schemas.records import Risk

logger = logging.getLogger(__name__)

#: Series shown in a summary; the rest are counted, not listed.
TOP_K = 5
_STEP_RE = re.compile(r"^(\d{1,4})([smh])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
#: Most points a range query may ask for (Prometheus itself refuses > 11,000).
MAX_POINTS = 2000


class PromConfig(BaseModel):
    """Where Prometheus is; built by the composition root."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    base_url: str
    timeout_s: float = 10.0
    method: Literal["GET", "POST"] = "POST"
    max_query_chars: int = 4000
    #: Basic auth or a bearer token, and/or a private CA (a Prometheus behind an authenticating proxy).
    auth: BackendAuth = BackendAuth()


def _promql(value: str) -> str:
    return check_promql(value)


def _window(value: str) -> str:
    match = re.fullmatch(r"^(\d{1,4})([smhd])$", value)
    if not match or not 60 <= int(match.group(1)) * _UNITS[match.group(2)] <= 7 * 86400:
        raise ValueError("must look like 30m, 2h or 1d, between 1m and 7d")
    return value


def _step(value: str) -> str:
    match = _STEP_RE.fullmatch(value)
    if not match or int(match.group(1)) == 0:
        raise ValueError("must look like 15s, 1m or 1h")
    return value


PromQL = Annotated[str, AfterValidator(_promql)]


class QueryParams(Params):
    query: PromQL


class RangeParams(Params):
    query: PromQL
    range: Annotated[str, AfterValidator(_window)] = "30m"
    step: Annotated[str, AfterValidator(_step)] = "1m"


def _seconds(text: str) -> int:
    return int(text[:-1]) * _UNITS[text[-1]]


@dataclass(frozen=True, slots=True)
class PromApi:
    """The two endpoints, with Prometheus's JSON envelope (status/errorType/error/warnings) unwrapped."""

    client: httpx.AsyncClient
    base_url: str
    method: Literal["GET", "POST"] = "POST"

    @classmethod
    def create(cls, client: httpx.AsyncClient, base_url: str, *, method: Literal["GET", "POST"] = "POST",
               auth: BackendAuth | None = None) -> PromApi:
        """``auth`` puts its credentials on ``client`` (its CA must already be in the client's ``verify``)."""
        return cls(auth.apply(client) if auth is not None else client, safe_base_url(base_url), method)

    @classmethod
    def from_config(cls, config: PromConfig) -> PromApi:
        """A client of its own; the caller closes it with :meth:`aclose`."""
        client = httpx.AsyncClient(timeout=config.timeout_s, follow_redirects=False, verify=config.auth.verify())
        return cls.create(client, config.base_url, method=config.method, auth=config.auth)

    async def aclose(self) -> None:
        await self.client.aclose()

    async def call(self, path: str, form: dict[str, str], log: RequestLog) -> dict[str, Any]:
        url = f"{self.base_url}{path}"
        log.sent(self.method, url, form)
        if self.method == "POST":
            response = await self.client.post(url, data=form)
        else:
            response = await self.client.get(url, params=form)
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise error_for_status(
                response.status_code if not response.is_success else 502,
                f"prometheus {path}: {response.status_code} {response.reason_phrase}, not a JSON answer: "
                f"{upstream_body(response)}",
            )
        if body.get("status") != "success":
            message = (
                f"prometheus {path}: {response.status_code} {body.get('errorType', 'error')}: "
                f"{body.get('error', upstream_body(response))}"
            )
            raise (error_for_status(response.status_code, message) if not response.is_success
                   else UpstreamError(message, status=response.status_code))
        data = body.get("data")
        if not isinstance(data, dict):
            raise UpstreamError(f"prometheus {path}: answer without a data object")
        warnings = body.get("warnings") or []
        data["_warnings"] = [str(w) for w in warnings][:5] if isinstance(warnings, list) else []
        return data


def _labels(metric: object) -> str:
    if not isinstance(metric, dict) or not metric:
        return "(aggregate, no labels)"
    name = metric.get("__name__", "")
    rest = ", ".join(f'{k}="{v}"' for k, v in sorted(metric.items()) if k != "__name__")
    return f"{name}{{{rest}}}"


def _num(text: object) -> float:
    try:
        return float(str(text))
    except ValueError:
        return math.nan


def _warnings(data: dict[str, Any]) -> str:
    warns = data.get("_warnings") or []
    return ("\nwarnings: " + "; ".join(warns)) if warns else ""


def summarise_instant(data: dict[str, Any]) -> Finding:
    """Vector/scalar → top-k series by value; the step's value is the largest (policy queries aggregate to one)."""
    kind = data.get("resultType")
    result = data.get("result")
    if kind in ("scalar", "string"):
        value = _num(result[1]) if isinstance(result, list) and len(result) == 2 else math.nan
        return Finding(f"{kind}: {value:g}{_warnings(data)}", value=value if kind == "scalar" else None)
    series = [(s.get("metric"), _num((s.get("value") or [0, "NaN"])[1])) for s in result or [] if isinstance(s, dict)]
    if not series:
        return Finding(f"no series matched (empty {kind}){_warnings(data)}", no_data=True)
    ordered = sorted(series, key=lambda s: (not math.isfinite(s[1]), -s[1] if math.isfinite(s[1]) else 0.0))
    lines = [f"{len(series)} series; top {min(TOP_K, len(series))} by value:"]
    lines += [f"- {_labels(m)} = {v:g}" for m, v in ordered[:TOP_K]]
    finite = [v for _, v in series if math.isfinite(v)]
    extra: dict[str, float] = {}
    if len(series) > 1:
        extra["series"] = float(len(series))
    if len(finite) > 1:
        extra.update({"min": min(finite), "sum": sum(finite)})
    return Finding("\n".join(lines) + _warnings(data), value=max(finite) if finite else None, extra=extra)


def summarise_range(data: dict[str, Any]) -> Finding:
    """Matrix → per-series min/max/avg/last for the top-k series (by max); the step's value is the overall last."""
    result = [s for s in data.get("result") or [] if isinstance(s, dict)]
    if not result:
        return Finding(f"no series matched in the range{_warnings(data)}", no_data=True)
    rows = []
    for s in result:
        numbers = [_num(point[1]) for point in s.get("values") or [] if isinstance(point, list) and len(point) == 2]
        line, stats = stats_line(_labels(s.get("metric")), numbers)
        rows.append((stats.get("max", -math.inf), line, stats))
    rows.sort(key=lambda r: -r[0])
    lines = [f"{len(rows)} series; top {min(TOP_K, len(rows))} by max:"] + [f"- {line}" for _, line, _ in rows[:TOP_K]]
    top = rows[0][2]
    extra = {k: v for k, v in top.items() if k != "last"}
    extra["series"] = float(len(rows))
    return Finding("\n".join(lines) + _warnings(data), value=top.get("last"), extra=extra)


class PromTool(EvidenceTool[Any]):
    """Shared construction for the two operations: both read the same ``PromApi``."""

    def __init__(self, api: PromApi) -> None:
        self.api = api


class Query(PromTool):
    spec = ActionSpec(
        name="prom.query",
        description="Instant PromQL query (POST /api/v1/query) evaluated at the incident's analysis time; "
        "returns the top series by value.",
        params=QueryParams,
        risk=Risk.READ,
    )

    async def _gather(self, params: QueryParams, ctx: EvidenceContext, log: RequestLog) -> Finding:
        form = {"query": params.query, "time": f"{ctx.now.timestamp():.3f}"}
        return summarise_instant(await self.api.call("/api/v1/query", form, log))


class QueryRange(PromTool):
    spec = ActionSpec(
        name="prom.query_range",
        description="Range PromQL query (POST /api/v1/query_range) over the last `range` at `step`; "
        "returns min/max/avg/last of the top series.",
        params=RangeParams,
        risk=Risk.READ,
    )

    async def _gather(self, params: RangeParams, ctx: EvidenceContext, log: RequestLog) -> Finding:
        span, step = _seconds(params.range), _seconds(params.step)
        if span // step > MAX_POINTS:
            step = -(-span // MAX_POINTS)  # coarser step rather than a refused query
        end = ctx.now.timestamp()
        start = (ctx.now - timedelta(seconds=span)).timestamp()
        form = {"query": params.query, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step}s"}
        return summarise_range(await self.api.call("/api/v1/query_range", form, log))
