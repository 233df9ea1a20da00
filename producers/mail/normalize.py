"""RawAlert (strings as found in the mail) to AlertEvent: severity, times, labels, identity.

Everything here treats its input as untrusted text: values are whitespace-
collapsed, stripped of control characters and length-capped; nothing is
interpreted beyond the fixed formats below.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, timezone, tzinfo

from producers.cluster_names import with_cluster_name
from producers.fingerprint import alert_fingerprint, event_id
from producers.mail.engines import RawAlert
from producers.mail.registry import Template, normalize_key
from producers.workload import with_workload
from schemas.annotations import GENERATOR_URL
from schemas.records import AlertEvent, AlertMetrics, AlertStatus, EventSource, RawRef

MAX_NAME = 256
MAX_LABEL = 512
MAX_ANNOTATION = 4096
MAX_KEYS = 64
DEFAULT_SEVERITY = "P3"
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\u200b-\u200f\u2028-\u202e\ufeff]")
_WS = re.compile(r"\s+")
_LEVEL = re.compile(r"^p([1-4])$", re.IGNORECASE)
_TIME = re.compile(
    r"(?P<y>\d{4})[-/.年](?P<mo>\d{1,2})[-/.月](?P<d>\d{1,2})日?[ T]*"
    r"(?P<h>\d{1,2}):(?P<mi>\d{2})(?::(?P<s>\d{2})(?:[.,]\d+)?)?"
    r"\s*(?P<tz>Z|UTC|GMT|[+-]\d{2}:?\d{2})?"
)
_INT = re.compile(r"\d+")
_STATUS_WORDS: dict[str, AlertStatus] = {
    "firing": AlertStatus.FIRING,
    "告警中": AlertStatus.FIRING,
    "触发中": AlertStatus.FIRING,
    "未恢复": AlertStatus.FIRING,
    "resolved": AlertStatus.RESOLVED,
    "已恢复": AlertStatus.RESOLVED,
    "已解决": AlertStatus.RESOLVED,
    "恢复": AlertStatus.RESOLVED,
}
#: Labels that name the workload when the mail has no workload column, most specific first.
WORKLOAD_FROM: tuple[str, ...] = ("statefulset", "deployment", "daemonset", "pod", "service", "instance")
_COMPONENT_HAYSTACK = ("job", "workload", "pod", "container", "service", "app", "deployment", "statefulset")


_NEEDS_CLEAN = re.compile(r"[\x00-\x1f\x7f\u200b-\u200f\u2028-\u202e\ufeff]|\s\s|^\s|\s$")


def clean(value: str, limit: int) -> str:
    if _NEEDS_CLEAN.search(value) is None:
        return value[:limit]
    return _WS.sub(" ", _CONTROL.sub("", value)).strip()[:limit]


def severity_level(raw: str, tpl: Template, overrides: Mapping[str, str] | None) -> str:
    """P1–P4 from the mail's word for it; unknown words are P3, never an error."""
    key = normalize_key(raw)
    if overrides:
        for word, level in overrides.items():
            if normalize_key(word) == key:
                return level
    if (m := _LEVEL.match(key)) is not None:
        return f"P{m.group(1)}"
    return tpl.severity_map.get(key, DEFAULT_SEVERITY)


def parse_time(raw: str, zone: tzinfo) -> datetime | None:
    """An aware UTC time from the first timestamp in ``raw``; a zone-less time is in ``zone``."""
    m = _TIME.search(raw)
    if m is None:
        return None
    try:
        naive = datetime(int(m["y"]), int(m["mo"]), int(m["d"]), int(m["h"]), int(m["mi"]), int(m["s"] or 0))
    except ValueError:
        return None
    tz = m["tz"]
    if tz is None:
        local = naive.replace(tzinfo=zone)
    elif tz.upper() in ("Z", "UTC", "GMT"):
        local = naive.replace(tzinfo=UTC)
    else:
        digits = tz.replace(":", "")
        sign = -1 if digits[0] == "-" else 1
        offset = timedelta(hours=int(digits[1:3]), minutes=int(digits[3:5]))
        if offset > timedelta(hours=14):
            return None
        local = naive.replace(tzinfo=timezone(sign * offset))
    try:
        return local.astimezone(UTC)
    except (OverflowError, ValueError):
        return None


