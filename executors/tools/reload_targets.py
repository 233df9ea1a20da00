"""What a configured reload endpoint is: its URL and the kind of server behind it.

Kept apart from the tool so the settings can name it without importing HTTP clients.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict


class ReloadKind(StrEnum):
    """What kind of server sits behind an endpoint, i.e. how its reload can be confirmed."""

    #: Unknown server: the HTTP status is all we learn.
    PLAIN = "plain"
    #: vmalert: /-/reload only sends itself SIGHUP; the outcome is in its metrics a moment later.
    VMALERT = "vmalert"
    #: Prometheus (needs --web.enable-lifecycle): reloads before answering.
    PROMETHEUS = "prometheus"
    #: Alertmanager: reloads before answering.
    ALERTMANAGER = "alertmanager"


class ReloadTarget(BaseModel):
    """One configured endpoint: its base URL and, to have the reload confirmed, the server kind."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    url: str
    kind: ReloadKind = ReloadKind.PLAIN
