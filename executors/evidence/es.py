"""es.count / es.search: log volume and top messages from Elasticsearch, over its REST API with httpx.

Why httpx rather than the ``elasticsearch`` client: the async client brings an
aiohttp stack and its own retry/transport layers, while these two read-only
``_search`` calls need an injected client, one error mapping shared with the
other tools, and a stand-in server in tests. Nothing here needs the extra.

Plan steps are written in a small Lucene-like form (``field:"value" AND
@timestamp:[now-5m TO now]``); it is parsed strictly into a ``bool.filter`` of
``term`` and ``range`` clauses in the JSON body. No text from an alert is ever
sent as a ``query_string``, so it cannot add a clause, a wildcard or a script.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any
from urllib.parse import quote

import httpx
from pydantic import AfterValidator, BaseModel, ConfigDict

from executors.base import ActionSpec
from executors.errors import UpstreamError, error_for_status
from executors.evidence.auth import BackendAuth
from executors.evidence.base import EvidenceContext, EvidenceTool, Finding, RequestLog, upstream_body
from executors.evidence.k8s import repeated_lines
from executors.params import Params
from executors.tools._http import safe_base_url
from schemas.records import Risk

MAX_TERMS = 8
MAX_VALUE_CHARS = 256
TOP_K = 5
SAMPLE_HITS = 200
_FIELD = r"@?[A-Za-z_][A-Za-z0-9_.@-]{0,99}"
_TERM_RE = re.compile(rf'^(?P<field>{_FIELD}):"(?P<value>(?:[^"\\]|\\.)*)"$')
_RANGE_RE = re.compile(rf"^(?P<field>{_FIELD}):\[(?P<gte>\S+) TO (?P<lte>\S+)\]$")
#: Elasticsearch date math we accept as a range bound: ``now``, ``now-5m``, ``now-1h/h``.
_DATE_MATH = re.compile(r"^now(-\d{1,4}[smhd])?(/[smhd])?$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_INDEX_RE = re.compile(r"^[a-z0-9][a-z0-9_.*,-]{0,254}$")


class EsConfig(BaseModel):
    """Where the logs are and how they are mapped (defaults: the DCE 5 Insight / fluent-bit layout)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    base_url: str
    index: str = "insight-es-k8s-logs-*"
    timeout_s: float = 10.0
    pod_field: str = "kubernetes.pod_name"
    #: The term that confines a query to one namespace; a query without it reads every namespace's logs.
    namespace_field: str = "kubernetes.namespace_name"
    container_field: str = "kubernetes.container_name"
    message_field: str = "log"
    time_field: str = "@timestamp"
    #: Basic auth, an API key, and/or a private CA (production Elasticsearch 8 has security on).
    auth: BackendAuth = BackendAuth()


@dataclass(frozen=True, slots=True)
class LogFilter:
    """A parsed plan query: exact terms and at most one time range."""

    terms: tuple[tuple[str, str], ...]
    range: tuple[str, str, str] | None  # field, gte, lte

    def to_es(self, now: datetime | None = None) -> dict[str, Any]:
        """The ``bool.filter``; with ``now``, date math is resolved against it so a replay asks the same question."""
        clauses: list[dict[str, Any]] = [{"term": {field: value}} for field, value in self.terms]
        if self.range is not None:
            field, gte, lte = self.range
            if now is not None:
                gte, lte = resolve_date_math(gte, now), resolve_date_math(lte, now)
            clauses.append({"range": {field: {"gte": gte, "lte": lte}}})
        return {"bool": {"filter": clauses}}


