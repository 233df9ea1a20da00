"""Why an approval callback or link was refused, as data the API layer can map to 401/403."""

from __future__ import annotations

from enum import StrEnum

from executors.errors import ExecutorError


class SignatureFailure(StrEnum):
    MISSING = "missing"
    MALFORMED = "malformed"
    STALE = "stale"
    MISMATCH = "mismatch"
    EXPIRED = "expired"
    REPLAYED = "replayed"
    WRONG_TENANT = "wrong_tenant"


class SignatureError(ExecutorError):
    """A signature or token did not verify; ``reason`` says why. Never retriable: the request is refused."""

    def __init__(self, reason: SignatureFailure, message: str) -> None:
        super().__init__(message, retriable=False)
        self.reason = reason
