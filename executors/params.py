"""Validated parameter types shared by tools: nothing from a mail reaches a URL or an API unchecked.

Every value arrives as a string (``ActionEvent.params`` is ``map<string>``) and may
have been copied from an alert mail or proposed by an LLM, so each type is a
strict allow-list pattern rather than a deny-list.
"""

from __future__ import annotations

import re
from datetime import timedelta
from enum import StrEnum
from typing import Annotated

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints

# Kubernetes' own definitions (k8s.io/apimachinery/pkg/util/validation).
_DNS1123_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
DNS1123_LABEL_RE = re.compile(rf"^{_DNS1123_LABEL}$")
DNS1123_SUBDOMAIN_RE = re.compile(rf"^{_DNS1123_LABEL}(\.{_DNS1123_LABEL})*$")
_QUALIFIED_NAME_RE = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
# Prometheus label values may be anything; we accept what cluster names look like in practice.
_LABEL_VALUE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]*$")
_ALERTNAME_RE = re.compile(r"^[A-Za-z_:][A-Za-z0-9_:]*$")
_DURATION_RE = re.compile(r"^(\d{1,4})([smhd])$")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
# Alertmanager's API v2 declares silenceID as `format: uuid`; it mints them as canonical v4 UUIDs.
_UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")

_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
#: Upper bound for silences: longer ones hide real incidents; raise it in code review, not config.
MAX_DURATION = timedelta(days=7)
#: Annotation prefixes owned by Kubernetes itself; an automated action must not rewrite them.
_RESERVED_PREFIXES = ("kubernetes.io", "k8s.io")


def _dns1123_label(value: str) -> str:
    if len(value) > 63 or not DNS1123_LABEL_RE.fullmatch(value):
        raise ValueError("must be a DNS-1123 label (lower-case alphanumerics and '-', at most 63)")
    return value


def _dns1123_subdomain(value: str) -> str:
    if len(value) > 253 or not DNS1123_SUBDOMAIN_RE.fullmatch(value):
        raise ValueError("must be a DNS-1123 subdomain (lower-case alphanumerics, '-' and '.', at most 253)")
    return value


def _label_value(value: str) -> str:
    if len(value) > 128 or not _LABEL_VALUE_RE.fullmatch(value):
        raise ValueError("must be 1-128 characters of letters, digits, '.', '_', ':' or '-'")
    return value


def _alertname(value: str) -> str:
    if len(value) > 128 or not _ALERTNAME_RE.fullmatch(value):
        raise ValueError("must be a Prometheus metric-style name ([A-Za-z_:][A-Za-z0-9_:]*)")
    return value


def _annotation_key(value: str) -> str:
    prefix, sep, name = value.rpartition("/")
    if len(name) > 63 or not _QUALIFIED_NAME_RE.fullmatch(name):
        raise ValueError("name part must be 1-63 alphanumerics, '-', '_' or '.'")
    if sep:
        _dns1123_subdomain(prefix)
        if any(prefix == p or prefix.endswith("." + p) for p in _RESERVED_PREFIXES):
            raise ValueError(f"prefix {prefix!r} is reserved for Kubernetes")
    return value


def _silence_id(value: str) -> str:
    # Lower-cased because Alertmanager looks ids up by exact string and only ever mints lower-case ones.
    lowered = value.lower()
    if not _UUID_RE.fullmatch(lowered):
        raise ValueError("must be an Alertmanager silence id (a UUID like 8-4-4-4-12 hex digits)")
    return lowered


def _free_text(value: str) -> str:
    if _CONTROL_RE.search(value):
        raise ValueError("must not contain control characters")
    return value


def _plain_int(value: object) -> object:
    # pydantic's lax int parsing takes " 3", "+3", "3.0" and "1_0"; a count from a record must be digits only.
    if isinstance(value, str) and not re.fullmatch(r"[0-9]{1,6}", value):
        raise ValueError("must be a whole number written with digits only")
    return value


def parse_duration(value: str) -> timedelta:
    """``"90s"``, ``"15m"``, ``"2h"``, ``"1d"`` → timedelta; bounded by :data:`MAX_DURATION`."""
    match = _DURATION_RE.fullmatch(value)
    if not match:
        raise ValueError("must look like 30m, 2h or 1d")
    delta = timedelta(seconds=int(match.group(1)) * _DURATION_UNITS[match.group(2)])
    if not timedelta(minutes=1) <= delta <= MAX_DURATION:
        raise ValueError(f"must be between 1m and {MAX_DURATION.days}d")
    return delta


def _duration(value: str) -> str:
    parse_duration(value)
    return value


Namespace = Annotated[str, AfterValidator(_dns1123_label)]
ObjectName = Annotated[str, AfterValidator(_dns1123_subdomain)]
LabelValue = Annotated[str, AfterValidator(_label_value)]
AlertName = Annotated[str, AfterValidator(_alertname)]
AnnotationKey = Annotated[str, StringConstraints(max_length=317), AfterValidator(_annotation_key)]
AnnotationValue = Annotated[str, StringConstraints(max_length=1024), AfterValidator(_free_text)]
Comment = Annotated[str, StringConstraints(min_length=1, max_length=500), AfterValidator(_free_text)]
Duration = Annotated[str, AfterValidator(_duration)]
#: The only thing from a record that reaches an Alertmanager URL path, so nothing but a UUID passes.
SilenceId = Annotated[str, StringConstraints(max_length=36), AfterValidator(_silence_id)]
Replicas = Annotated[int, BeforeValidator(_plain_int), Field(ge=0, le=100)]
EndpointName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")]
#: A kubectl restartedAt stamp (RFC 3339), or "" for "was not set".
RestartStamp = Annotated[
    str, StringConstraints(pattern=r"^$|^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$")
]
#: An rcaflow action id, or "" for "none".
ActionIdOrEmpty = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._:-]{0,128}$")]


class WorkloadKind(StrEnum):
    DEPLOYMENT = "deployment"
    STATEFULSET = "statefulset"
    DAEMONSET = "daemonset"


class ScalableKind(StrEnum):
    DEPLOYMENT = "deployment"
    STATEFULSET = "statefulset"


class Params(BaseModel):
    """Base of every operation's parameters: unknown keys are an error, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=False)

    def as_strings(self) -> dict[str, str]:
        """Back to the ``map<string>`` shape of ``ActionEvent.params`` (for rollback hints)."""
        return {k: str(v) for k, v in self.model_dump(mode="json", exclude_none=True).items()}
