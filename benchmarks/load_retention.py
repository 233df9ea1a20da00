"""Short retention for a long load run: a policy copy whose windows, cooldowns and approval TTLs are capped.

The worker forgets a table row only once no policy time can still need it: a dedup-state row after the
longest dedup window of *any* class (2 h in the bundled policy) plus ``worker.prune_margin_s``, an
action-cooldowns row after the longest cooldown of any action (up to 6 h, 30 min when unset), an awaiting
row when its approval expires (1 h). With those, a one-hour run shows only growth, never the steady state
where rows are deleted as fast as they are made. The settings shorten the margins
(``RCAFLOW_WORKER__PRUNE_MARGIN_S`` and friends, ``--env`` of the load bench); this module shortens the
policy times, in a copy the roles read through ``RCAFLOW_POLICIES_FILE``. The copy must still load: it is
checked with the same loader the worker uses, so a bad cap fails here, not in the worker's log.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml

from policies.loader import load_policies
from policies.model import format_duration, parse_duration

#: The bundled policy the copy is made from (what the worker runs when ``policies_file`` is unset).
BUNDLED = Path(__file__).resolve().parent.parent / "policies" / "remediation_policies.yaml"
#: An action's cooldown when the policy names none (policies.model.ActionSpec).
DEFAULT_COOLDOWN = timedelta(minutes=30)


def _capped(value: object, cap: timedelta) -> str:
    return format_duration(min(parse_duration(value), cap))


def cap_policy_times(document: dict[str, Any], cap: timedelta) -> dict[str, Any]:
    """``document`` (a parsed policy file) with every dedup window, cooldown and approval TTL at most ``cap``.

    An action without a cooldown gets ``min(30m, cap)`` written out, since its default would otherwise keep
    its cooldown rows for 30 min. Changes ``document`` in place and returns it.
    """
    defaults = document["defaults"]
    for key in ("dedup_window", "approval_ttl"):
        defaults[key] = _capped(defaults[key], cap)
    for cls in document["classes"]:
        if "dedup_window" in cls:
            cls["dedup_window"] = _capped(cls["dedup_window"], cap)
        for action in cls.get("actions", []):
            action["cooldown"] = _capped(action.get("cooldown", DEFAULT_COOLDOWN), cap)
            if "approval_ttl" in action:
                action["approval_ttl"] = _capped(action["approval_ttl"], cap)
    return document


def write_capped_policies(dest: Path, cap: timedelta, source: Path = BUNDLED) -> Path:
    """Write the capped copy of ``source`` to ``dest`` and load it as the worker would; returns ``dest``."""
    document = yaml.safe_load(source.read_text(encoding="utf-8"))
    dest.write_text(yaml.safe_dump(cap_policy_times(document, cap), allow_unicode=True, sort_keys=False),
                    encoding="utf-8")
    load_policies(dest)  # a PolicyError names the field, before any role starts
    return dest
