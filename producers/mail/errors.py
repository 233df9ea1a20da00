"""Errors of the mail parser: one type, never retriable, with a reason for the dead-letter record."""

from __future__ import annotations


class MailParseError(Exception):
    """The mail holds no alert we can read; retrying the same bytes cannot help.

    ``reason`` is meant for a human reading the dead-letter topic: it names the
    templates that were tried and why each one did not yield an alert.
    """

    retriable = False

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
