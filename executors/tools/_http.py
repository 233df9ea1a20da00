"""Shared HTTP helpers for tools: one place that turns a non-2xx answer into a typed error."""

from __future__ import annotations

from urllib.parse import urlsplit

import httpx

from executors.errors import error_for_status

#: How much of an upstream error body we keep: the reader needs the reason, not a page of HTML.
MAX_BODY = 300


def check(response: httpx.Response, what: str, *, hint: str = "") -> httpx.Response:
    """Return ``response`` if it is 2xx, else raise the ExecutorError its status maps to."""
    if response.is_success:
        return response
    body = response.text.strip().replace("\n", " ")[:MAX_BODY]
    message = f"{what}: {response.status_code} {response.reason_phrase}" + (f": {body}" if body else "")
    if hint:
        message = f"{message} ({hint})"
    raise error_for_status(response.status_code, message)


def safe_base_url(url: str) -> str:
    """Validate a configured base URL (http/https, no credentials, no query) and strip the trailing '/'."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"base URL must be http(s)://host[:port][/path], got scheme {parts.scheme!r}")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise ValueError("base URL must not carry credentials, a query or a fragment; configure auth on the client")
    return url.rstrip("/")
