"""A TLS terminator in front of a plain IMAP port that ends its TLS records in the middle of lines.

TLS does not keep the sender's message boundaries (RFC 8446 §5.1): a proxy or load
balancer in front of the mail server re-encrypts whatever its TCP reads returned, so
a client may get ``* 5 EX`` in one record and ``ISTS\\r\\n`` in the next. dovecot's own
imaps listener writes whole lines, so tests that must see such records put this relay
between the client and dovecot's plain listener. Server bytes pass unchanged; only
where the records end differs. asyncio's TLS (memory BIOs) keeps both directions on
one thread, which a blocking ``ssl.SSLSocket`` shared by two threads would not.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import threading
from pathlib import Path

#: Pause between the two halves of a chunk, long enough for the client to read the first half alone.
_GAP_SECONDS = 0.005


class TlsSplitter:
    """Listens on a loopback port with ``cert``/``key``; relays each connection to ``upstream_port``."""

    def __init__(self, upstream_port: int, cert: Path, key: Path) -> None:
        self._upstream_port = upstream_port
        self._context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._context.load_cert_chain(str(cert), str(key))
        self.port = 0
        #: Records sent that ended inside a line (so a test can tell the relay did split).
        self.split_records = 0
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, name="tls-splitter", daemon=True)

    def __enter__(self) -> TlsSplitter:
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(self._start(), self._loop)
        future.result(10)
        return self

    def __exit__(self, *_exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self._context)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def _stop(self) -> None:
        if self._server is not None:
            self._server.close()
        current = asyncio.current_task()
        tasks = [t for t in asyncio.all_tasks() if t is not current]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            up_r, up_w = await asyncio.open_connection("127.0.0.1", self._upstream_port)
        except OSError:
            client_w.close()
            return
        try:
            await asyncio.gather(self._pipe(client_r, up_w), self._split_pipe(up_r, client_w))
        except (OSError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            for w in (client_w, up_w):
                with contextlib.suppress(OSError, RuntimeError):
                    w.close()

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        with contextlib.suppress(OSError, RuntimeError):
            writer.write_eof()

    async def _split_pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            cut = _cut(data)
            if cut:
                writer.write(data[:cut])  # one record ending inside a line
                await writer.drain()
                self.split_records += 1
                await asyncio.sleep(_GAP_SECONDS)
            writer.write(data[cut:])
            await writer.drain()
        writer.close()


def _cut(data: bytes) -> int:
    """Where to end the first record: inside the chunk's last line, or 0 for a tiny chunk."""
    end = len(data) - 2 if data.endswith(b"\r\n") else len(data)
    start = data.rfind(b"\n", 0, end) + 1
    return start + (end - start) // 2 if end - start >= 2 else 0
