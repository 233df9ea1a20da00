"""App-only access tokens for Graph: the one-method seam and its msal implementation."""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any, Protocol

from producers.msgraph.errors import GraphAuthError, GraphError

logger = logging.getLogger(__name__)

GRAPH_DEFAULT_SCOPE = "https://graph.microsoft.com/.default"


class TokenProvider(Protocol):
    """Hands out a bearer token; ``refresh=True`` after Graph said 401 (expired or revoked)."""

    async def token(self, *, refresh: bool = False) -> str: ...


def _load_msal() -> Any:
    try:
        import msal
    except ImportError as exc:  # pragma: no cover - exercised only without the extra
        raise ImportError('the Graph producer needs msal: run "pip install rcaflow[msgraph]"') from exc
    return msal


class MsalTokenProvider:
    """Client-credentials flow through msal's ConfidentialClientApplication.

    msal caches the token and refreshes it shortly before expiry by itself; ``refresh=True``
    drops the cached token first, for when Graph rejects one msal still believes valid.
    msal is synchronous (requests), so calls run in a worker thread, one at a time.
    """

    def __init__(
        self,
        *,
        client_id: str,
        client_secret: str,
        authority: str,
        scopes: tuple[str, ...] = (GRAPH_DEFAULT_SCOPE,),
        http_client: Any = None,
        validate_authority: bool = True,
    ) -> None:
        msal = _load_msal()
        kwargs: dict[str, Any] = {
            "client_id": client_id,
            "client_credential": client_secret,
            "authority": authority,
        }
        # Our own session when none is given, so ``close`` can release its pooled connections.
        self._owned_session: Any = None
        if http_client is None:
            import requests

            http_client = self._owned_session = requests.Session()
        kwargs["http_client"] = http_client
        if not validate_authority:
            # Sovereign clouds and test stand-ins are not in Microsoft's instance list.
            kwargs["validate_authority"] = False
            kwargs["instance_discovery"] = False
        self._kwargs = kwargs
        self._msal = msal
        self._app: Any = None
        self._scopes = list(scopes)
        self._lock = threading.Lock()

    def _acquire(self, refresh: bool) -> str:
        with self._lock:
            try:
                if self._app is None:
                    # Built lazily: msal fetches the authority's OpenID configuration on construction.
                    self._app = self._msal.ConfidentialClientApplication(**self._kwargs)
                if refresh:
                    self._app.remove_tokens_for_client()
                result = self._app.acquire_token_for_client(scopes=self._scopes)
            except ValueError as exc:
                raise GraphAuthError(f"msal cannot use the authority: {exc}") from exc
            except OSError as exc:  # requests' ConnectionError is an OSError
                raise GraphError(f"token endpoint unreachable: {exc}", retriable=True) from exc
        if not isinstance(result, dict):
            raise GraphError("msal returned no token response", retriable=True)
        token = result.get("access_token")
        if isinstance(token, str) and token:
            return token
        error = str(result.get("error", "unknown"))
        description = str(result.get("error_description", ""))[:300]
        retriable = error in {"temporarily_unavailable", "server_error"}
        cls = GraphError if retriable else GraphAuthError
        raise cls(f"token request refused: {error}: {description}", retriable=retriable)

    async def token(self, *, refresh: bool = False) -> str:
        return await asyncio.to_thread(self._acquire, refresh)

    def close(self) -> None:
        """Close the HTTP session this provider created (a session passed in belongs to the caller)."""
        if self._owned_session is not None:
            self._owned_session.close()


class StaticTokenProvider:
    """A fixed token, for stand-ins and for tokens minted by something else (a sidecar)."""

    def __init__(self, token: str) -> None:
        self._token = token

    async def token(self, *, refresh: bool = False) -> str:
        return self._token
