"""The policies package's error tree: every failure is a bad input or a bad file, never transient."""

from __future__ import annotations

from schemas.errors import RcaflowError


class PolicyError(RcaflowError):
    """Base of policy errors; ``retriable`` is False because retrying the same input cannot help.

    ``message`` is the bare problem (callers re-locate it); when the error is about the
    policy file, ``file``, ``line`` and ``field`` say where, so ``str(err)`` reads
    ``remediation_policies.yaml:42: classes[3].actions[0].risk: ...``.
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        field: str | None = None,
    ) -> None:
        self.file = file
        self.line = line
        self.field = field
        super().__init__(message)

    def __str__(self) -> str:
        return self._render()

    def _render(self) -> str:
        where = ""
        if self.file is not None:
            where = self.file if self.line is None else f"{self.file}:{self.line}"
            where += ": "
        if self.field:
            where += f"{self.field}: "
        return f"{where}{self.message}"


class PolicyFileError(PolicyError):
    """The policy file is unreadable or invalid; ``errors`` holds every problem found, not just the first."""

    def __init__(self, errors: list[PolicyError]) -> None:
        self.errors = errors
        first = errors[0] if errors else PolicyError("invalid policy file")
        super().__init__(first.message, file=first.file, line=first.line, field=first.field)

    def _render(self) -> str:
        return "\n".join(str(e) for e in self.errors) if self.errors else "invalid policy file"


class LabelValidationError(PolicyError):
    """An untrusted value (a label, an LLM-proposed parameter) does not match the format it must have."""


class ExpressionError(PolicyError):
    """A CEL expression failed to compile or to evaluate."""
