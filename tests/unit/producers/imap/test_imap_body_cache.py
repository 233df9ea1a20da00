"""The bodies an IMAP round downloaded but could not use, kept for the next round: never more bytes than the
capacity (the lowest UIDs kept, the ones the next round reads first), never served for another UIDVALIDITY (a
recreated folder's UID names another mail), never kept for mails the checkpoint already passed."""

from __future__ import annotations

import pytest

from producers.imap.body_cache import BodyCache


def test_bodies_kept_are_served_once_then_downloaded_again_if_asked_for() -> None:
    cache = BodyCache(100)
    cache.keep(7, {3: b"three", 4: b"four"}, after=2)
    assert cache.holds(7, 3) and not cache.holds(7, 5)
    assert cache.take(7, [3, 5]) == {3: b"three"}
    assert cache.take(7, [3]) == {}  # taken: the round holds it now and keeps it again if it defers
    assert len(cache) == 1 and cache.size == len(b"four")


def test_another_uidvalidity_gets_nothing_and_clears_what_was_kept() -> None:
    cache = BodyCache(100)
    cache.keep(7, {3: b"old folder's mail 3"}, after=0)
    assert not cache.holds(8, 3)
    assert cache.take(8, [3]) == {}
    assert cache.take(7, [3]) == {}  # forgotten, not waiting for the old folder to come back
    assert len(cache) == 0 and cache.size == 0
    cache.keep(None, {3: b"x"}, after=0)  # no UIDVALIDITY known yet: nothing to key it by, nothing kept
    assert len(cache) == 0


def test_the_capacity_keeps_the_lowest_uids_in_a_contiguous_run() -> None:
    cache = BodyCache(10)
    cache.keep(1, {5: b"55555", 6: b"666666", 7: b"7"}, after=0)
    assert sorted(cache.take(1, [5, 6, 7])) == [5]  # 5 + 6 bytes exceed 10: 6 let go, and 7 after the hole too
    cache.keep(1, {9: b"999"}, after=0)
    cache.keep(1, {8: b"88888888"}, after=0)
    assert sorted(cache.take(1, [8, 9])) == [8]  # the lower UID wins the room over one kept before
    assert cache.size == 0


def test_a_body_above_the_capacity_is_not_kept() -> None:
    cache = BodyCache(4)
    cache.keep(1, {2: b"too big"}, after=0)
    assert len(cache) == 0


def test_mails_the_checkpoint_passed_are_let_go() -> None:
    cache = BodyCache(100)
    cache.keep(1, {2: b"2", 3: b"3", 4: b"4"}, after=2)  # UID 2 is already checkpointed: not kept
    assert not cache.holds(1, 2)
    cache.drop_through(3)
    assert not cache.holds(1, 3) and cache.holds(1, 4) and cache.size == 1


def test_capacity_must_be_positive() -> None:
    with pytest.raises(ValueError):
        BodyCache(0)
