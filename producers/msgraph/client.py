"""The few Microsoft Graph calls the producer needs, over an injected ``httpx.AsyncClient``.

One place maps HTTP outcomes to our errors: 401 refreshes the token once, 429/503
honour Retry-After, other 5xx and transport errors back off exponentially with jitter.
Ids from notifications are untrusted: they are validated and percent-encoded before
they become URL path segments, and paging links are followed only on the Graph base URL.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from producers.msgraph.errors import (
    GraphAuthError,
    GraphError,
    GraphNotFoundError,
    GraphProtocolError,
    GraphThrottledError,
    MailTooLargeError,
)
from producers.msgraph.retry import RETRY_STATUSES, RetryPolicy, parse_retry_after, retry_delay
from producers.msgraph.tokens import TokenProvider
from producers.oversize import header_block

logger = logging.getLogger(__name__)

#: Graph REST and immutable ids are base64 variants; anything else in a notification is refused.
_GRAPH_ID = re.compile(r"^[A-Za-z0-9_\-=+/]{1,512}$")


#: A user (GUID or UPN) or folder (well-known name or id) from configuration.
_NAME = re.compile(r"^[A-Za-z0-9@._\-=+]{1,256}$")


def name_segment(value: str) -> str:
    """A configured user or folder as a URL path segment; dot-segments could climb the path, so refuse them."""
    if not _NAME.fullmatch(value) or set(value) == {"."}:
        raise GraphProtocolError(f"not a Graph user or folder name: {value[:80]!r}")
    return quote(value, safe="@")


def graph_id(value: str) -> str:
    """``value`` as a safe, percent-encoded URL path segment, or GraphProtocolError."""
    if not _GRAPH_ID.fullmatch(value):
        raise GraphProtocolError(f"not a Graph id: {value[:80]!r}")
    return quote(value, safe="")


class Subscription(BaseModel):
    """The fields of a Graph subscription resource we read back."""

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    id: str
    resource: str = ""
    change_type: str = Field("", alias="changeType")
    notification_url: str = Field("", alias="notificationUrl")
    expiration: datetime = Field(alias="expirationDateTime")


@dataclass(frozen=True, slots=True)
class DeltaItem:
    """One entry of a delta page: a message id, its RFC 822 Message-ID if selected, or a removal."""

    id: str
    internet_message_id: str | None
    removed: bool
    received_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class DeltaPage:
    items: tuple[DeltaItem, ...]
    next_link: str | None
    delta_link: str | None


class GraphClient:
    """Graph v1.0 calls with token handling and retries; ``sleep``/``rand`` are injectable for tests."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        tokens: TokenProvider,
        *,
        base_url: str = "https://graph.microsoft.com/v1.0",
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self._http = http
        self._tokens = tokens
        self._base = base_url.rstrip("/")
        self._retry = retry or RetryPolicy()
        self._sleep = sleep
        self._rand = rand

    @property
    def base_url(self) -> str:
        return self._base

    # ------------------------------------------------------------------ transport

    def _absolute(self, path_or_link: str) -> str:
        if path_or_link.startswith("/"):
            return self._base + path_or_link
        # A nextLink/deltaLink: follow it only on our Graph base, so a forged link cannot
        # send the bearer token anywhere else.
        if not path_or_link.startswith(self._base + "/"):
            raise GraphProtocolError(f"refusing a link outside {self._base}: {path_or_link[:120]!r}")
        return path_or_link

    async def request(
        self, method: str, path_or_link: str, *, json: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        """Send one logical request (retrying as Graph documents) and return a 2xx response."""
        url = self._absolute(path_or_link)
        refreshed = False
        attempt = 0
        while True:
            token = await self._tokens.token(refresh=refreshed)
            sent_headers = {"Authorization": f"Bearer {token}", **(headers or {})}
            try:
                response = await self._http.request(method, url, json=json, headers=sent_headers)
            except httpx.TransportError as exc:
                if attempt + 1 >= self._retry.max_attempts:
                    raise GraphError(f"{method} {_path(url)}: {exc!r}", retriable=True) from exc
                delay = retry_delay(attempt, None, self._retry, self._rand)
                logger.warning("%s %s failed (%r); retry %d in %.2fs", method, _path(url), exc, attempt + 1, delay)
                attempt += 1
                await self._sleep(delay)
                continue
            status = response.status_code
            if status < 300:
                return response
            if status == 401 and not refreshed:
                # Expired or revoked token: one retry with a fresh one, not counted as an attempt.
                logger.info("%s %s answered 401; refreshing the token", method, _path(url))
                refreshed = True
                continue
            body = _excerpt(response)
            if status in {401, 403}:
                raise GraphAuthError(f"{method} {_path(url)} -> {status}: {body}", status=status)
            if status == 404:
                raise GraphNotFoundError(f"{method} {_path(url)} -> 404: {body}", status=status)
            if status in RETRY_STATUSES:
                hint = parse_retry_after(response.headers.get("Retry-After"))
                too_long = hint is not None and hint > self._retry.max_retry_after_seconds
                if too_long or attempt + 1 >= self._retry.max_attempts:
                    raise GraphThrottledError(
                        f"{method} {_path(url)} -> {status} after {attempt + 1} attempts: {body}",
                        status=status, retry_after=hint,
                    )
                delay = retry_delay(attempt, hint, self._retry, self._rand)
                logger.warning("%s %s -> %d; retry %d in %.2fs", method, _path(url), status, attempt + 1, delay)
                attempt += 1
                await self._sleep(delay)
                continue
            raise GraphError(f"{method} {_path(url)} -> {status}: {body}", retriable=False, status=status)

    async def _json(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        response = await self.request(method, path, json=body)
        try:
            data = response.json()
        except ValueError as exc:
            raise GraphProtocolError(f"{method} {_path(path)}: response is not JSON") from exc
        if not isinstance(data, dict):
            raise GraphProtocolError(f"{method} {_path(path)}: response is not a JSON object")
        return data

    # ------------------------------------------------------------------ subscriptions

    async def create_subscription(
        self, *, resource: str, notification_url: str, lifecycle_url: str, client_state: str, expiration: datetime,
    ) -> Subscription:
        body = {
            "changeType": "created",
            "resource": resource,
            "notificationUrl": notification_url,
            "lifecycleNotificationUrl": lifecycle_url,
            "clientState": client_state,
            "expirationDateTime": _graph_time(expiration),
        }
        return _subscription(await self._json("POST", "/subscriptions", body))

    async def renew_subscription(self, subscription_id: str, expiration: datetime) -> Subscription:
        body = {"expirationDateTime": _graph_time(expiration)}
        return _subscription(await self._json("PATCH", f"/subscriptions/{graph_id(subscription_id)}", body))

    async def reauthorize_subscription(self, subscription_id: str) -> None:
        await self.request("POST", f"/subscriptions/{graph_id(subscription_id)}/reauthorize")

    async def delete_subscription(self, subscription_id: str) -> None:
        await self.request("DELETE", f"/subscriptions/{graph_id(subscription_id)}")

    async def list_subscriptions(self) -> list[Subscription]:
        found: list[Subscription] = []
        link: str | None = "/subscriptions"
        while link:
            data = await self._json("GET", link)
            found.extend(_subscription(item) for item in data.get("value", []) if isinstance(item, dict))
            next_link = data.get("@odata.nextLink")
            link = next_link if isinstance(next_link, str) else None
        return found

    # ------------------------------------------------------------------ messages

    async def message_mime(self, user: str, message_id: str, max_bytes: int) -> bytes:
        """The message's full RFC 822 bytes, exactly as Exchange returns them.

        Raises :class:`MailTooLargeError` above ``max_bytes``: such a mail can never be published, so
        the caller dead-letters it instead of fetching it again on every drain.
        """
        path = f"/users/{name_segment(user)}/messages/{graph_id(message_id)}/$value"
        response = await self.request("GET", path)
        content = response.content
        if len(content) > max_bytes:
            raise MailTooLargeError(
                f"message {message_id[:40]} is {len(content)} bytes, above the {max_bytes}-byte mail limit",
                graph_id=message_id, size=len(content), limit=max_bytes, head=header_block(content),
                sha256=hashlib.sha256(content).hexdigest())
        return content

    def delta_start(self, user: str, folder: str) -> str:
        """First delta URL of a folder; only ids and Message-IDs, so catch-up skips what was published."""
        return (
            f"/users/{name_segment(user)}/mailFolders/{name_segment(folder)}/messages/delta"
            "?$select=internetMessageId,receivedDateTime"
        )

    async def delta_page(self, link: str) -> DeltaPage:
        data = await self._json("GET", link, None)
        items: list[DeltaItem] = []
        for raw in data.get("value", []):
            if not isinstance(raw, dict) or not isinstance(raw.get("id"), str):
                continue
            imid = raw.get("internetMessageId")
            items.append(
                DeltaItem(
                    raw["id"], imid if isinstance(imid, str) else None, "@removed" in raw,
                    _parse_time(raw.get("receivedDateTime")),
                )
            )
        next_link, delta_link = data.get("@odata.nextLink"), data.get("@odata.deltaLink")
        if not isinstance(next_link, str) and not isinstance(delta_link, str):
            raise GraphProtocolError("delta page has neither @odata.nextLink nor @odata.deltaLink")
        return DeltaPage(
            tuple(items),
            next_link if isinstance(next_link, str) else None,
            delta_link if isinstance(delta_link, str) else None,
        )


def _graph_time(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _subscription(data: dict[str, Any]) -> Subscription:
    try:
        return Subscription.model_validate(data)
    except ValidationError as exc:
        raise GraphProtocolError(f"unexpected subscription resource: {exc.error_count()} errors") from exc


def _path(url: str) -> str:
    """The URL without its query: delta tokens and skip tokens stay out of the logs."""
    return url.split("?", 1)[0]


def _excerpt(response: httpx.Response) -> str:
    try:
        text = response.text
    except (UnicodeDecodeError, httpx.ResponseNotRead):
        return "<unreadable body>"
    return text[:300]
