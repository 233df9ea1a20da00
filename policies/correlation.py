"""Incident correlation, pure: which open group a new incident joins, why, and the group's root-cause candidate.

Rules come from the policy file's ``correlation:`` section (:mod:`policies.correlation_spec`). Guarantees:

- never across tenants, never across ``scope`` values (by default the cluster): the state a caller keeps is per
  ``tenant`` + scope values (:func:`scope_key`), and every group also remembers its scope and is skipped for an
  incident of another one, so a state handed over by mistake still merges nothing;
- an incident without every scope label is never grouped with another (its group is itself);
- the same incident (a re-delivery, its count updates, its resolution) always answers the same group while the
  group is remembered: group membership is looked up by incident id before any rule runs;
- a new incident joins the oldest open group holding a member it relates to (a chain or a join key) whose last
  member opened within ``window`` of it; otherwise it opens a group of its own, whose id is its incident id.

Groups never merge with each other once formed (a later incident related to two groups joins the older one):
a message already posted per group stays the one message of that group.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from policies.correlation_spec import CorrelationSpec
from policies.errors import PolicyError
from schemas.records import Incident, IncidentState

#: Longest label value compared (labels come from mail: bounded before they reach a table row).
_VALUE_CHARS = 256
#: How long a group is remembered after its last member opened, so late updates and resolutions still find it.
KEEP_AFTER = timedelta(hours=24)
#: Reason of a group's first member.
OPENED = "first alert of its group"


class Member(BaseModel):
    """One incident of a group, as much as the rules need."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    incident_id: str
    alert_class: str
    opened_at: datetime
    reason: str
    keys: dict[str, list[str]] = Field(default_factory=dict)


