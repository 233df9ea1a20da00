"""Build the ``"tool.operation"`` → tool map the runner takes, from whichever backends are configured.

Which operations a family has comes from the catalogue (``schemas.operations``), so
a new evidence operation is its class plus one catalogue entry. A family whose
backend is ``None`` is simply absent, so its plan steps come out ``skipped`` ("not
configured here") rather than failing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from executors.errors import UnknownToolError
from executors.evidence.base import EvidenceTool
from executors.registry import resolve
from schemas.operations import EVIDENCE, Operation

if TYPE_CHECKING:
    import httpx

    from executors.evidence.es import EsApi
    from executors.evidence.netprobe import NetprobeConfig
    from executors.evidence.prom import PromApi
    from executors.tools.k8s_api import K8sApi


def evidence_class(op: Operation) -> type[EvidenceTool[Any]]:
    """The class implementing ``op``, imported now; a catalogue entry that names anything else is a bug."""
    cls = resolve(op.implementation)
    if not (isinstance(cls, type) and issubclass(cls, EvidenceTool)):
        raise UnknownToolError(f"catalogue entry {op.name!r} -> {op.implementation!r} is not an EvidenceTool")
    if cls.spec.name != op.name:
        raise UnknownToolError(f"catalogue entry {op.name!r} -> {op.implementation!r} declares {cls.spec.name!r}")
    return cls


def build_evidence_tools(
    *,
    prom: PromApi | None = None,
    k8s: K8sApi | None = None,
    es: EsApi | None = None,
    netprobe: NetprobeConfig | None = None,
    http_client: httpx.AsyncClient | None = None,
) -> dict[str, EvidenceTool[Any]]:
    """Imports a family's classes only when its backend is given (an optional dependency missing stays harmless)."""
    # What each configured family's tools are constructed with; one keyword argument per catalogue family.
    arguments: dict[str, tuple[object, ...]] = {}
    if prom is not None:
        arguments["prom"] = (prom,)
    if k8s is not None:
        arguments["k8s"] = (k8s,)
    if es is not None:
        arguments["es"] = (es,)
    if netprobe is not None:
        arguments["netprobe"] = (netprobe, http_client)
    tools: dict[str, EvidenceTool[Any]] = {}
    for op in EVIDENCE:
        if op.family in arguments:
            make = cast(Callable[..., EvidenceTool[Any]], evidence_class(op))
            tools[op.name] = make(*arguments[op.family])
    return tools