def parse_times(raw: str | None) -> int:
    if not raw:
        return 1
    m = _INT.search(raw)
    if m is None or len(m.group(0)) > 9:
        return 1
    return max(int(m.group(0)), 1)


def _status(alert: RawAlert) -> AlertStatus:
    word = alert.fields.get("status")
    if word:
        key = normalize_key(word)
        for name, status in _STATUS_WORDS.items():
            if key == normalize_key(name):
                return status
    return alert.status


def _component(alert: str, labels: Mapping[str, str], tpl: Template) -> str | None:
    haystack = " ".join(labels.get(k, "") for k in _COMPONENT_HAYSTACK)
    key = (alert, haystack)
    cache = tpl.component_cache
    if key in cache:
        return cache[key]
    found: str | None = None
    for component, alert_rx, any_rx in tpl.components:
        if alert_rx is not None and not alert_rx.search(alert):
            continue
        if any_rx is not None and not any_rx.search(haystack):
            continue
        found = component
        break
    if len(cache) >= 4096:  # digests repeat the same few alerts; hostile input must not grow it
        cache.clear()
    cache[key] = found
    return found


def to_event(
    raw_alert: RawAlert,
    *,
    index: int,
    tpl: Template,
    tenant: str,
    message_id: str,
    subject: str,
    received_at: datetime,
    source: EventSource,
    cluster_names: Mapping[str, str] | None,
    severity_map: Mapping[str, str] | None,
) -> AlertEvent | None:
    """One AlertEvent, or None when the row has no usable alert name."""
    if GENERATOR_URL in raw_alert.labels:  # a Source link read inside the Labels block: the rule's URL, not a label
        raw_alert.annotations.setdefault(GENERATOR_URL, raw_alert.labels.pop(GENERATOR_URL))
    alert = clean(raw_alert.fields.get("alert", ""), MAX_NAME)
    if not alert:
        return None
    labels: dict[str, str] = {}
    for key, value in list(raw_alert.labels.items())[:MAX_KEYS]:
        k, v = clean(key, 64), clean(value, MAX_LABEL)
        if k and v:
            labels[k] = v
    severity_raw = clean(raw_alert.fields.get("severity", ""), 64)
    if severity_raw:
        labels.setdefault("severity", severity_raw)
    labels = with_workload(labels, tpl.workload_from or WORKLOAD_FROM)  # never an IP:port
    labels = with_cluster_name(labels, cluster_names)  # the same map as the webhook and POST /events
    if "component" not in labels and (component := _component(alert, labels, tpl)) is not None:
        labels["component"] = component
    annotations: dict[str, str] = {}
    for key, value in list(raw_alert.annotations.items())[:MAX_KEYS]:
        k, v = clean(key, 64), clean(value, MAX_ANNOTATION)
        if k and v:
            annotations[k] = v
    first_raw = raw_alert.fields.get("first_occur")
    first_occur = parse_time(first_raw, tpl.zone) if first_raw else None
    return AlertEvent(
        tenant=tenant,
        event_id=event_id(tenant, message_id, index),
        fingerprint=alert_fingerprint(tenant, alert, labels),
        alert=alert,
        severity=severity_level(severity_raw, tpl, severity_map),
        status=_status(raw_alert),
        labels=labels,
        annotations=annotations,
        metrics=AlertMetrics(times=parse_times(raw_alert.fields.get("times")), first_occur=first_occur),
        raw=RawRef(mail_subject=subject[:998] or None, mail_id=message_id),
        source=source,
        received_at=received_at,
        parser=tpl.parser_id,
    )
