"""incident (from dedup, re-keyed tenant:scope) → incidents: the same record with its group, reason and root candidate.

Every incident record dedup made leaves here exactly once per input (nothing is held back or merged away):
correlation only adds ``group_id``/``group_reason``/``root_candidate`` (Incident v4). The rules are the policy
file's ``correlation:`` section (:mod:`policies.correlation`); without one, records pass unchanged.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from policies import PolicySet
from policies.correlation import CorrelationStateError, Correlator, scope_key
from schemas.records import Incident
from schemas.topics import INCIDENTS
from streams.stages.core import Out, StageContext, StageResult

logger = logging.getLogger(__name__)

STAGE = "correlate"


class Correlate:
    """Places each incident record in a group; the table row (keyed :meth:`route_key`) holds a scope's groups."""

    def __init__(self, policies: PolicySet, *, context: StageContext | None = None) -> None:
        spec = policies.document.correlation
        self.correlator = Correlator(spec) if spec is not None else None
        self.context = context or StageContext()

    def route_key(self, incident: Incident) -> str:
        """``tenant:<cluster>``: members of one group meet in one partition (and one table row)."""
        return scope_key(self.correlator.spec if self.correlator else None, incident)

    def __call__(self, incident: Incident, state: Mapping[str, Any] | None) -> StageResult:
        out_key = f"{incident.tenant}:{incident.fingerprint}"  # the incidents topic's key, as dedup sent it
        if self.correlator is None:
            self.context.count(STAGE, "off")
            return StageResult([Out(INCIDENTS, out_key, incident)], outcome="off")
        try:
            placed = self.correlator(incident, state)
        except CorrelationStateError as exc:
            # A row this version cannot read must not cost the incident: start the scope's groups afresh.
            logger.warning("correlate: %s for %s; its groups start afresh", exc, self.route_key(incident),
                           extra={"tenant": incident.tenant, "incident_id": incident.incident_id})
            placed = self.correlator(incident, None)
        grouped = incident.model_copy(update={"group_id": placed.group_id, "group_reason": placed.reason[:500],
                                              "root_candidate": placed.root_candidate})
        self.context.count(STAGE, placed.outcome)
        result = StageResult([Out(INCIDENTS, out_key, grouped)], outcome=placed.outcome, subject=grouped)
        result.state = None if placed.state is None else placed.state.model_dump(mode="json")
        return result
