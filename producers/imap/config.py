"""Typed configuration of one IMAP mailbox producer; the lead nests it into the app settings."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

#: RFC 2177: servers may drop an IDLE client after 30 minutes; renew well before.
MAX_IDLE_RENEW_SECONDS = 29 * 60


class TlsMode(StrEnum):
    TLS = "tls"
    STARTTLS = "starttls"
    PLAIN = "plain"


class AfterIngest(StrEnum):
    NONE = "none"
    SEEN = "seen"
    MOVE = "move"


class BackoffConfig(BaseModel):
    """Capped exponential backoff; ``jitter`` picks a uniform delay in [0, ceiling] (full jitter)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: First reconnect delay; doubles after each failure.
    base_seconds: float = Field(1.0, gt=0)
    #: Longest reconnect delay.
    cap_seconds: float = Field(300.0, gt=0)
    #: Pick each delay at random below its ceiling (full jitter), so mailboxes do not reconnect in step.
    jitter: bool = True

    @model_validator(mode="after")
    def _cap_not_below_base(self) -> Self:
        if self.cap_seconds < self.base_seconds:
            raise ValueError("backoff cap_seconds must be >= base_seconds")
        return self


class ImapConfig(BaseModel):
    """One mailbox folder to ingest. Secrets are SecretStr or a file path, never plain strings."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: The IMAP server.
    host: str = Field(min_length=1)
    #: None: 993 for ``tls``, 143 otherwise.
    port: int | None = Field(None, ge=1, le=65535)
    #: tls (implicit TLS, port 993), starttls, or plain (needs allow_plain).
    tls: TlsMode = TlsMode.TLS
    #: Plain-text IMAP sends the password in clear; only for loopback tests and trusted links.
    allow_plain: bool = False
    #: Extra CA bundle for a private/self-signed server certificate.
    ca_file: Path | None = None
    #: Login user.
    username: str = Field(min_length=1)
    #: Login password (or xoauth2_token_file; exactly one): from the environment or the secrets dir.
    password: SecretStr | None = None
    #: File holding a current OAuth2 access token (refreshed by someone else); read at each login.
    xoauth2_token_file: Path | None = None
    #: Folder watched, e.g. INBOX/Alerts.
    folder: str = "INBOX"
    #: Tenant of every mail from this mailbox (goes into every record and key).
    tenant: str = Field(min_length=1)
    #: Checkpoint key; default ``imap://user@host:port/folder``.
    mailbox: str | None = None
    #: Allowed ``From`` addresses (``ops@example.com``) or domains (``@example.com``); empty allows all.
    allowed_senders: tuple[str, ...] = ()
    #: A mail is ingested only if its subject contains one of these (case-insensitive); empty allows all.
    subject_keywords: tuple[str, ...] = ()
    #: ``none``, ``seen`` or ``move:<folder>``; applied only after the checkpoint is acked.
    after_ingest: str = "none"
    #: Larger mail goes to dead-letter instead of raw-mail.
    max_message_bytes: int = Field(10 * 1024 * 1024, gt=0)
    #: IDLE is re-issued after this long (RFC 2177: under 29 minutes).
    idle_renew_seconds: float = Field(25 * 60, gt=0, lt=MAX_IDLE_RENEW_SECONDS)
    #: How often to look for new mail when the server has no IDLE capability.
    poll_interval_seconds: float = Field(60.0, gt=0)
    #: UIDs fetched per round; bodies are additionally grouped by ``fetch_budget_bytes``.
    fetch_batch: int = Field(200, ge=1)
    #: Bytes of message bodies per FETCH.
    fetch_budget_bytes: int = Field(32 * 1024 * 1024, ge=1)
    #: ``all`` ingests what is already in the folder on the very first start; ``new`` only later mail.
    initial_position: str = Field("all", pattern="^(all|new)$")
    #: Seconds a socket operation may wait before the connection counts as dead and is reopened.
    socket_timeout_seconds: float = Field(60.0, gt=0)
    #: Message-ids remembered per mailbox, so a UIDVALIDITY reset or a crash never republishes.
    dedup_capacity: int = Field(50_000, ge=1)
    #: How far back raw-mail is re-read for message-ids after a UIDVALIDITY change (raw-mail keeps 7 d).
    dedup_lookback_seconds: float = Field(7 * 24 * 3600, gt=0)
    backoff: BackoffConfig = Field(default_factory=BackoffConfig)

    @field_validator("after_ingest")
    @classmethod
    def _valid_after_ingest(cls, value: str) -> str:
        if value in (AfterIngest.NONE, AfterIngest.SEEN):
            return value
        if value.startswith("move:") and value[5:].strip():
            return value
        raise ValueError("after_ingest must be 'none', 'seen' or 'move:<folder>'")

    @field_validator("allowed_senders")
    @classmethod
    def _lower_senders(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(s.strip().lower() for s in value if s.strip())

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.tls is TlsMode.PLAIN and not self.allow_plain:
            raise ValueError("tls=plain sends credentials in clear; set allow_plain=true to accept that")
        if (self.password is None) == (self.xoauth2_token_file is None):
            raise ValueError("set exactly one of password or xoauth2_token_file")
        return self

    @property
    def effective_port(self) -> int:
        if self.port is not None:
            return self.port
        return 993 if self.tls is TlsMode.TLS else 143

    @property
    def mailbox_id(self) -> str:
        if self.mailbox:
            return self.mailbox
        return f"imap://{self.username}@{self.host}:{self.effective_port}/{self.folder}"

    @property
    def after_ingest_action(self) -> AfterIngest:
        if self.after_ingest.startswith("move:"):
            return AfterIngest.MOVE
        return AfterIngest(self.after_ingest)

    @property
    def move_target(self) -> str | None:
        return self.after_ingest[5:].strip() if self.after_ingest.startswith("move:") else None
