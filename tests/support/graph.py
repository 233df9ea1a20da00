"""Microsoft Graph throttling as Graph documents it, on top of the Graph stand-in.

Graph answers a throttled request with ``429 Too Many Requests`` and a ``Retry-After`` header (seconds)
and an error body whose code is ``TooManyRequests``; a ``503 Service Unavailable`` may carry
``Retry-After`` too (https://learn.microsoft.com/graph/throttling). The plain stand-in's faults carry
only what a test spells out; this one answers the way Graph does.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime

from starlette.responses import JSONResponse, Response

from tests.unit.producers.msgraph.standin import GraphStandIn

#: Graph's error codes for the two statuses it documents with Retry-After.
GRAPH_CODES = {429: "TooManyRequests", 503: "serviceNotAvailable"}


@dataclass
class Throttle:
    status: int
    retry_after: int | None


@dataclass
class ThrottlingGraph(GraphStandIn):
    throttles: dict[tuple[str, str], list[Throttle]] = field(default_factory=dict)

    def throttle(self, method: str, path: str, *, times: int, status: int = 429, retry_after: int | None = 10) -> None:
        """The next ``times`` requests to ``method path`` (after /v1.0) are throttled; None sends no Retry-After."""
        self.throttles.setdefault((method, path), []).extend(Throttle(status, retry_after) for _ in range(times))

    def _fault(self, method: str, path: str) -> Response | None:
        queue = self.throttles.get((method, path))
        if not queue:
            return super()._fault(method, path)
        throttle = queue.pop(0)
        code = GRAPH_CODES.get(throttle.status, str(throttle.status))
        message = "Please retry again later."
        body = {"error": {"code": code, "message": message, "innerError": {
            "code": code, "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S"), "message": message,
            "request-id": str(uuid.uuid4()), "status": str(throttle.status)}}}
        headers = {"Retry-After": str(throttle.retry_after)} if throttle.retry_after is not None else {}
        return JSONResponse(body, status_code=throttle.status, headers=headers)
