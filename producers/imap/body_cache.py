"""Bodies a round downloaded but could not use because the tenant's quota deferred a mail before them, for the
next round: so a throttled tenant's read-ahead is downloaded once, not once per round.

A round fetches bodies in groups ahead of where it is (``fetch_budget_bytes``, no more mails than the tenant could
take); when a mail of the group is deferred (a digest costs more than its tenant can take now), the pass stops there
and the bodies after it, and its own, are not needed until the quota allows. IMAP never changes a message once it
has a UID within a UIDVALIDITY (RFC 3501 2.3.1.1), so the bytes kept are the bytes a new FETCH would return: serving
them changes what the server is asked, never what is published, in which order, or when the checkpoint moves.
In memory only, at most ``capacity_bytes`` (the lowest UIDs are kept: the next round starts from the lowest).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

__all__ = ["BodyCache"]


class BodyCache:
    """UID -> body for one folder at one UIDVALIDITY; forgets everything when the UIDVALIDITY changes.

    Not thread-safe: one per mailbox, used from its producer's event loop.
    """

    def __init__(self, capacity_bytes: int) -> None:
        if capacity_bytes < 1:
            raise ValueError("capacity_bytes must be >= 1")
        self._capacity = capacity_bytes
        self._uidvalidity: int | None = None
        self._bodies: dict[int, bytes] = {}
        self._size = 0

    def __len__(self) -> int:
        return len(self._bodies)

    @property
    def size(self) -> int:
        """Bytes held."""
        return self._size

    def keep(self, uidvalidity: int | None, bodies: Mapping[int, bytes], *, after: int) -> None:
        """Hold these bodies (and those already held) for mails after UID ``after`` (the checkpoint), lowest UIDs
        first while they fit in the capacity; the rest is let go (downloaded again when needed)."""
        if uidvalidity is None:
            return
        if uidvalidity != self._uidvalidity:
            self._reset(uidvalidity)
        merged = {**self._bodies, **{uid: body for uid, body in bodies.items() if uid > after}}
        self._bodies, self._size = {}, 0
        for uid in sorted(u for u in merged if u > after):
            body = merged[uid]
            if self._size + len(body) > self._capacity:
                break  # keep a contiguous run from the lowest UID: a hole would be fetched anyway
            self._bodies[uid] = body
            self._size += len(body)

    def holds(self, uidvalidity: int | None, uid: int) -> bool:
        """Whether :meth:`take` would answer this UID's body."""
        return uidvalidity is not None and uidvalidity == self._uidvalidity and uid in self._bodies

    def take(self, uidvalidity: int | None, uids: Iterable[int]) -> dict[int, bytes]:
        """The held bodies of these UIDs, no longer held; none when the folder's UIDVALIDITY is not the one they
        were downloaded under (a UID of a recreated folder names another mail)."""
        if uidvalidity is None or uidvalidity != self._uidvalidity:
            self._reset(uidvalidity)
            return {}
        taken: dict[int, bytes] = {}
        for uid in uids:
            body = self._bodies.pop(uid, None)
            if body is not None:
                taken[uid] = body
                self._size -= len(body)
        return taken

    def drop_through(self, uid: int) -> None:
        """The checkpoint passed ``uid``: bodies of mails up to it are never asked for again."""
        for held in [u for u in self._bodies if u <= uid]:
            self._size -= len(self._bodies.pop(held))

    def _reset(self, uidvalidity: int | None) -> None:
        self._uidvalidity = uidvalidity
        self._bodies, self._size = {}, 0
