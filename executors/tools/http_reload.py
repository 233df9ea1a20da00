"""http.reload: POST ``{base}/-/reload`` on a configured, named endpoint (vmalert, Prometheus, Alertmanager).

The action names an endpoint; the URL comes only from configuration, so a
mail can never steer a request to a host of its choosing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Self

import httpx

from executors.base import ActionSpec, Executor, RunContext, ToolResult
from executors.errors import InvalidParamsError, ToolNotConfiguredError
from executors.params import EndpointName, Params
from executors.tools._http import MAX_BODY, check, safe_base_url
from schemas.records import Risk


class ReloadEndpoints:
    """The named endpoints that may be reloaded, and the client to reach them (auth configured on it)."""

    def __init__(self, client: httpx.AsyncClient, endpoints: Mapping[str, str]) -> None:
        self.client = client
        self.endpoints = {name: safe_base_url(url) for name, url in endpoints.items()}

    def url_for(self, target: str) -> str:
        try:
            return f"{self.endpoints[target]}/-/reload"
        except KeyError:
            known = ", ".join(sorted(self.endpoints)) or "none"
            raise InvalidParamsError(f"http.reload: unknown target {target!r}; configured: {known}") from None


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
        url = self.endpoints.url_for(params.target)
        if ctx.dry_run:
            return ToolResult(f"dry run: would POST {url}")
        response = await self.endpoints.client.post(url)
        check(
            response,
            f"POST {url}",
            hint="Prometheus needs --web.enable-lifecycle" if response.status_code == 403 else "",
        )
        body = response.text.strip()[:MAX_BODY]
        suffix = f": {body}" if body else ""
        return ToolResult(f"reloaded {params.target} (POST {url}: {response.status_code}){suffix}")
