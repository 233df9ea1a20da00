"""Load and validate the remediation policy file into a PolicySet (classification, windows, TTLs)."""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path
from typing import Any, Final

from pydantic import ValidationError

from policies.checks import compile_document
from policies.classify import Classification, classify_event
from policies.compiled import CompiledClass
from policies.errors import PolicyError, PolicyFileError
from policies.model import PolicyDocument
from policies.yamlsource import LineMap, format_path, load_yaml
from schemas.records import AlertEvent, Risk

logger = logging.getLogger(__name__)

DEFAULT_POLICY_FILE: Final = Path(__file__).with_name("remediation_policies.yaml")


class PolicySet:
    """The validated policy file; guarantees every class compiled and every reference resolved."""

    def __init__(
        self,
        document: PolicyDocument,
        classes: list[CompiledClass],
        source: str,
        *,
        disabled: dict[tuple[str, str], str] | None = None,
    ) -> None:
        self.document = document
        self.source = source
        #: (class, action) -> why a tenant's overlay switched it off (policies.tenant_overlay); empty for a base.
        self.disabled: dict[tuple[str, str], str] = dict(disabled or {})
        self._classes = {c.id: c for c in classes}
        self._order = tuple(classes)

    @property
    def classes(self) -> tuple[CompiledClass, ...]:
        return self._order

    def get(self, alert_class: str) -> CompiledClass | None:
        return self._classes.get(alert_class)

    def classify(self, event: AlertEvent) -> str:
        """The class whose matchers accept the event most strongly, else ``"unclassified"`` (also on a tie)."""
        return classify_event(self._order, event).alert_class

    def classification(self, event: AlertEvent) -> Classification:
        """:meth:`classify` with its reason: the rank matched at, or the classes it could not choose between."""
        return classify_event(self._order, event)

    def dedup_window(self, alert_class: str) -> timedelta:
        cls = self._classes.get(alert_class)
        if cls is not None and cls.spec.dedup_window is not None:
            return cls.spec.dedup_window
        return self.document.defaults.dedup_window

    def approval_ttl(self, alert_class: str, action_name: str) -> timedelta:
        cls = self._classes.get(alert_class)
        action = cls.action(action_name) if cls is not None else None
        if action is not None and action.approval_ttl is not None:
            return action.approval_ttl
        return self.document.defaults.approval_ttl

    def allows_anonymous_approval(self, alert_class: str, action_name: str) -> bool:
        """Whether a link naming nobody may decide this action (``anonymous_approval: true``; default no)."""
        cls = self._classes.get(alert_class)
        action = cls.action(action_name) if cls is not None else None
        return action is not None and action.anonymous_approval and action.risk is not Risk.HIGH

    def severity(self, event: AlertEvent, alert_class: str | None = None) -> str:
        """The event's priority (P1..P4) by the class's severity map, then the default map.

        Keys are matched case-insensitively; an unmapped severity is returned as it came.
        """
        cls = self._classes.get(alert_class or event.alert_class)
        key = event.severity.strip().casefold()
        for mapping in (cls.spec.severity if cls else {}, self.document.defaults.severity):
            for name, priority in mapping.items():
                if name.casefold() == key:
                    return priority
        return event.severity


def load_policies(path: Path | None = None) -> PolicySet:
    """Read and validate a policy file (default: the one shipped with rcaflow); raise PolicyFileError."""
    target = path or DEFAULT_POLICY_FILE
    try:
        text = target.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyFileError([PolicyError(f"cannot read: {exc}", file=target.name)]) from exc
    return parse_policies(text, file=target.name)


def parse_policies(text: str, file: str = "<string>") -> PolicySet:
    """Validate policy YAML text; every problem found is in the raised PolicyFileError's ``errors``."""
    try:
        data, lines = load_yaml(text, file)
    except PolicyFileError:
        raise
    except PolicyError as exc:
        raise PolicyFileError([exc]) from exc
    try:
        document = PolicyDocument.model_validate(data)
    except ValidationError as exc:
        raise PolicyFileError(_from_pydantic(exc, lines, file)) from exc
    classes, problems = compile_document(document)
    if problems:
        raise PolicyFileError(
            [PolicyError(p.message, file=file, line=lines.line_of(p.path), field=format_path(p.path)) for p in problems]
        )
    logger.debug("loaded %d policy classes from %s", len(classes), file)
    return PolicySet(document, classes, file)


def _from_pydantic(exc: ValidationError, lines: LineMap, file: str) -> list[PolicyError]:
    errors: list[PolicyError] = []
    for err in exc.errors():
        loc = tuple(part for part in err["loc"] if isinstance(part, str | int))
        errors.append(PolicyError(_message(err), file=file, line=lines.line_of(loc), field=format_path(loc) or None))
    return errors


def _message(err: Any) -> str:
    kind = err.get("type", "")
    if kind == "missing":
        return "required field is missing"
    if kind == "extra_forbidden":
        return "unknown field (not part of the policy format)"
    value = err.get("input")
    msg = str(err.get("msg", "invalid value"))
    if isinstance(value, str | int | float | bool):
        return f"{value!r}: {msg[0].lower() + msg[1:]}"
    return msg
