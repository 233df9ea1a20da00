"""rca-result → actions: only what the policy allows, in the state its risk calls for, cooldowns applied."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from policies import PolicySet, cooldown_key, decide
from schemas.records import RcaResult
from schemas.topics import ACTIONS
from streams.stages.core import Out, StageContext, StageResult

STAGE = "decide"

#: The grouping key of records that cannot be decoded (they are dead-lettered by the decide stage).
UNKNOWN_GROUP = "unknown"


def group_key(result: RcaResult) -> str:
    """The decide stage's grouping key: the cooldown memory of one target lives in one partition."""
    return f"{result.tenant}:{result.incident.fingerprint}"


class Decide:
    """Turns an analysis (the policy's triage or the LLM's answer) into action records."""

    def __init__(self, policies: PolicySet, *, context: StageContext | None = None) -> None:
        self.policies = policies
        self.context = context or StageContext()

    def __call__(self, result: RcaResult, last_run: Mapping[str, str] | None = None) -> StageResult:
        """``last_run`` (cooldown key → ISO time) is the caller's memory of when each action last went
        ahead for this fingerprint; the updated memory is in ``StageResult.state``."""
        now = self.context.now()
        memory = {key: datetime.fromisoformat(at) for key, at in (last_run or {}).items()}
        decision = decide(result, self.policies, now, last_run=memory)
        outs = [Out(ACTIONS, f"{a.tenant}:{a.action_id}", a) for a in decision.actions]
        outs += [Out(ACTIONS, f"{a.tenant}:{a.action_id}", a) for a in decision.rejected]
        updated = dict(last_run or {})
        for action in decision.actions:
            updated[cooldown_key(action.tenant, result.incident.fingerprint, action.name)] = now.isoformat()
        metrics = self.context.metrics
        if metrics:
            for action in decision.actions + decision.rejected:
                metrics.actions.labels(action.state.value, action.risk.value).inc()
        self.context.count(STAGE, "ok")
        return StageResult(outs, state=updated, subject=result)