def resolve_date_math(text: str, now: datetime) -> str:
    """``now-5m`` / ``now-1h/h`` → an ISO-8601 UTC instant relative to ``now``."""
    match = _DATE_MATH.fullmatch(text)
    if match is None:
        raise ValueError("not date math")
    moment = now.astimezone(UTC)
    if match.group(1):
        moment -= timedelta(seconds=int(match.group(1)[1:-1]) * _UNITS[match.group(1)[-1]])
    if match.group(2):
        unit = match.group(2)[1]
        moment = moment.replace(microsecond=0)
        if unit in "mhd":
            moment = moment.replace(second=0)
        if unit in "hd":
            moment = moment.replace(minute=0)
        if unit == "d":
            moment = moment.replace(hour=0)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_filter(text: str) -> LogFilter:
    """``a:"x" AND b:"y" AND @timestamp:[now-5m TO now]`` → LogFilter; anything else is refused."""
    if len(text) > 2000:
        raise ValueError("query is longer than 2000 characters")
    terms: list[tuple[str, str]] = []
    window: tuple[str, str, str] | None = None
    for clause in _split_and(text):
        if match := _TERM_RE.fullmatch(clause):
            value = re.sub(r"\\(.)", r"\1", match["value"])
            if not value or len(value) > MAX_VALUE_CHARS or _CONTROL.search(value):
                raise ValueError(f"term value for {match['field']} must be 1-{MAX_VALUE_CHARS} printable characters")
            terms.append((match["field"], value))
        elif (match := _RANGE_RE.fullmatch(clause)) and window is None:
            if not (_DATE_MATH.fullmatch(match["gte"]) and _DATE_MATH.fullmatch(match["lte"])):
                raise ValueError("range bounds must be date math like now-5m and now")
            window = (match["field"], match["gte"], match["lte"])
        else:
            raise ValueError('each clause must be field:"value" or field:[now-5m TO now] (one range), joined by AND')
    if not terms or len(terms) > MAX_TERMS:
        raise ValueError(f"give 1-{MAX_TERMS} field:\"value\" terms")
    return LogFilter(tuple(terms), window)


def _split_and(text: str) -> list[str]:
    """Split on `` AND `` outside double quotes (a quoted value may contain the word)."""
    parts, buf, quoted, i = [], [], False, 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and quoted:
            buf.append(text[i : i + 2])
            i += 2
            continue
        if ch == '"':
            quoted = not quoted
        if not quoted and text.startswith(" AND ", i):
            parts.append("".join(buf).strip())
            buf, i = [], i + 5
            continue
        buf.append(ch)
        i += 1
    parts.append("".join(buf).strip())
    return parts


def _filter(value: str) -> str:
    parse_filter(value)
    return value


class FilterParams(Params):
    query: Annotated[str, AfterValidator(_filter)]


@dataclass(frozen=True, slots=True)
class EsApi:
    client: httpx.AsyncClient
    base_url: str
    config: EsConfig

    @classmethod
    def create(cls, client: httpx.AsyncClient, config: EsConfig) -> EsApi:
        if not _INDEX_RE.fullmatch(config.index):
            raise ValueError("index must be lower-case letters, digits, '_', '.', '-', '*' or ','")
        return cls(config.auth.apply(client), safe_base_url(config.base_url), config)

    @classmethod
    def from_config(cls, config: EsConfig) -> EsApi:
        """A client of its own (auth headers and CA go on it); the caller closes it with :meth:`aclose`."""
        client = httpx.AsyncClient(timeout=config.timeout_s, follow_redirects=False, verify=config.auth.verify())
        return cls.create(client, config)

    async def aclose(self) -> None:
        await self.client.aclose()

    async def search(self, body: dict[str, Any], log: RequestLog) -> dict[str, Any]:
        url = f"{self.base_url}/{quote(self.config.index, safe='*,')}/_search"
        log.sent("POST", url, body)
        response = await self.client.post(url, json=body, params={"ignore_unavailable": "true"})
        if not response.is_success:
            raise error_for_status(response.status_code, f"elasticsearch _search: {response.status_code} "
                                   f"{_es_reason(response)}")
        data = response.json()
        if not isinstance(data, dict):
            raise UpstreamError("elasticsearch _search: answer is not a JSON object")
        shards = data.get("_shards") or {}
        if shards.get("failed") and not data.get("hits"):
            raise UpstreamError(f"elasticsearch _search: {shards.get('failed')} shard(s) failed")
        return data


def _es_reason(response: httpx.Response) -> str:
    """ES errors are ``{"error": {"type", "reason", "root_cause": [...]}, "status"}``: keep type and reason."""
    try:
        body = response.json()
    except ValueError:
        return upstream_body(response)
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        root = (error.get("root_cause") or [{}])[0]
        reason = error.get("reason") or (root.get("reason") if isinstance(root, dict) else "")
        return f"{error.get('type', 'error')}: {reason}"[:600]
    return upstream_body(response)


