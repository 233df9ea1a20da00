"""parse_mail: raw RFC 822 bytes in, one AlertEvent per alert out, or a reason why not.

This is the normalize stage's pure core; the Faust agent around it only moves
records. Templates are tried in priority order; the first whose detection
matches and that yields at least one alert wins.
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
from producers.mail.registry import Template, TemplateRegistry
from producers.mail.registry import load_templates as _load_templates
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
    if not mail.bodies:
        raise MailParseError(f"no text/html or text/plain body in mail (subject {_quote(mail.subject)})")
    view = MailView(mail, limits.engine)
    heads = [b.text[:DETECT_WINDOW] for b in mail.bodies]
    tried: list[str] = []
    for tpl in registry:
        miss = _detection_miss(tpl, mail, heads)
        if miss is not None:
            tried.append(f"{tpl.parser_id}: {miss}")
            continue
        result = ENGINES[tpl.engine](view, tpl)
        events: list[AlertEvent] = []
        for raw_alert in result.alerts:
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
        if events:
            warnings = (f"{tpl.parser_id}: {result.note}",) if result.truncated else ()
            if warnings:
                logger.warning("mail %s truncated: %s", mail.message_id[:200], result.note)
            return ParsedMail(tpl.parser_id, mail.subject, mail.message_id, events, warnings)
        tried.append(f"{tpl.parser_id}: {result.note or 'no alerts'}")
    raise MailParseError(
        f"no alert found in mail (subject {_quote(mail.subject)}); tried " + "; ".join(tried)
        if tried
        else "no templates configured"
    )


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
