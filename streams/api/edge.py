"""The request edge: a body-size limit per route, enforced while the body streams in, and closed metric labels.

Why a middleware and not a check in each handler: the limit must hold before anything
buffers the body (FastAPI reads and parses a declared body model before it runs the
dependencies, token check included), for every route, and for chunked uploads that
declare no Content-Length. Handlers that accept a body read it only after the tenant's
token was checked (``read_model``), so an anonymous caller never gets a body parsed.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import TypeVar

from fastapi import HTTPException, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from schemas.limits import MAX_SMALL_BODY_BYTES
from streams.errors import StreamsError

logger = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)

#: Metric label for a request that matched no route: unknown paths must not mint new series.
OTHER_ROUTE = "other"


class BodyTooLargeError(StreamsError, HTTPException):
    """413 with the route's limit; raised while reading, so the body is never buffered past it.

    Also an ``HTTPException`` so that every route answers it as 413, including routes whose body
    FastAPI reads itself (it re-raises HTTP exceptions and turns anything else into a 400).
    """

    retriable = False

    def __init__(self, path: str, limit: int, size: int | None = None) -> None:
        seen = f"{size} bytes" if size is not None else f"more than {limit} bytes"
        detail = f"request body is {seen}; {path} accepts at most {limit} bytes"
        StreamsError.__init__(self, detail)
        HTTPException.__init__(self, 413, detail)
        self.path = path
        self.limit = limit


class BodyLimit:
    """ASGI middleware: refuse a declared Content-Length over the route's limit at once (nothing read),
    and stop a body that streams past it (chunked, or lying about its length) at the limit."""

    def __init__(self, app: ASGIApp, *, limits: Mapping[str, int], default: int = MAX_SMALL_BODY_BYTES) -> None:
        self.app = app
        self.limits = dict(limits)
        self.default = default

    def limit_for(self, path: str) -> int:
        return self.limits.get(path, self.default)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        limit = self.limit_for(path)
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            logger.info("refused a %d-byte body on %s (limit %d)", declared, path, limit)
            await _send_json(send, 413, {"detail": BodyTooLargeError(path, limit, declared).detail,
                                         "reason": "body_too_large", "limit": limit})
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    logger.info("stopped a streamed body on %s past its %d-byte limit", path, limit)
                    raise BodyTooLargeError(path, limit)
            return message

        await self.app(scope, limited, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # malformed: the server refuses it; the streamed count still applies
    return None


async def _send_json(send: Send, status: int, body: dict[str, object]) -> None:
    payload = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": payload})


def route_label(request: Request) -> str:
    """The matched route's template (``/tools/{family}``), never the raw path: a closed set of label values."""
    route = request.scope.get("route")
    template = getattr(route, "path_format", None) or getattr(route, "path", None)
    return template if isinstance(template, str) else OTHER_ROUTE


async def read_body(request: Request) -> bytes:
    """The body, read under the route's limit (call only after the tenant's token was checked)."""
    return await request.body()


def parse_model(body: bytes, model: type[M]) -> M:
    """The body as ``model``; a malformed body is the same 422 as FastAPI's (field and error, never the value)."""
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        raise RequestValidationError(
            [{**err, "loc": ("body", *err["loc"])} for err in exc.errors(include_input=False, include_url=False)]
        ) from exc


async def read_model(request: Request, model: type[M]) -> M:
    """Read (limited) and parse the body; for handlers that took the tenant first."""
    return parse_model(await read_body(request), model)
