"""Structured logs: one line per record, ids in ``extra=`` fields, JSON on request."""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterable
from typing import Any

_CONTEXT_FIELDS = ("tenant", "event_id", "incident_id", "action_id", "stage", "topic", "offset")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for name in _CONTEXT_FIELDS:
            if hasattr(record, name):
                out[name] = getattr(record, name)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False, default=str)


class ContextFormatter(logging.Formatter):
    """Human format that still shows the ids, so a grep for an incident finds every line."""

    def format(self, record: logging.LogRecord) -> str:
        base = super().format(record)
        ctx = " ".join(f"{n}={getattr(record, n)}" for n in _CONTEXT_FIELDS if hasattr(record, n))
        return f"{base} {ctx}" if ctx else base


class Redacting(logging.Formatter):
    """Blanks the configured secrets in whatever a formatter produced, tracebacks included.

    Code never logs a secret on purpose; this catches the accidents (an exception quoting a URL with a token,
    a library echoing a request) where they would otherwise reach a log shipper.
    """

    MIN_LENGTH = 6  # shorter values would blank ordinary words

    def __init__(self, inner: logging.Formatter, secrets: Iterable[str]) -> None:
        super().__init__()
        self._inner = inner
        # Longest first, so a secret that contains another is blanked whole.
        self._secrets = sorted({s for s in secrets if len(s) >= self.MIN_LENGTH}, key=len, reverse=True)

    def format(self, record: logging.LogRecord) -> str:
        text = self._inner.format(record)
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, "[redacted]")
        return text


#: Loggers of the Kafka clients and stream library, whose reconnect loops repeat the same line many times a second.
CLIENT_LOGGERS = ("aiokafka", "faust", "mode", "kafka", "librdkafka", "confluent_kafka", "streams.wiring.kafka_client")


#: Parts of a librdkafka line that differ between repeats of the same failure: the client's instance name
#: (``rdkafka#consumer-7``; a restarted feed gets a new one), ``(after 3ms in state CONNECT, 4 identical error(s)
#: suppressed)``. Left out of the key, so the repeats count as one line.
_VARYING = re.compile(r"rdkafka#\w+-\d+|\s*\(after \d+ms in state \w+(?:, \d+ identical error\(s\) suppressed)?\)")


class OncePer(logging.Filter):
    """Lets the same message of a client logger through at most once per ``seconds``.

    A broker that is down makes aiokafka/librdkafka log the same connection error for every retry; the first
    line says everything, the next hundreds bury it.
    """

    def __init__(self, seconds: float = 30.0, loggers: tuple[str, ...] = CLIENT_LOGGERS) -> None:
        super().__init__()
        self._seconds = seconds
        self._loggers = loggers
        self._last: dict[tuple[str, str], float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(self._loggers):
            return True
        key = (record.name, _VARYING.sub("", record.getMessage()))
        now = record.created
        last = self._last.get(key)
        if last is not None and now - last < self._seconds:
            return False
        if len(self._last) > 1000:
            self._last.clear()
        self._last[key] = now
        return True


def setup_logging(level: str = "INFO", json_lines: bool = False, secrets: Iterable[str] = ()) -> None:
    handler = logging.StreamHandler(sys.stderr)
    inner = JsonFormatter() if json_lines else ContextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    handler.setFormatter(Redacting(inner, secrets))
    handler.addFilter(OncePer())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("aiokafka", "faust", "mode", "uvicorn.access", "httpx"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
