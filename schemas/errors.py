"""Errors of the schemas package: one small tree, each saying whether a retry can help."""

from __future__ import annotations


class SchemaError(Exception):
    """Base of every error raised by ``schemas``; ``retriable`` tells callers whether to retry."""

    retriable: bool = False

    def __init__(self, reason: str, *, retriable: bool | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        if retriable is not None:
            self.retriable = retriable


class SchemaLoadError(SchemaError):
    """An .avsc file is missing, malformed or inconsistent: a packaging bug, never retriable."""


class CodecError(SchemaError):
    """A record could not be encoded or a message could not be decoded.

    Undecodable input is not retriable: upstream turns it into a dead-letter
    record whose ``reason`` is this message, so messages name what was wrong
    (marker, fingerprint in hex, schema, field). Only a failure to reach the
    schema registry is retriable.
    """
