"""raw-mail → normalized: one classified AlertEvent per alert in a mail; structured sources are classified only."""

from __future__ import annotations

from collections.abc import Mapping
from email.parser import BytesHeaderParser

from policies import PolicySet
from policies.tenant_scope import SenderNotAllowedError, TenantScope, sender_address
from producers.fingerprint import event_id
from producers.imap.headers import header_text
from producers.mail import MailParseError, NotAnAlertError, RejectedRowsError, TemplateRegistry, parse_mail
from schemas.records import AlertEvent, EventSource, RawMail, SourceKind
from schemas.topics import NORMALIZED
from streams.stages.core import Out, Position, StageContext, StageResult

STAGE = "normalize"
#: Outcomes besides ok / dead_letter: a mail that is not an alert, and one with some rows that are not alerts.
NOT_AN_ALERT = "not_an_alert"
PARTIAL = "partial"


def mail_sender(raw: bytes) -> str | None:
    """The one From address in the mail's own header block, or None (no From, several, or unparseable).

    The bytes kept on raw-mail are judged rather than the producer's routing field, so every
    ingest path (IMAP, Graph, files) and a replay of old records meet the same rule; a mail
    with two From headers names no single sender and is refused like one with none.
    """
    values = BytesHeaderParser().parsebytes(raw).get_all("From") or []
    if len(values) != 1:
        return None
    return sender_address(header_text(values[0]))


def sender_refusal(scope: TenantScope, mail: RawMail) -> SenderNotAllowedError | None:
    """Why ``mail`` may not speak for its tenant (its From is not one of the tenant's senders), or None."""
    if scope.configured and not scope.senders:
        return None  # any sender: the single-tenant default, where the mailbox itself is the trust boundary
    sender = mail_sender(mail.raw)
    if sender is not None and scope.accepts_sender(sender):
        return None
    return SenderNotAllowedError(mail.tenant, sender, configured=scope.configured)


class Normalize:
    """Parses a mail with the templates and classifies each alert with the policy."""

    def __init__(
        self,
        policies: PolicySet,
        templates: TemplateRegistry | None = None,
        *,
        scopes: Mapping[str, TenantScope],
        cluster_names: Mapping[str, Mapping[str, str]] | None = None,
        context: StageContext | None = None,
    ) -> None:
        self.policies = policies
        self.templates = templates
        #: tenant → scope; a mail whose From is not one of its tenant's senders is dead-lettered, never parsed.
        self.scopes = scopes
        self.cluster_names = cluster_names or {}
        self.context = context or StageContext()

    def __call__(self, mail: RawMail, where: Position) -> StageResult:
        refused = sender_refusal(self.scopes[mail.tenant], mail)
        if refused is not None:
            self.context.count(STAGE, "dead_letter")
            return StageResult.refuse(refused, mail.tenant)
        source = EventSource(
            kind=mail.source if mail.source != SourceKind.UNKNOWN else SourceKind.FILE,
            mailbox=mail.mailbox,
            topic=where.topic,
            partition=where.partition,
            offset=where.offset,
        )
        try:
            parsed = parse_mail(
                mail.raw,
                tenant=mail.tenant,
                received_at=mail.received_at,
                source=source,
                registry=self.templates,
                cluster_names=self.cluster_names.get(mail.tenant),
            )
        except NotAnAlertError as exc:
            # Kept (dead-letter, error_type NotAnAlertError, reason "not_an_alert: <reason>: ...") and
            # counted, never triaged: no event goes on, so no incident and no notification.
            self.context.count(STAGE, NOT_AN_ALERT)
            if metrics := self.context.metrics:
                metrics.mail_not_alert.labels(reason=exc.reason, tenant=metrics.tenant(mail.tenant)).inc()
            return StageResult(outcome=NOT_AN_ALERT, refused=exc, tenant=mail.tenant)
        except MailParseError as exc:
            self.context.count(STAGE, "dead_letter")
            return StageResult.refuse(exc, mail.tenant)
        # The event id names the raw-mail record, so a re-delivery (same offset) is recognised as a
        # replay while a second copy of the same mail (new offset) counts as a repeat of the alert.
        outs = [
            self.accept(
                event.model_copy(update={"event_id": event_id(mail.tenant, where.topic, where.partition or 0,
                                                              where.offset or 0, index)})
            )
            for index, event in enumerate(parsed.events)
        ]
        if parsed.rejected:
            # The good rows go on; the mail is kept once in dead-letter naming each row that is not an alert.
            if metrics := self.context.metrics:
                for row in parsed.rejected:
                    metrics.mail_rows_rejected.labels(reason=row.reason, tenant=metrics.tenant(mail.tenant)).inc()
            self.context.count(STAGE, PARTIAL)
            return StageResult(outs, outcome=PARTIAL, refused=RejectedRowsError(parsed.rejected, len(outs)),
                               tenant=mail.tenant)
        self.context.count(STAGE, "ok")
        return StageResult(outs)

    def accept(self, event: AlertEvent) -> Out:
        """An alert classified by the policy, keyed for the dedup table; structured sources (webhook,
        POST /events) skip raw-mail and come here directly."""
        event = event.model_copy(update={"alert_class": self.policies.classify(event)})
        return Out(NORMALIZED, f"{event.tenant}:{event.fingerprint}", event)
