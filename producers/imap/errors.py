"""Errors of the IMAP producer; ``retriable`` tells the run loop whether to back off and reconnect."""

from __future__ import annotations

from producers.errors import ProducerError


class ImapProducerError(ProducerError):
    """Base of the IMAP producer's errors; most are a server that may come back, hence retriable."""

    retriable = True


class ImapConnectionError(ImapProducerError):
    """The server is unreachable, hung up, or answered out of protocol: reconnect with backoff."""

    retriable = True


class ImapAuthError(ImapProducerError):
    """The server refused the credentials: retrying would only lock the account, so stop."""

    retriable = False


class ImapMailboxError(ImapProducerError):
    """The folder cannot be selected (missing, no rights); it may appear later, so keep retrying."""

    retriable = True


class CheckpointError(ImapProducerError):
    """The checkpoint or raw-mail topic could not be read at start-up."""

    retriable = True
