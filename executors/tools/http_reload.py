"""http.reload: POST ``{base}/-/reload`` on a configured, named endpoint (vmalert, Prometheus, Alertmanager).

The action names an endpoint; the URL comes only from configuration, so a
mail can never steer a request to a host of its choosing.

A 200 from ``/-/reload`` does not mean the new configuration is live: vmalert
answers at once and reloads in the background (a broken rules file is only
logged, and the old rules keep running); Prometheus and Alertmanager reload
synchronously but the server's own gauge is still the authority. Endpoints
configured with a ``kind`` are therefore confirmed through the server's
``<kind>_config_last_reload_*`` metrics after the POST, and a rejected
configuration is reported as a failed action rather than a success.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Self

import httpx

from executors.base import ActionSpec, Executor, RunContext, ToolResult
from executors.errors import InvalidParamsError, ToolNotConfiguredError, UnavailableError, UpstreamError
from executors.params import EndpointName, Params
from executors.tools._http import MAX_BODY, check, safe_base_url
from executors.tools.reload_targets import ReloadKind, ReloadTarget
from schemas.records import Risk

logger = logging.getLogger(__name__)


#: Servers that finish the reload before answering the POST: one metrics read after it is enough.
_SYNCHRONOUS = frozenset({ReloadKind.PROMETHEUS, ReloadKind.ALERTMANAGER})


@dataclass(frozen=True, slots=True)
class ReloadState:
    """The reload gauges/counters a server exposes; ``None`` where this server (version) has no such metric."""

    successful: float | None
    success_ts: float | None
    total: float | None
    errors: float | None


class ReloadEndpoints:
    """The named endpoints that may be reloaded, and the client to reach them (auth configured on it).

    ``endpoints`` maps a name to a base URL (no confirmation, as before) or to a
    :class:`ReloadTarget` whose ``kind`` selects how the reload is confirmed.
    ``confirm_attempts`` × ``confirm_interval`` bounds how long we wait for an
    asynchronous (vmalert) reload to show up in the metrics.
    """

    def __init__(
        self,
        client: httpx.AsyncClient,
        endpoints: Mapping[str, str | ReloadTarget],
        *,
        confirm_attempts: int = 10,
        confirm_interval: float = 0.3,
    ) -> None:
        if confirm_attempts < 2 or confirm_interval <= 0:
            raise ValueError("confirm_attempts must be >= 2 and confirm_interval > 0")
        self.client = client
        self.targets: dict[str, ReloadTarget] = {}
        for name, value in endpoints.items():
            target = value if isinstance(value, ReloadTarget) else ReloadTarget(url=value)
            self.targets[name] = ReloadTarget(url=safe_base_url(target.url), kind=target.kind)
        self.endpoints = {name: target.url for name, target in self.targets.items()}
        self.confirm_attempts = confirm_attempts
        self.confirm_interval = confirm_interval

    def target(self, name: str) -> ReloadTarget:
        try:
            return self.targets[name]
        except KeyError:
            known = ", ".join(sorted(self.targets)) or "none"
            raise InvalidParamsError(f"http.reload: unknown target {name!r}; configured: {known}") from None

    def url_for(self, target: str) -> str:
        return f"{self.target(target).url}/-/reload"

    async def read_state(self, target: ReloadTarget) -> ReloadState:
        """Read ``<kind>_config_last_reload_*`` from ``{base}/metrics``; refuse a server that has none."""
        url = f"{target.url}/metrics"
        response = check(await self.client.get(url), f"GET {url}")
        values = parse_unlabelled(response.text, _metric_names(target.kind))
        prefix = f"{target.kind.value}_config_last_reload"
        state = ReloadState(
            successful=values.get(f"{prefix}_successful"),
            success_ts=values.get(f"{prefix}_success_timestamp_seconds"),
            total=values.get(f"{prefix}_total"),
            errors=values.get(f"{prefix}_errors_total"),
        )
        if state.successful is None:
            raise UpstreamError(
                f"GET {url}: no {prefix}_successful metric; is this endpoint really {target.kind.value}?"
            )
        return state

    async def confirm(self, name: str, target: ReloadTarget, before: ReloadState) -> str:
        """Wait (bounded) until the server reports the outcome of our reload; raise if it failed."""
        metric = f"{target.kind.value}_config_last_reload_successful"
        if target.kind in _SYNCHRONOUS:
            after = await self.read_state(target)
            if after.successful == 1:
                return f"confirmed by {metric}=1"
            raise UpstreamError(
                f"reload of {name} failed: {metric}={_fmt(after.successful)} after POST /-/reload; "
                f"{target.kind.value} kept its previous configuration (see its log for the error)"
            )
        # vmalert counts the SIGHUP first, then parses the rules: a moved total alone does not
        # mean the outcome is known, so without a definitive signal we wait one more poll.
        polls_since_seen = 0
        for attempt in range(self.confirm_attempts):
            if attempt:
                await asyncio.sleep(self.confirm_interval)
            after = await self.read_state(target)
            if _moved(before.errors, after.errors):
                raise UpstreamError(
                    f"reload of {name} failed: {target.kind.value} rejected the new configuration "
                    f"({metric}={_fmt(after.successful)}, reload errors {_fmt(before.errors)}→{_fmt(after.errors)}); "
                    "it keeps running the previous rules (see its log for the parse error)"
                )
            if _moved(before.success_ts, after.success_ts):
                return f"confirmed by {metric}=1 (new configuration loaded at {_fmt(after.success_ts)})"
            if after.total is None or _moved(before.total, after.total):
                polls_since_seen += 1
                if polls_since_seen >= 2 and after.successful == 1:
                    return f"confirmed by {metric}=1 (configuration unchanged)"
        waited = (self.confirm_attempts - 1) * self.confirm_interval
        raise UnavailableError(
            f"reload of {name} not confirmed: {target.kind.value} reported no finished reload within "
            f"{waited:.1f}s after POST /-/reload ({metric}={_fmt(after.successful)})"
        )


def _metric_names(kind: ReloadKind) -> frozenset[str]:
    prefix = f"{kind.value}_config_last_reload"
    return frozenset(f"{prefix}_{suffix}" for suffix in
                     ("successful", "success_timestamp_seconds", "total", "errors_total"))


def parse_unlabelled(text: str, names: frozenset[str]) -> dict[str, float]:
    """Values of the wanted unlabelled samples in Prometheus text exposition; anything else is ignored."""
    values: dict[str, float] = {}
    for line in text.splitlines():
        name, _, rest = line.partition(" ")
        if name not in names:
            continue
        try:
            value = float(rest.split()[0])
        except (IndexError, ValueError):
            continue
        if not math.isnan(value):
            values[name] = value
    return values


def _moved(before: float | None, after: float | None) -> bool:
    return before is not None and after is not None and after > before


def _fmt(value: float | None) -> str:
    if value is None:
        return "?"
    return str(int(value)) if value.is_integer() else str(value)


class ReloadParams(Params):
    target: EndpointName


class Reload(Executor[ReloadParams]):
    spec = ActionSpec(
        name="http.reload",
        description="Ask a configured server (by name, e.g. vmalert or prometheus) to reload its configuration "
        "via POST /-/reload.",
        params=ReloadParams,
        risk=Risk.LOW,
    )
    backend = "http"

    def __init__(self, endpoints: ReloadEndpoints | None) -> None:
        self.endpoints = endpoints

    @classmethod
    def from_backend(cls, backend: object | None) -> Self:
        if backend is not None and not isinstance(backend, ReloadEndpoints):
            raise TypeError(f"http.reload needs a ReloadEndpoints backend, got {type(backend).__name__}")
        return cls(backend)

    async def _run(self, params: ReloadParams, ctx: RunContext) -> ToolResult:
        if self.endpoints is None:
            if ctx.dry_run:
                return ToolResult(f"dry run: would POST /-/reload on {params.target!r} (no endpoints configured)")
            raise ToolNotConfiguredError("http.reload: no reload endpoints are configured")
        target = self.endpoints.target(params.target)
        url = f"{target.url}/-/reload"
        verified = target.kind is not ReloadKind.PLAIN
        if ctx.dry_run:
            confirm = f" and confirm via {target.kind.value}_config_last_reload_successful" if verified else ""
            return ToolResult(f"dry run: would POST {url}{confirm}")
        before = await self.endpoints.read_state(target) if verified else None
        response = await self.endpoints.client.post(url)
        try:
            check(
                response,
                f"POST {url}",
                hint="Prometheus needs --web.enable-lifecycle" if response.status_code == 403 else "",
            )
        except UnavailableError as exc:
            if target.kind in _SYNCHRONOUS and exc.status == 500:
                # Their 500 means "the new configuration is invalid", which a retry of this record cannot fix.
                raise UpstreamError(f"reload of {params.target} failed: {exc.message}", status=500,
                                    retriable=False) from exc
            raise
        body = response.text.strip()[:MAX_BODY]
        suffix = f": {body}" if body else ""
        if before is None:
            return ToolResult(f"reloaded {params.target} (POST {url}: {response.status_code}){suffix}")
        confirmation = await self.endpoints.confirm(params.target, target, before)
        logger.info("http.reload of %s for action %s: %s", params.target, ctx.action_id, confirmation)
        return ToolResult(f"reloaded {params.target} (POST {url}: {response.status_code}), {confirmation}{suffix}")
