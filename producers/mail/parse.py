"""parse_mail: raw RFC 822 bytes in, one AlertEvent per alert out, or a reason why not.

This is the normalize stage's pure core; the Faust agent around it only moves
records. Templates are tried in priority order; the first whose detection
matches and that yields at least one alert wins. Every row is checked
(:mod:`producers.mail.row_check`): a row that is not an alert is reported in
``ParsedMail.rejected`` and the mail's other rows still count. A mail that is
not an alert at all raises :class:`~producers.mail.not_alert.NotAnAlertError`.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from producers.mail.engines import ENGINES, EngineLimits, MailView
from producers.mail.errors import MailParseError
from producers.mail.mime import DecodedMail, MimeLimits, decode_mail
from producers.mail.normalize import to_event
from producers.mail.not_alert import NotAnAlertError, envelope_reason, is_list_mail, speaks_of_alerts
from producers.mail.registry import Template, TemplateRegistry
from producers.mail.registry import load_templates as _load_templates
from producers.mail.row_check import RejectedRow, check_row
from schemas.records import AlertEvent, EventSource

logger = logging.getLogger(__name__)

#: How much of each body detection regexes look at; a marker deep inside 10 MB is not a marker.
DETECT_WINDOW = 64 * 1024


@dataclass(frozen=True, slots=True)
class ParseLimits:
    mime: MimeLimits = field(default_factory=MimeLimits)
    engine: EngineLimits = field(default_factory=EngineLimits)


@dataclass(frozen=True)
class ParsedMail:
    template: str
    subject: str
    message_id: str
    events: list[AlertEvent]
    #: Non-fatal findings, e.g. that the alert cap cut the mail short.
    warnings: tuple[str, ...] = ()
    #: Rows of the winning template that are not alerts (a pod name in the alert column ...), with why.
    rejected: tuple[RejectedRow, ...] = ()


def load_templates(paths: Iterable[Path] | None = None) -> TemplateRegistry:
    """The template registry from YAML files or folders; default: the bundled templates."""
    if paths is None:
        return _default_registry()
    return _load_templates(paths)


@functools.cache
def _default_registry() -> TemplateRegistry:
    return _load_templates(None)


def parse_mail(
    raw: bytes,
    *,
    tenant: str,
    received_at: datetime,
    source: EventSource,
    registry: TemplateRegistry | None = None,
    cluster_names: Mapping[str, str] | None = None,
    severity_map: Mapping[str, str] | None = None,
    limits: ParseLimits | None = None,
) -> ParsedMail:
    """Parse one mail; raises only MailParseError, whatever the bytes."""
    try:
        return _parse(
            raw,
            tenant=tenant,
            received_at=received_at,
            source=source,
            registry=registry if registry is not None else _default_registry(),
            cluster_names=cluster_names,
            severity_map=severity_map,
            limits=limits or ParseLimits(),
        )
    except MailParseError:
        raise
    except Exception as exc:  # the one boundary: hostile bytes must become a dead letter
        logger.warning("mail parser failed unexpectedly: %s", type(exc).__name__, exc_info=True)
        raise MailParseError(f"parser error {type(exc).__name__}: {str(exc)[:300]}") from exc


def _parse(
    raw: bytes,
    *,
    tenant: str,
    received_at: datetime,
    source: EventSource,
    registry: TemplateRegistry,
    cluster_names: Mapping[str, str] | None,
    severity_map: Mapping[str, str] | None,
    limits: ParseLimits,
) -> ParsedMail:
    if not isinstance(raw, bytes | bytearray | memoryview):
        raise MailParseError(f"expected bytes, got {type(raw).__name__}")
    mail = decode_mail(bytes(raw), limits.mime)
    if (answer := envelope_reason(mail)) is not None:
        raise NotAnAlertError(*answer)
    if not mail.bodies:
        raise MailParseError(f"no text/html or text/plain body in mail (subject {_quote(mail.subject)})")
    view = MailView(mail, limits.engine)
    heads = [b.text[:DETECT_WINDOW] for b in mail.bodies]
    tried: list[str] = []
    #: A template recognised the mail by its markers: it is an alert mail, readable or not.
    claimed = False
    #: A template read alert rows that were all rejected: the catch-all templates would only invent alerts.
    read_rows = False
    for tpl in registry:
        miss = _detection_miss(tpl, mail, heads)
        if miss is not None:
            tried.append(f"{tpl.parser_id}: {miss}")
            continue
        catch_all = not tpl.subject_res and not tpl.body_res
        if catch_all and read_rows:
            tried.append(f"{tpl.parser_id}: not applied: a template found the mail's alert rows")
            continue
        if catch_all and not claimed and is_list_mail(mail):
            tried.append(f"{tpl.parser_id}: not applied to a mailing-list mail")
            continue
        claimed = claimed or not catch_all
        result = ENGINES[tpl.engine](view, tpl)
        events: list[AlertEvent] = []
        rejected: list[RejectedRow] = []
        for raw_alert in result.alerts:
            problem = check_row(raw_alert.fields, raw_alert.where, tpl, severity_map)
            if problem is not None:
                rejected.append(problem)
                continue
            event = to_event(
                raw_alert,
                index=len(events),
                tpl=tpl,
                tenant=tenant,
                message_id=mail.message_id,
                subject=mail.subject,
                received_at=received_at,
                source=source,
                cluster_names=cluster_names,
                severity_map=severity_map,
            )
            if event is not None:
                events.append(event)
        if events and catch_all and not claimed and not speaks_of_alerts(mail, heads):
            tried.append(f"{tpl.parser_id}: {len(events)} alert-like row(s), but the mail never speaks of alerts")
            continue
        if events:
            warnings = (f"{tpl.parser_id}: {result.note}",) if result.truncated else ()
            if warnings:
                logger.warning("mail %s truncated: %s", mail.message_id[:200], result.note)
            return ParsedMail(tpl.parser_id, mail.subject, mail.message_id, events, warnings, tuple(rejected))
        note = result.note or "no alerts"
        read_rows = read_rows or bool(rejected and not catch_all)
        if rejected:
            shown = "; ".join(r.describe() for r in rejected[:5])
            more = f" (and {len(rejected) - 5} more)" if len(rejected) > 5 else ""
            note = f"{len(rejected)} row(s) are not alerts: {shown}{more}"
        tried.append(f"{tpl.parser_id}: {note}")
    if not tried:
        raise MailParseError("no templates configured")
    found = f"no alert found in mail (subject {_quote(mail.subject)}); tried " + "; ".join(tried)
    if claimed:
        raise MailParseError(found)
    raise NotAnAlertError("newsletter" if is_list_mail(mail) else "no_alert_evidence", found)


def _detection_miss(tpl: Template, mail: DecodedMail, heads: list[str]) -> str | None:
    """None when the template applies to this mail, else why not."""
    if not tpl.subject_res and not tpl.body_res:
        return None
    if any(rx.search(s) for rx in tpl.subject_res for s in mail.subjects):
        return None
    if any(rx.search(h) for rx in tpl.body_res for h in heads):
        return None
    return "subject and body markers not found"


def _quote(text: str) -> str:
    return repr(text[:120])