def _total(data: dict[str, Any]) -> int:
    total = (data.get("hits") or {}).get("total")
    return int(total.get("value", 0)) if isinstance(total, dict) else int(total or 0)


def _buckets(data: dict[str, Any], name: str) -> list[tuple[str, int]]:
    agg = (data.get("aggregations") or {}).get(name) or {}
    return [(str(b.get("key_as_string", b.get("key"))), int(b.get("doc_count", 0)))
            for b in agg.get("buckets") or [] if isinstance(b, dict)]


class EsTool(EvidenceTool[Any]):
    def __init__(self, api: EsApi) -> None:
        self.api = api

    def namespaces_in(self, query: str) -> tuple[str, ...] | None:
        field = self.api.config.namespace_field
        return tuple(sorted({value for name, value in parse_filter(query).terms if name == field}))


class Count(EsTool):
    spec = ActionSpec(
        name="es.count",
        description="Log volume matching exact field terms over a time window, broken down by pod, container "
        "and minute (terms + date_histogram aggregations). Value: matching log lines.",
        params=FilterParams,
        risk=Risk.READ,
    )

    async def _gather(self, params: FilterParams, ctx: EvidenceContext, log: RequestLog) -> Finding:
        cfg = self.api.config
        flt = parse_filter(params.query)
        body = {
            "size": 0,
            "track_total_hits": True,
            "query": flt.to_es(ctx.now),
            "aggs": {
                "by_pod": {"terms": {"field": cfg.pod_field, "size": TOP_K}},
                "by_container": {"terms": {"field": cfg.container_field, "size": TOP_K}},
                "over_time": {"date_histogram": {"field": cfg.time_field, "fixed_interval": "1m",
                                                 "min_doc_count": 0}},
            },
        }
        data = await self.api.search(body, log)
        total = _total(data)
        if total == 0:
            return Finding(f"no log lines in {cfg.index} match the filter", value=0.0, no_data=True)
        lines = [f"{total} log line(s) matched"]
        for name, title in (("by_pod", "by pod"), ("by_container", "by container")):
            buckets = _buckets(data, name)
            if buckets:
                lines.append(f"{title}: " + ", ".join(f"{k} {n}" for k, n in buckets))
        per_minute = [n for _, n in _buckets(data, "over_time")]
        extra: dict[str, float] = {}
        if per_minute:
            extra = {"per_min_max": float(max(per_minute)), "per_min_last": float(per_minute[-1])}
            lines.append(f"per minute: max {max(per_minute)}, last {per_minute[-1]}, over {len(per_minute)} minute(s)")
        return Finding("\n".join(lines), value=float(total), extra=extra)


class Search(EsTool):
    spec = ActionSpec(
        name="es.search",
        description=f"The newest {SAMPLE_HITS} log lines matching exact field terms, folded into the "
        f"{TOP_K} most repeated messages. Value: matching log lines.",
        params=FilterParams,
        risk=Risk.READ,
    )

    async def _gather(self, params: FilterParams, ctx: EvidenceContext, log: RequestLog) -> Finding:
        cfg = self.api.config
        body = {
            "size": SAMPLE_HITS,
            "track_total_hits": True,
            "query": parse_filter(params.query).to_es(ctx.now),
            "sort": [{cfg.time_field: {"order": "desc"}}],
            "_source": [cfg.message_field, cfg.pod_field],
        }
        data = await self.api.search(body, log)
        total = _total(data)
        messages = []
        for hit in (data.get("hits") or {}).get("hits") or []:
            source = hit.get("_source") if isinstance(hit, dict) else None
            message = _dig(source, cfg.message_field) if isinstance(source, dict) else None
            if isinstance(message, str):
                messages.append(" ".join(message.split()))
        if not messages:
            return Finding(f"no log lines in {cfg.index} match the filter", value=float(total), no_data=True)
        lines = [f"{total} log line(s) matched; top messages of the newest {len(messages)}:"]
        lines += [f"- x{n}: {m[:300]}" for m, n in repeated_lines(messages, TOP_K)]
        return Finding("\n".join(lines), value=float(total))


def _dig(source: dict[str, Any], dotted: str) -> object:
    """``kubernetes.pod_name`` in either a flat or a nested ``_source``."""
    if dotted in source:
        return source[dotted]
    node: object = source
    for part in dotted.split("."):
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node