class Group(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    group_id: str
    tenant: str
    scope: dict[str, str]
    opened_at: datetime
    last_opened_at: datetime
    members: list[Member]


class CorrelationState(BaseModel):
    """One scope's open groups (a table row keyed :func:`scope_key`); JSON-serialisable."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    groups: list[Group] = Field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Correlation:
    """What the rules decided for one incident record; ``state`` None: the row is unchanged."""

    group_id: str
    reason: str
    root_candidate: str
    #: "opened" (first of a group), "joined", "known" (an incident already placed), "alone" (not groupable).
    outcome: str
    state: CorrelationState | None
    size: int = 1


class CorrelationStateError(PolicyError):
    """A stored state that no longer reads as :class:`CorrelationState` (the caller dead-letters the input)."""


def scope_values(spec: CorrelationSpec, incident: Incident) -> dict[str, str] | None:
    """The incident's value of every scope label, or None when one is missing (then it is never grouped)."""
    labels = incident.event.labels
    values = {name: (labels.get(name) or "").strip()[:_VALUE_CHARS] for name in spec.scope}
    return values if all(values.values()) else None


def scope_key(spec: CorrelationSpec | None, incident: Incident) -> str:
    """The partition/table key under which members of one group meet: ``tenant:<scope values>``.

    Incidents without the scope labels get ``tenant:~<incident id>`` (each alone, spread over partitions).
    """
    values = scope_values(spec, incident) if spec is not None else None
    if values is None:
        return f"{incident.tenant}:~{incident.incident_id}"
    return f"{incident.tenant}:" + "\x1f".join(values[name] for name in spec.scope)  # type: ignore[union-attr]


def _host(value: str) -> str:
    value = value.strip()
    if value.startswith("["):  # [ipv6]:port
        return value[1:].partition("]")[0]
    head, sep, tail = value.rpartition(":")
    return head if sep and tail.isdigit() and ":" not in head else value


def key_values(spec: CorrelationSpec, incident: Incident) -> dict[str, list[str]]:
    """Per join key, the normalised values the incident's labels give it (``name:host`` strips a port)."""
    labels = incident.event.labels
    out: dict[str, list[str]] = {}
    for key, sources in spec.keys.items():
        found: list[str] = []
        for source in sources:
            name, _, transform = source.partition(":")
            raw = (labels.get(name) or "").strip()
            if not raw:
                continue
            value = (_host(raw) if transform == "host" else raw).casefold()[:_VALUE_CHARS]
            if value and value not in found:
                found.append(value)
        if found:
            out[key] = found
    return out


class Correlator:
    """The rules of one policy file, compiled: chain positions and join keys."""

    def __init__(self, spec: CorrelationSpec) -> None:
        self.spec = spec
        self._chain: dict[str, tuple[str, int]] = {
            cls: (chain.name, index) for chain in spec.chains for index, cls in enumerate(chain.classes)
        }
        self._last_rank = max((len(c.classes) for c in spec.chains), default=0)

    def rank(self, alert_class: str) -> int:
        """Position in its chain (0: most upstream); classes in no chain come after every chain class."""
        place = self._chain.get(alert_class)
        return place[1] if place is not None else self._last_rank

    def relation(self, new: Member, old: Member) -> str | None:
        """Why ``new`` belongs with ``old`` (the first rule that holds), or None."""
        a, b = self._chain.get(new.alert_class), self._chain.get(old.alert_class)
        if a is not None and b is not None and a[0] == b[0]:
            first, second = sorted(((a[1], new.alert_class), (b[1], old.alert_class)))
            return f"causal chain {a[0]}: {first[1]} → {second[1]}" if first[1] != second[1] else \
                f"causal chain {a[0]}: {new.alert_class} again"
        for join in self.spec.joins:
            shared = sorted(set(new.keys.get(join.key, ())) & set(old.keys.get(join.key, ())))
            if shared:
                return f"{join.reason or 'same ' + join.key} {shared[0]}"
        return None

    def root(self, group: Group) -> Member:
        """The most upstream class present; ties go to the member that opened first."""
        return min(group.members, key=lambda m: (self.rank(m.alert_class), m.opened_at, m.incident_id))

    def __call__(self, incident: Incident, state: Mapping[str, Any] | None) -> Correlation:
        """Place ``incident`` (any record of it: opened, updated, resolved) in a group."""
        try:
            current = CorrelationState.model_validate(state) if state else CorrelationState()
        except ValidationError as exc:
            raise CorrelationStateError(f"unreadable correlation state: {exc.error_count()} error(s)") from exc
        scope = scope_values(self.spec, incident)
        if scope is None:
            return Correlation(incident.incident_id, f"not grouped: no {'/'.join(self.spec.scope)} label",
                               incident.incident_id, "alone", None)
        for group in current.groups:
            member = next((m for m in group.members if m.incident_id == incident.incident_id), None)
            if member is not None and self._same_scope(group, incident, scope):
                return Correlation(group.group_id, member.reason, self.root(group).incident_id, "known", None,
                                   len(group.members))
        now = incident.opened_at
        kept = [g for g in current.groups if now - g.last_opened_at < KEEP_AFTER]
        opening = incident.count == 1 and incident.state is IncidentState.OPEN
        if not opening:
            # An update of an incident whose group was forgotten (or that opened before correlation was on).
            return Correlation(incident.incident_id, "not grouped: its group is no longer remembered",
                               incident.incident_id, "alone", None)
        new = Member(incident_id=incident.incident_id, alert_class=incident.alert_class, opened_at=now, reason=OPENED,
                     keys=key_values(self.spec, incident))
        for index, group in enumerate(kept):
            if not self._open_to(group, incident, scope, now):
                continue
            reason = next((r for m in group.members if (r := self.relation(new, m)) is not None), None)
            if reason is None:
                continue
            joined = group.model_copy(update={
                "members": [*group.members, new.model_copy(update={"reason": reason})],
                "last_opened_at": max(group.last_opened_at, now),
            })
            kept[index] = joined
            return Correlation(joined.group_id, reason, self.root(joined).incident_id, "joined",
                               CorrelationState(groups=kept), len(joined.members))
        group = Group(group_id=incident.incident_id, tenant=incident.tenant, scope=scope, opened_at=now,
                      last_opened_at=now, members=[new])
        kept = [*kept, group][-self.spec.max_groups:]
        return Correlation(group.group_id, OPENED, incident.incident_id, "opened", CorrelationState(groups=kept))

    def _open_to(self, group: Group, incident: Incident, scope: Mapping[str, str], now: datetime) -> bool:
        window = self.spec.window
        return (self._same_scope(group, incident, scope) and len(group.members) < self.spec.max_members
                and now - group.last_opened_at <= window and group.opened_at - now <= window)

    @staticmethod
    def _same_scope(group: Group, incident: Incident, scope: Mapping[str, str]) -> bool:
        """The guard that holds whatever state the caller passes: one tenant, one scope (e.g. one cluster)."""
        return group.tenant == incident.tenant and group.scope == dict(scope)
