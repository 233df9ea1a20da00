"""How an HTTP backend (Elasticsearch, Prometheus) is logged into and which CA it is trusted by.

Production Elasticsearch 8 requires authentication, and Prometheus often sits behind a proxy that
wants basic auth or a bearer token; both may present a certificate from a private CA. The values
come from the settings (env or mounted secret files) as ``SecretStr``; they go on the client as
headers, never into a URL, a log line or an evidence record (``RequestLog`` records the body only).
"""

from __future__ import annotations

import base64
import ssl
from pathlib import Path

import httpx
from pydantic import BaseModel, ConfigDict, SecretStr, model_validator


class BackendAuth(BaseModel):
    """At most one way to log in (basic, an Elasticsearch API key, or a bearer token), plus an optional CA."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: Basic-auth user, with password.
    username: str | None = None
    #: Basic-auth password: from the environment or the secrets dir, never the YAML file.
    password: SecretStr | None = None
    #: Elasticsearch API key, the ``encoded`` value of ``POST /_security/api_key`` (sent as ``ApiKey <key>``).
    api_key: SecretStr | None = None
    #: ``Authorization: Bearer <token>`` (a Prometheus behind an OAuth proxy, a service-account token).
    bearer_token: SecretStr | None = None
    #: PEM file of the CA(s) that signed the server's certificate; None: the system's trust store.
    ca_file: Path | None = None
    #: Off only for a lab: skips certificate verification entirely.
    verify_tls: bool = True

    @model_validator(mode="after")
    def _one_way(self) -> BackendAuth:
        ways = [self.username is not None or self.password is not None, self.api_key is not None,
                self.bearer_token is not None]
        if sum(ways) > 1:
            raise ValueError("set only one of username/password, api_key or bearer_token")
        if (self.username is None) != (self.password is None):
            raise ValueError("basic auth needs both username and password")
        return self

    def headers(self) -> dict[str, str]:
        """The ``Authorization`` header, if any (httpx.BasicAuth would also do, but one path for all three)."""
        if self.username is not None and self.password is not None:
            pair = f"{self.username}:{self.password.get_secret_value()}".encode()
            return {"Authorization": "Basic " + base64.b64encode(pair).decode("ascii")}
        if self.api_key is not None:
            return {"Authorization": f"ApiKey {self.api_key.get_secret_value()}"}
        if self.bearer_token is not None:
            return {"Authorization": f"Bearer {self.bearer_token.get_secret_value()}"}
        return {}

    def verify(self) -> ssl.SSLContext | bool:
        """What httpx's ``verify=`` takes: a context trusting ``ca_file``, or True/False."""
        if not self.verify_tls:
            return False
        if self.ca_file is None:
            return True
        return ssl.create_default_context(cafile=str(self.ca_file))

    def apply(self, client: httpx.AsyncClient) -> httpx.AsyncClient:
        """Put the credentials on ``client`` (the CA must be given when the client is built: see :meth:`verify`)."""
        client.headers.update(self.headers())
        return client

    @property
    def configured(self) -> bool:
        return bool(self.headers()) or self.ca_file is not None or not self.verify_tls
