"""The ``correlation:`` section of the policy file as pydantic models (shape and types; cross-checks below).

Kept apart from :mod:`policies.model` (which only names :class:`CorrelationSpec`) so the correlation rules can
grow without touching the class format. :func:`correlation_problems` checks what needs the whole document
(every class a chain names exists, no class in two chains, keys defined) and names each problem's field path.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import timedelta
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

_DURATION = re.compile(r"(?P<n>[0-9]+)(?P<unit>s|m|h|d)")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
#: A label source: a label name, or ``name:host`` (the host part of an ``IP:port`` / ``host:port`` value).
LABEL_SOURCE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*(:host)?$")


def _window(value: object) -> timedelta:
    if isinstance(value, timedelta):
        return value
    if not isinstance(value, str) or not (match := _DURATION.fullmatch(value.strip())):
        raise ValueError(f"{value!r} is not a duration like 90s, 15m or 2h")
    return timedelta(seconds=int(match["n"]) * _UNITS[match["unit"]])


Window = Annotated[timedelta, BeforeValidator(_window)]
Name = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]*$", max_length=64)]
LabelSource = Annotated[str, Field(pattern=LABEL_SOURCE.pattern, max_length=128)]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class JoinRule(_Model):
    """Incidents that share a value of ``key`` (e.g. the same node) belong to one group."""

    key: Name
    #: What the group's reason says, e.g. "same node" → "same node 10.0.0.5".
    reason: str = ""


class ChainRule(_Model):
    """Classes in causal order, most upstream first: incidents of classes of one chain belong to one group."""

    name: Name
    classes: list[Name] = Field(min_length=2)


class CorrelationSpec(_Model):
    """How incidents of one tenant are grouped; never across tenants or across ``scope`` values."""

    #: A member joins a group whose last member opened less than this long ago.
    window: Window = timedelta(minutes=15)
    #: Labels that must be equal (and present) for two incidents to be grouped; also the table's partition key.
    scope: list[Annotated[str, Field(pattern=r"^[a-zA-Z_][a-zA-Z0-9_]*$")]] = Field(default_factory=lambda: ["cluster"],
                                                                                    min_length=1)
    #: Join key → the label sources whose values name it (first non-empty per source; all sources count).
    keys: dict[Name, list[LabelSource]] = Field(default_factory=dict)
    joins: list[JoinRule] = Field(default_factory=list)
    chains: list[ChainRule] = Field(default_factory=list)
    #: Members a group takes; past it a new group opens (bounds the table row).
    max_members: int = Field(default=200, ge=2, le=2000)
    #: Open groups remembered per scope (oldest forgotten first).
    max_groups: int = Field(default=200, ge=1, le=5000)


PathKey = tuple[str | int, ...]


def correlation_problems(spec: CorrelationSpec | None, class_ids: Iterable[str]) -> list[tuple[PathKey, str]]:
    """What the models cannot see alone: each chain's classes exist and appear once; joins name defined keys."""
    if spec is None:
        return []
    known = set(class_ids)
    problems: list[tuple[PathKey, str]] = []
    owner: dict[str, str] = {}
    for i, chain in enumerate(spec.chains):
        for j, cls in enumerate(chain.classes):
            path: PathKey = ("correlation", "chains", i, "classes", j)
            if cls not in known:
                problems.append((path, f"unknown class {cls!r} in chain {chain.name!r}; known: "
                                       f"{', '.join(sorted(known))}"))
            elif cls in owner:
                problems.append((path, f"class {cls!r} is already in chain {owner[cls]!r}: a class has one place "
                                       "in the causal order"))
            else:
                owner[cls] = chain.name
    for i, join in enumerate(spec.joins):
        if join.key not in spec.keys:
            problems.append((("correlation", "joins", i, "key"),
                             f"join key {join.key!r} is not defined under correlation.keys "
                             f"(defined: {', '.join(sorted(spec.keys)) or 'none'})"))
    for name, sources in spec.keys.items():
        if not sources:
            problems.append((("correlation", "keys", name), f"key {name!r} names no label"))
    return problems
