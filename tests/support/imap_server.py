"""What the tests and benchmarks do with any private IMAP server (dovecot, Cyrus): log in, make folders, append."""

from __future__ import annotations

import socket

from imapclient import IMAPClient


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class MailboxOps:
    """Mixed into a launcher that has ``port``, ``user`` and ``password`` (plain IMAP on loopback)."""

    port: int
    user: str
    password: str

    def client(self) -> IMAPClient:
        c = IMAPClient("127.0.0.1", port=self.port, ssl=False, timeout=10)
        # APPEND with LITERAL+ is two small writes: without NODELAY, Nagle and a delayed ACK add ~40 ms each.
        c.socket().setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        c.login(self.user, self.password)
        return c

    def create_folder(self, folder: str) -> None:
        with self.client() as c:
            if not c.folder_exists(folder):
                c.create_folder(folder)

    def append(self, raw: bytes, folder: str = "INBOX") -> None:
        with self.client() as c:
            c.append(folder, raw)

    def append_many(self, raws: list[bytes], folder: str = "INBOX") -> None:
        with self.client() as c:
            for raw in raws:
                c.append(folder, raw)

    def uids(self, folder: str = "INBOX", criteria: str = "ALL") -> list[int]:
        with self.client() as c:
            c.select_folder(folder, readonly=True)
            return sorted(int(u) for u in c.search(criteria))
