"""The root of every rcaflow error, and the schemas package's own small tree under it."""

from __future__ import annotations


class RcaflowError(Exception):
    """Root of every error rcaflow raises on purpose, so a boundary can tell "ours" from a bug by type.

    It lives here because ``schemas`` is the bottom layer every package may import.
    ``message`` is the one text callers read (``str(err)`` is the same); it is written
    for the on-call reader and never holds a secret. ``retriable`` says whether trying
    again later can help: a class default, overridable per instance.
    """

    retriable: bool = False

    def __init__(self, message: str, *, retriable: bool | None = None) -> None:
        super().__init__(message)
        self.message = message
        if retriable is not None:
            self.retriable = retriable

    def __str__(self) -> str:
        return self.message


class SchemaError(RcaflowError):
    """Base of every error raised by ``schemas``; ``retriable`` tells callers whether to retry."""


class SchemaLoadError(SchemaError):
    """An .avsc file is missing, malformed or inconsistent: a packaging bug, never retriable."""


class CodecError(SchemaError):
    """A record could not be encoded or a message could not be decoded.

    Undecodable input is not retriable: upstream turns it into a dead-letter
    record whose ``reason`` is this message, so messages name what was wrong
    (marker, fingerprint in hex, schema, field). Only a failure to reach the
    schema registry is retriable.
    """


class TransientError(RcaflowError):
    """A dependency is down or busy (broker, schema registry, LLM): the same input may succeed later.

    The worker retries these with capped backoff and never dead-letters or skips the
    input for them; everything else that stops a record is permanent and dead-lettered.
    """

    retriable = True


class RegistryUnavailableError(CodecError, TransientError):
    """The schema registry did not answer (unreachable, 5xx, 408, 429): the bytes may be fine."""

    retriable = True
