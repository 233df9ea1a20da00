"""Typed configuration of the Graph producer; the lead nests ``MsgraphConfig`` into the app settings."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from producers.msgraph.retry import RetryPolicy
from schemas.limits import MAX_MAIL_BYTES

#: Graph's documented maximum for mail subscriptions is 4230 minutes (just under 3 days); stay below it.
MAX_SUBSCRIPTION_MINUTES = 4229

#: Mailbox ids (GUID or UPN) and folder names (well-known names or ids) we put into Graph URL paths.
_SAFE_SEGMENT = re.compile(r"^[A-Za-z0-9@._\-=+]{1,256}$")


class MailboxConfig(BaseModel):
    """One Exchange Online mailbox folder delivering to one rcaflow tenant."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: Graph user id or userPrincipalName whose folder is watched.
    user: str
    #: Well-known folder name (``inbox``) or a folder id.
    folder: str = "inbox"
    #: Tenant of every mail from this folder.
    tenant: str = Field(min_length=1)
    #: Checkpoint key on ingest-checkpoints; default ``msgraph://{user}/{folder}``.
    mailbox: str | None = None
    #: Shared secret Graph echoes in every notification; unique per mailbox, 16..128 chars.
    client_state: SecretStr
    #: ``all`` publishes what is already in the folder on the first delta sync; ``new`` only later mail.
    initial_position: str = Field("new", pattern="^(all|new)$")

    @field_validator("user", "folder")
    @classmethod
    def _safe_segment(cls, value: str) -> str:
        if not _SAFE_SEGMENT.fullmatch(value) or set(value) == {"."}:
            raise ValueError("must be a Graph id, UPN or well-known folder name (letters, digits, @._-=+)")
        return value

    @field_validator("client_state")
    @classmethod
    def _client_state_length(cls, value: SecretStr) -> SecretStr:
        if not 16 <= len(value.get_secret_value()) <= 128:
            raise ValueError("client_state must be 16..128 characters (Graph caps it at 128)")
        return value

    @property
    def mailbox_id(self) -> str:
        return self.mailbox or f"msgraph://{self.user}/{self.folder}"

    @property
    def resource(self) -> str:
        """The subscription resource: new messages in this folder."""
        return f"users/{self.user}/mailFolders/{self.folder}/messages"


class MsgraphConfig(BaseModel):
    """App registration, endpoints and mailboxes. Secrets are SecretStr (from env or mounted files)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: Entra ID directory (tenant) id of the app registration.
    directory_id: str = Field(min_length=1)
    #: Application (client) id of the app registration.
    client_id: str = Field(min_length=1)
    #: Client secret of the app registration: from the environment or the secrets dir.
    client_secret: SecretStr
    #: Entra ID login endpoint (another one for national clouds).
    authority_host: str = "https://login.microsoftonline.com"
    #: Microsoft Graph API root (another one for national clouds).
    graph_url: str = "https://graph.microsoft.com/v1.0"
    #: Public HTTPS URL of ``/msgraph/webhook`` (Graph must reach it).
    notification_url: str
    #: Public HTTPS URL for lifecycle notifications; default: the notification URL.
    lifecycle_notification_url: str | None = None
    mailboxes: tuple[MailboxConfig, ...] = ()
    #: Lifetime asked for each subscription (Graph allows at most about 3 days for mail).
    subscription_minutes: int = Field(4200, ge=45, le=MAX_SUBSCRIPTION_MINUTES)
    #: Renew when less than this is left; well before expiry so a failed renewal has time to retry.
    renew_before_minutes: int = Field(24 * 60, ge=10)
    #: Where notifications are written (fsync) before the 202; None keeps them in memory only.
    spool_dir: Path | None = None
    #: Message ids remembered, so a notification Graph sends twice is published once.
    dedup_capacity: int = Field(50_000, ge=1)
    #: Mails above this (and above ``schemas.limits.MAX_MAIL_BYTES`` in any case) are dead-lettered, not published.
    max_message_bytes: int = Field(MAX_MAIL_BYTES, gt=0)
    #: Seconds per Graph request.
    timeout_seconds: float = Field(30.0, gt=0)
    #: Retries of one Graph request (429/5xx/transport), honouring Retry-After.
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    #: After a failed maintenance round (drain, catch-up, subscription renewal): Graph's Retry-After if it sent
    #: one, else 5 s doubling, with full jitter, up to 15 min (``max_attempts`` is not used: rounds go on).
    round_retry: RetryPolicy = Field(default_factory=lambda: RetryPolicy(base_seconds=5.0, cap_seconds=900.0))

    @field_validator("authority_host", "graph_url", "notification_url", "lifecycle_notification_url")
    @classmethod
    def _https(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("https://"):
            raise ValueError("must be an https:// URL (Graph and msal refuse anything else)")
        return value.rstrip("/") if value is not None else None

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.renew_before_minutes >= self.subscription_minutes:
            raise ValueError("renew_before_minutes must be below subscription_minutes")
        states = [m.client_state.get_secret_value() for m in self.mailboxes]
        if len(set(states)) != len(states):
            raise ValueError("every mailbox needs its own client_state: it identifies the mailbox")
        ids = [m.mailbox_id for m in self.mailboxes]
        if len(set(ids)) != len(ids):
            raise ValueError("mailbox ids must be unique")
        return self

    @property
    def authority(self) -> str:
        return f"{self.authority_host}/{self.directory_id}"

    @property
    def lifecycle_url(self) -> str:
        return self.lifecycle_notification_url or self.notification_url
