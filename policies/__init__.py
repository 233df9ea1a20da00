"""rcaflow's pure policy layer: load the remediation policy file, classify, dedup, triage and decide.

Imports only ``schemas`` and libraries; the only I/O is reading the policy file it is given.
"""

from policies.checks import UNCLASSIFIED
from policies.decide import Decisions, cooldown_key, decide
from policies.dedup import RECENT_EVENT_IDS, DedupOutcome, DedupState, dedup, incident_id_for
from policies.errors import ExpressionError, LabelValidationError, PolicyError, PolicyFileError
from policies.loader import DEFAULT_POLICY_FILE, PolicySet, load_policies, parse_policies
from policies.params import action_id_for
from policies.triage import choose_diagnosis, evaluate_thresholds, triage
from policies.validate import is_valid, promql_escape, promql_regex_escape, validate

__all__ = [
    "DEFAULT_POLICY_FILE",
    "RECENT_EVENT_IDS",
    "UNCLASSIFIED",
    "Decisions",
    "DedupOutcome",
    "DedupState",
    "ExpressionError",
    "LabelValidationError",
    "PolicyError",
    "PolicyFileError",
    "PolicySet",
    "action_id_for",
    "choose_diagnosis",
    "cooldown_key",
    "decide",
    "dedup",
    "evaluate_thresholds",
    "incident_id_for",
    "is_valid",
    "load_policies",
    "parse_policies",
    "promql_escape",
    "promql_regex_escape",
    "triage",
    "validate",
]
