"""Read-only evidence tools (prom, k8s, es, netprobe) and the runner that executes a class's evidence plan.

Tool families are imported on use by :func:`build_evidence_tools`, so a missing backend costs nothing.
"""

from executors.evidence.base import EvidenceContext, EvidenceTool, Finding, Observation, RequestLog
from executors.evidence.runner import EvidenceReport, EvidenceRunner, PlannedStep, plan_from_triage
from executors.evidence.tools import build_evidence_tools

__all__ = [
    "EvidenceContext",
    "EvidenceReport",
    "EvidenceRunner",
    "EvidenceTool",
    "Finding",
    "Observation",
    "PlannedStep",
    "RequestLog",
    "build_evidence_tools",
    "plan_from_triage",
]
