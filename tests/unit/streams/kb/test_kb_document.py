"""The knowledge-base fold, pure: the same document whatever the order and however often records arrive;
tenants never share an index pattern; the shipped template is the one in deploy/."""

from __future__ import annotations

import itertools
import json
import random
from pathlib import Path

import pytest

from schemas.records import ActionEvent, Incident, RcaResult, Record
from streams.kb import document as kbdoc
from streams.kb.store import index_template
from tests.integration.kb.records import lifecycle

ROOT = Path(__file__).resolve().parents[4]


def fold_all(records: list[Record]) -> dict[str, object]:
    doc = kbdoc.new_document("acme", "inc")
    for record in records:
        if isinstance(record, RcaResult):
            kbdoc.fold_rca(doc, record)
        elif isinstance(record, Incident):
            kbdoc.fold_incident(doc, record)
        elif isinstance(record, ActionEvent):
            kbdoc.fold_action(doc, record)
    return kbdoc.public(kbdoc.finish(doc))


@pytest.mark.parametrize("seed", range(20))
def test_any_order_and_duplicates_give_the_same_document(seed: int) -> None:
    records = lifecycle("acme", "inc")
    shuffled = records * 2
    random.Random(seed).shuffle(shuffled)
    assert fold_all(shuffled) == fold_all(records)


@pytest.mark.parametrize("seed", range(10))
def test_the_newest_answer_per_engine_wins_whatever_order(seed: int) -> None:
    records = lifecycle("acme", "inc")
    policy = next(r for r in records if isinstance(r, RcaResult))
    retriage = policy.model_copy(update={"diagnosis": "re-triage: vmstorage disk full",
                                         "produced_at": policy.produced_at.replace(hour=23)})
    shuffled = [*records, retriage]
    random.Random(seed).shuffle(shuffled)
    doc = fold_all(shuffled)
    assert doc["diagnosis"]["policy"]["diagnosis"] == "re-triage: vmstorage disk full"  # type: ignore[index]
    assert doc == fold_all([*records, retriage])


def test_fixed_by_needs_success_before_the_resolve() -> None:
    assert fold_all(lifecycle("acme", "inc"))["resolution"]["fixed_by"] == "restart-vminsert"  # type: ignore[index]
    assert fold_all(lifecycle("acme", "inc", succeed=False))["resolution"]["fixed_by"] is None  # type: ignore[index]
    assert fold_all(lifecycle("acme", "inc", resolve=False))["resolution"]["fixed_by"] is None  # type: ignore[index]


@pytest.mark.parametrize(("a", "b"), list(itertools.permutations(["acme", "acme-prod", "ACME", "acme.prod", "a/b"], 2)))
def test_no_tenant_pattern_matches_another_tenants_index(a: str, b: str) -> None:
    import fnmatch

    index_of_b = kbdoc.index_name("rcaflow-kb", b, lifecycle(b, "x")[0].opened_at)  # type: ignore[attr-defined]
    assert not fnmatch.fnmatchcase(index_of_b, kbdoc.tenant_pattern("rcaflow-kb", a))
    assert fnmatch.fnmatchcase(index_of_b, kbdoc.tenant_pattern("rcaflow-kb", b))


def test_the_deployed_template_is_the_packaged_one() -> None:
    deployed = json.loads((ROOT / "deploy" / "elasticsearch" / "kb-index-template.json").read_text())
    assert index_template("rcaflow-kb", 1) == deployed


def test_every_action_state_has_a_rank() -> None:
    """A state the KB cannot rank (a new one, like ``withdrawn``) would stop the consumer on that record."""
    from schemas.records import ActionState

    assert set(kbdoc._RANK) == set(ActionState)
