"""One blocking IMAP connection (imapclient); the async producer drives it from a worker thread.

Every imapclient/socket failure leaves this module as one of our typed errors,
mapped in one place (:func:`_mapped`), so the run loop decides retry or stop by
``retriable`` alone.
"""

from __future__ import annotations

import contextlib
import imaplib
import logging
import re
import select
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import BinaryIO

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientAbortError, IMAPClientError, LoginError

from producers.imap.config import ImapConfig, TlsMode
from producers.imap.errors import ImapAuthError, ImapConnectionError, ImapMailboxError

logger = logging.getLogger(__name__)

#: Header fields fetched before the body, enough to filter, dedup and dead-letter without the body.
HEADER_FIELDS = b"BODY.PEEK[HEADER.FIELDS (MESSAGE-ID FROM SUBJECT DATE)]"
_HEADER_KEY = b"BODY[HEADER.FIELDS (MESSAGE-ID FROM SUBJECT DATE)]"
#: Longest blocking slice inside IDLE, so a stop request is honoured promptly.
_IDLE_SLICE_SECONDS = 1.0
_MAX_LINE = 1_000_000
_NEW_MAIL = re.compile(rb"^\* \d+ (EXISTS|RECENT)\r?\n?$", re.IGNORECASE)
_BYE = re.compile(rb"^\* BYE\b", re.IGNORECASE)
#: Servers answer NO [UNAVAILABLE] when their auth backend is down: that is worth retrying.
_TRANSIENT_AUTH_CODES = ("[UNAVAILABLE]", "[INUSE]", "[LIMIT]")


@dataclass(frozen=True, slots=True)
class FolderState:
    uidvalidity: int
    exists: int
    idle_supported: bool


@dataclass(frozen=True, slots=True)
class Envelope:
    """What the server says about one message before its body is fetched."""

    uid: int
    size: int
    headers: bytes
    internaldate: datetime


@contextmanager
def _mapped(what: str) -> Iterator[None]:
    try:
        yield
    except LoginError as exc:
        text = str(exc)
        if any(code in text for code in _TRANSIENT_AUTH_CODES):
            raise ImapConnectionError(f"{what}: server cannot authenticate right now: {text}") from exc
        raise ImapAuthError(f"{what}: the IMAP server refused the credentials: {text}") from exc
    except (IMAPClientAbortError, imaplib.IMAP4.abort) as exc:
        raise ImapConnectionError(f"{what}: connection aborted: {exc}") from exc
    except (OSError, EOFError) as exc:  # socket.error, ssl.SSLError, timeouts are all OSError
        raise ImapConnectionError(f"{what}: {type(exc).__name__}: {exc}") from exc
    except (IMAPClientError, imaplib.IMAP4.error) as exc:
        raise ImapConnectionError(f"{what}: server answered out of protocol: {exc}") from exc


