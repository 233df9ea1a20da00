"""The producers' common error base, so an ingest failure is one type whatever the source."""

from __future__ import annotations

from schemas.errors import RcaflowError


class ProducerError(RcaflowError):
    """Base of every error raised by ``producers`` (mail parsing, IMAP, Graph, publishing).

    Each source keeps its own subtree and its own ``retriable`` default; this base only
    lets a caller catch "the ingest side failed" without naming every source.
    """
