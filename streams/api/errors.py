"""The approval callbacks' error tree; a refusal carries its :class:`Rejection` so the router answers once."""

from __future__ import annotations

from streams.errors import StreamsError
from streams.stages.approval import Rejection


class ApprovalsError(StreamsError):
    """Base of errors raised by the approval callbacks; ``retriable`` says whether the caller may retry."""


class RefusedError(ApprovalsError):
    """A callback or link was refused; ``rejection`` says why (and is what gets audited)."""

    def __init__(self, rejection: Rejection) -> None:
        super().__init__(rejection.message)
        self.rejection = rejection