class ImapSession:
    """A logged-in connection with one folder selected. Not thread-safe: one caller at a time."""

    def __init__(self, config: ImapConfig, stop: threading.Event, heartbeat: Callable[[], None] | None = None) -> None:
        self._config = config
        self._stop = stop
        #: Called whenever the server answered (login, IDLE accepted, a line during IDLE such as the
        #: server's keepalive, IDLE done, NOOP, SEARCH): a silent connection stops calling it.
        self._heartbeat = heartbeat or (lambda: None)
        self._client: IMAPClient | None = None
        self._idle_supported = False

    # ------------------------------------------------------------------ connection

    def open(self) -> FolderState:
        """Connect, authenticate and select the folder."""
        cfg = self._config
        context = self._ssl_context() if cfg.tls is not TlsMode.PLAIN else None
        with _mapped(f"connect to {cfg.host}:{cfg.effective_port}"):
            client = IMAPClient(
                cfg.host,
                port=cfg.effective_port,
                ssl=cfg.tls is TlsMode.TLS,
                ssl_context=context,
                timeout=cfg.socket_timeout_seconds,
            )
        self._client = client
        client.normalise_times = False
        # imapclient writes a command and its CRLF separately; with Nagle on, a server that delays its ACK
        # (measured: Cyrus) holds every command ~40 ms. Commands are tiny, so send them at once.
        with contextlib.suppress(OSError):
            client.socket().setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with _mapped("STARTTLS"):
            if cfg.tls is TlsMode.STARTTLS:
                client.starttls(context)
        with _mapped(f"login as {cfg.username}"):
            if cfg.xoauth2_token_file is not None:
                token = self._read_token()
                client.oauth2_login(cfg.username, token)
            else:
                assert cfg.password is not None  # guaranteed by ImapConfig
                client.login(cfg.username, cfg.password.get_secret_value())
        try:
            with _mapped(f"select {cfg.folder!r}"):
                selected = client.select_folder(cfg.folder)
                self._idle_supported = client.has_capability("IDLE")
        except ImapConnectionError as exc:
            if isinstance(exc.__cause__, IMAPClientAbortError | OSError):
                raise
            raise ImapMailboxError(f"cannot select folder {cfg.folder!r}: {exc.__cause__}") from exc
        self._heartbeat()
        return FolderState(
            uidvalidity=int(selected[b"UIDVALIDITY"]),
            exists=int(selected.get(b"EXISTS", 0)),
            idle_supported=self._idle_supported,
        )

    def _ssl_context(self) -> ssl.SSLContext:
        ca = self._config.ca_file
        return ssl.create_default_context(cafile=str(ca) if ca is not None else None)

    def _read_token(self) -> str:
        path = self._config.xoauth2_token_file
        assert path is not None
        try:
            token = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ImapConnectionError(f"cannot read the XOAUTH2 token file {path}: {exc}") from exc
        if not token:
            raise ImapConnectionError(f"the XOAUTH2 token file {path} is empty")
        return token

    def close(self) -> None:
        """Log out politely; a dead connection is simply dropped."""
        client, self._client = self._client, None
        if client is None:
            return
        try:
            client.logout()
        except (IMAPClientError, imaplib.IMAP4.error, OSError, EOFError) as exc:
            logger.debug("logout failed (%s); dropping the connection", exc)
            try:
                client.shutdown()
            except (IMAPClientError, imaplib.IMAP4.error, OSError) as exc2:
                logger.debug("shutdown after failed logout also failed: %s", exc2)

    @property
    def _c(self) -> IMAPClient:
        if self._client is None:
            raise ImapConnectionError("IMAP session is not open")
        return self._client

    # ------------------------------------------------------------------ reading

    def uids_after(self, last_uid: int) -> list[int]:
        """UIDs strictly greater than ``last_uid``, ascending."""
        # From here on, an EXISTS the server slips into any reply means mail we may not have seen.
        self._pending_new_mail()
        with _mapped("UID SEARCH"):
            # "N:*" always matches the highest UID even when it is below N (RFC 3501 §6.4.8),
            # so filter again.
            found = self._c.search([b"UID", f"{last_uid + 1}:*".encode()])
        self._heartbeat()  # also the heartbeat of a polling (no IDLE) mailbox: one SEARCH per poll
        return sorted(uid for uid in (int(u) for u in found) if uid > last_uid)

    def highest_uid(self) -> int:
        with _mapped("UID SEARCH ALL"):
            found = self._c.search([b"ALL"])
        return max((int(u) for u in found), default=0)

    def envelopes(self, uids: list[int]) -> dict[int, Envelope]:
        """Size, selected headers and INTERNALDATE; a UID expunged meanwhile is simply absent."""
        if not uids:
            return {}
        with _mapped("FETCH headers"):
            data = self._c.fetch(uids, [b"RFC822.SIZE", b"INTERNALDATE", HEADER_FIELDS])
        out: dict[int, Envelope] = {}
        for uid, item in data.items():
            if b"RFC822.SIZE" not in item:
                continue
            internal = item.get(b"INTERNALDATE")
            if isinstance(internal, datetime):
                internal = internal.astimezone(UTC) if internal.tzinfo else internal.replace(tzinfo=UTC)
            else:
                internal = datetime.now(UTC)
            out[int(uid)] = Envelope(
                uid=int(uid),
                size=int(item[b"RFC822.SIZE"]),
                headers=bytes(item.get(_HEADER_KEY) or b""),
                internaldate=internal,
            )
        return out

    def bodies(self, uids: list[int]) -> dict[int, bytes]:
        """Exact RFC 822 bytes, without setting \\Seen (BODY.PEEK)."""
        if not uids:
            return {}
        with _mapped("FETCH bodies"):
            data = self._c.fetch(uids, [b"BODY.PEEK[]"])
        return {int(uid): bytes(item[b"BODY[]"]) for uid, item in data.items() if b"BODY[]" in item}

    # ------------------------------------------------------------------ after ingest

    def mark_seen(self, uids: list[int]) -> None:
        if uids:
            with _mapped("STORE \\Seen"):
                self._c.add_flags(uids, [b"\\Seen"], silent=True)

    def move(self, uids: list[int], folder: str) -> None:
        if not uids:
            return
        with _mapped(f"MOVE to {folder!r}"):
            if self._c.has_capability("MOVE"):
                self._c.move(uids, folder)
            else:
                self._c.copy(uids, folder)
                self._c.delete_messages(uids)
                if self._c.has_capability("UIDPLUS"):
                    self._c.uid_expunge(uids)
                else:
                    self._c.expunge()

    # ------------------------------------------------------------------ waiting

    def wait_for_mail(self, timeout: float, on_idle: Callable[[], None] | None = None) -> bool:
        """Block until the server reports a change, ``timeout`` passes or stop is requested.

        Returns True when new mail may be there. With IDLE the server pushes EXISTS;
        without it we sleep ``timeout`` (the poll interval) and say "maybe".
        ``on_idle`` is called once the server has accepted IDLE.
        """
        if not self._idle_supported:
            self._stop.wait(timeout)
            return not self._stop.is_set()
        client = self._c
        if self._pending_new_mail():
            return True  # announced during our last commands: IDLE would not announce it again
        with _mapped("IDLE"):
            client.idle()
        self._heartbeat()
        if on_idle is not None:
            on_idle()
        changed = self._pending_new_mail()  # sent just before the "+ idling" continuation
        deadline = time.monotonic() + timeout
        try:
            while not changed and not self._stop.is_set():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                with _mapped("IDLE"):
                    lines = self._idle_lines(min(_IDLE_SLICE_SECONDS, remaining))
                if any(_BYE.match(line) for line in lines):
                    raise ImapConnectionError("server said BYE during IDLE")
                if lines:
                    self._heartbeat()
                changed = any(_NEW_MAIL.match(line) for line in lines)
        finally:
            with _mapped("IDLE done"):
                _text, late = client.idle_done()
        if _says_bye(late):
            raise ImapConnectionError("server said BYE while leaving IDLE")
        self._heartbeat()
        return changed or _has_new_mail(late)

    def _idle_lines(self, timeout: float) -> list[bytes]:
        """Untagged lines the server sent during IDLE, waiting at most ``timeout`` for the first byte.

        Lines are read whole, in blocking mode: only the *wait* is non-blocking. A
        non-blocking ``readline`` loses bytes over TLS: when a TLS record ends inside a
        line, the next raw read raises ``SSLWantReadError`` and the buffered reader
        drops the part of the line it had already taken (``unexpected response:
        b'RECENT'``, then a reconnect; issue 19). imapclient's ``idle_check`` makes the
        same non-blocking ``readline`` (mjs/imapclient#519, open), so it is not used.
        Bytes already decrypted or buffered count as "something came", since a select
        on the socket cannot see them.
        """
        client = self._c
        sock = client.socket()
        reader = client._imap.file  # imaplib's buffered reader of the socket
        lines: list[bytes] = []
        if not self._readable(sock, reader, timeout):
            return lines
        while True:
            # The server has started a response: the rest of the line follows at once, so wait for it
            # (up to the socket timeout) rather than handing imaplib half a line later.
            line = reader.readline(_MAX_LINE)
            if not line:
                raise ImapConnectionError("server closed the connection during IDLE")
            if not line.endswith(b"\n"):
                raise ImapConnectionError(f"IDLE response line longer than {_MAX_LINE} bytes")
            lines.append(line)
            if not self._readable(sock, reader, 0):
                return lines

    def _readable(self, sock: socket.socket, reader: BinaryIO, timeout: float) -> bool:
        """True when a read would not block: bytes in imaplib's buffer, in the TLS layer or on the socket."""
        if isinstance(sock, ssl.SSLSocket) and sock.pending():
            return True
        # peek() answers from the buffer; only an empty buffer costs one non-blocking read, which
        # either fills it or raises/returns nothing with no byte taken (the buffer was empty).
        sock.setblocking(False)
        try:
            if reader.peek(1):  # type: ignore[attr-defined]  # a BufferedReader
                return True
        except (BlockingIOError, ssl.SSLWantReadError):
            pass
        finally:
            sock.settimeout(self._config.socket_timeout_seconds)
        return bool(select.select([sock], [], [], timeout)[0])

    def _pending_new_mail(self) -> bool:
        """Take EXISTS/RECENT that imaplib filed away while answering other commands.

        imapclient returns only the responses a command asked for; an unsolicited
        EXISTS (RFC 3501 §7.3.1) stays in imaplib's ``untagged_responses``. Without
        this check, mail arriving between our SEARCH and IDLE would wait for the
        next IDLE renewal.
        """
        client = self._client
        if client is None:
            return False
        pending = client._imap.untagged_responses  # imaplib's documented-by-use store
        found = bool(pending.pop("EXISTS", None)) | bool(pending.pop("RECENT", None))
        pending.pop("EXPUNGE", None)  # after MOVE these pile up for the life of the connection
        return found

    def noop(self) -> None:
        with _mapped("NOOP"):
            self._c.noop()
        self._heartbeat()


def _has_new_mail(responses: list[tuple[object, ...]]) -> bool:
    return any(len(r) >= 2 and r[1] in (b"EXISTS", b"RECENT") for r in responses)


def _says_bye(responses: list[tuple[object, ...]]) -> bool:
    return any(len(r) >= 1 and r[0] == b"BYE" for r in responses)
