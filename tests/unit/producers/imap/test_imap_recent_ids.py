"""The bounded message-id memory that keeps a resync from republishing."""

from __future__ import annotations

import pytest

from producers.imap import RecentIds


def test_remembers_up_to_capacity_and_forgets_the_oldest() -> None:
    ids = RecentIds(3)
    ids.update(["a", "b", "c", "d"])
    assert "a" not in ids
    assert all(x in ids for x in "bcd")
    assert len(ids) == 3


def test_seeing_an_id_again_makes_it_recent() -> None:
    ids = RecentIds(2)
    ids.update(["a", "b"])
    ids.add("a")
    ids.add("c")
    assert "a" in ids
    assert "b" not in ids


def test_capacity_must_be_positive() -> None:
    with pytest.raises(ValueError, match="capacity"):
        RecentIds(0)
