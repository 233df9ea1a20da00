"""Errors of the mail parser: one type, never retriable, with a reason for the dead-letter record."""

from __future__ import annotations

from producers.errors import ProducerError


class MailParseError(ProducerError):
    """The mail holds no alert we can read; retrying the same bytes cannot help.

    ``message`` is meant for a human reading the dead-letter topic: it names the
    templates that were tried and why each one did not yield an alert.
    """

    retriable = False
