"""The approvals error tree; a refusal carries its :class:`Rejection` so the router answers once."""

from __future__ import annotations

from streams.approvals.decisions import Rejection


class ApprovalsError(Exception):
    """Base of errors raised by ``streams.approvals``; ``retriable`` says whether the caller may retry."""

    retriable: bool = False


class RefusedError(ApprovalsError):
    """A callback or link was refused; ``rejection`` says why (and is what gets audited)."""

    def __init__(self, rejection: Rejection) -> None:
        super().__init__(rejection.message)
        self.rejection = rejection
