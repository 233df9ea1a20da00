"""The size limits of rcaflow, decided once: every edge that refuses input and every topic/producer config reads them.

Why one module: the limits form a chain. A record that passes the edge must fit every topic it
(or a record embedding it) is written to later, so the edge must be stricter than the topics
downstream. Issue 12 was this chain broken: a 1.1 MB compressible webhook was accepted (202),
and the worker then could not send the Incident that embeds it.

The chain, smallest first::

    label/annotation value (8 KiB) < one AlertEvent (128 KiB) < any structured record (1 MiB)
    POST /events body (256 KiB) -> one AlertEvent
    webhook body (4 MiB) -> many AlertEvents, each checked on its own
    mail (10 MiB) < raw-mail / dead-letter record (11 MiB) < producer request (12 MiB)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

KiB: Final = 1024
MiB: Final = 1024 * KiB

#: Kafka's default broker ``message.max.bytes`` / topic ``max.message.bytes`` (1 MiB + 12 bytes of
#: batch overhead). Topics that do not say otherwise accept this much.
KAFKA_DEFAULT_MAX_MESSAGE_BYTES: Final = 1_048_588

#: The largest mail rcaflow parses (the existing per-mail parse limit, ``MimeLimits.max_bytes``).
#: Alert mails are HTML tables of a few KiB to a few hundred KiB; 10 MiB covers long tables with
#: screenshots attached. Microsoft Graph allows mails up to 25 MiB (its send ceiling), so Graph and
#: IMAP ingest must refuse (dead-letter) anything above this before it reaches raw-mail.
MAX_MAIL_BYTES: Final = 10 * MiB

#: One raw-mail record: the whole mail plus the routing fields (tenant, mailbox, ids); also the
#: dead-letter limit, because a refused mail is dead-lettered whole.
MAX_MAIL_RECORD_BYTES: Final = MAX_MAIL_BYTES + 1 * MiB

#: Any other record on any topic, measured uncompressed (Avro-encoded value). Equal to Kafka's
#: default so the structured topics need no special config, and measured before compression so that
#: a compressible payload cannot slip past the producer and fail at the broker later.
MAX_RECORD_BYTES: Final = 1 * MiB

#: One AlertEvent, encoded. An AlertEvent is embedded whole in an Incident, which is embedded in an
#: RcaResult next to the evidence, and copied into audit records; 128 KiB leaves those records
#: most of MAX_RECORD_BYTES. Real alerts are 1-5 KiB.
MAX_ALERT_RECORD_BYTES: Final = 128 * KiB

#: One label or annotation value, in UTF-8 bytes. Prometheus label values are names (tens of bytes);
#: annotations (summary, description, runbook text) are prose of at most a few KiB. A label over this
#: is refused naming the label (labels are the alert's identity: truncating could merge two alerts);
#: an annotation over this is truncated with ANNOTATION_TRUNCATED_MARKER (prose; the alert stays useful).
MAX_LABEL_VALUE_BYTES: Final = 8 * KiB

#: Appended to a truncated annotation value, followed by the number of bytes cut.
ANNOTATION_TRUNCATED_MARKER: Final = "…[truncated "

#: Alertmanager webhook body. Alertmanager sends one alert group per request (version 4 JSON,
#: ~1-2 KiB per alert); 4 MiB holds a group of ~2,000 alerts. Bigger groups should set the
#: receiver's ``max_alerts``. Each alert is still checked against MAX_ALERT_RECORD_BYTES.
MAX_WEBHOOK_BYTES: Final = 4 * MiB

#: POST /events body: one seed event JSON (a few hundred bytes in practice), which becomes one
#: AlertEvent; bounded well above any real event but far below MAX_RECORD_BYTES.
MAX_EVENT_BYTES: Final = 256 * KiB

#: Microsoft Graph change-notification POSTs: Graph batches notifications of a few hundred bytes
#: each (no resource data is requested), so 1 MiB is generous.
MAX_MSGRAPH_NOTIFICATION_BYTES: Final = 1 * MiB

#: Chat approval callbacks (Slack interactive payloads carry the whole message with its blocks, tens
#: of KiB for a long RCA message; DingTalk's are smaller).
MAX_APPROVAL_CALLBACK_BYTES: Final = 1 * MiB

#: Any other request body the API accepts (tool calls, approval links): small JSON or form data.
MAX_SMALL_BODY_BYTES: Final = 64 * KiB

#: Producer ``message.max.bytes`` (librdkafka) / ``max_request_size`` (aiokafka): room for the largest
#: topic record (MAX_MAIL_RECORD_BYTES) plus request framing.
PRODUCER_MAX_REQUEST_BYTES: Final = MAX_MAIL_RECORD_BYTES + 1 * MiB  # 12 MiB, as before

#: Topic ``max.message.bytes`` per logical topic name; topics not listed use MAX_RECORD_BYTES
#: (``topic_max_record_bytes``).
TOPIC_MAX_RECORD_BYTES: Final[Mapping[str, int]] = {
    "raw-mail": MAX_MAIL_RECORD_BYTES,
    "dead-letter": MAX_MAIL_RECORD_BYTES,
}


#: Added to a record limit for the topic's ``max.message.bytes``: the broker checks whole record
#: batches (header ~61 bytes, per-record framing, key, headers), not bare values.
BATCH_OVERHEAD_BYTES: Final = 64 * KiB


def topic_max_record_bytes(topic: str) -> int:
    """The largest record value the logical ``topic`` (no prefix) accepts; producers check this."""
    return TOPIC_MAX_RECORD_BYTES.get(topic, MAX_RECORD_BYTES)


def topic_max_message_bytes(topic: str) -> int:
    """The topic config ``max.message.bytes`` for the logical ``topic``: its record limit plus batch framing."""
    return topic_max_record_bytes(topic) + BATCH_OVERHEAD_BYTES
