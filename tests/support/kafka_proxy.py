"""A TCP proxy in front of a real Kafka broker that can swallow the produce requests for one topic.

The broker advertises the proxy's port (:class:`ProxiedKafka`), so every client, after bootstrap,
talks to the broker through the proxy. :meth:`KafkaProxy.hold_produce` arms it: the first Produce
request (API key 0) naming the topic is neither forwarded nor answered, and neither is anything else that
client sends on that connection, as a broker that went silent for that client would behave. The client's
request then times out, it fails the batch, and reconnects; every other connection works.
:meth:`KafkaProxy.release` closes the held connections (what they held is dropped, never delivered late)
and lets produce requests for the topic through again. :meth:`KafkaProxy.hold_produce_from` does the same
to every connection of one client (by the ``client.id`` in the request header) that produces anything, for as
long as it is armed: a broker that works for everyone but one producer instance.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from streams.broker import DEFAULT_CACHE_ROOT
from streams.broker.base import free_loopback_port
from streams.broker.kafka_maven import KafkaMavenBroker
from streams.broker.select import decide

PRODUCE = 0


class KafkaProxy:
    """Forwards 127.0.0.1:``port`` to the broker's real listener, frame by frame (client to broker)."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = free_loopback_port()
        self._pattern: bytes | None = None
        self._client_id: bytes | None = None
        self._held: list[asyncio.StreamWriter] = []
        self.swallowed = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="kafka-proxy", daemon=True)
        self._server: asyncio.Server | None = None

    def start(self) -> None:
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._client, "127.0.0.1", self.port), self._loop).result(10)

    def stop(self) -> None:
        async def close() -> None:
            if self._server is not None:
                self._server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def hold_produce(self, topic: str) -> None:
        """The next connection that produces to ``topic`` goes silent (see the module docstring)."""
        self.swallowed.clear()
        self._pattern = topic.encode("utf-8")

    def hold_produce_from(self, client_id: str) -> None:
        """Every connection of the client ``client_id`` goes silent at its first Produce request, until
        :meth:`release`; its reconnections too."""
        self.swallowed.clear()
        self._client_id = client_id.encode("utf-8")

    def release(self) -> None:
        def run() -> None:
            self._pattern = None
            self._client_id = None
            for writer in self._held:
                writer.transport.abort()
            self._held.clear()

        self._loop.call_soon_threadsafe(run)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.close()
            return
        back = asyncio.ensure_future(self._pipe(up_reader, writer))
        try:
            while True:
                head = await reader.readexactly(4)
                frame = await reader.readexactly(struct.unpack(">i", head)[0])
                (api_key,) = struct.unpack(">h", frame[:2])
                if api_key == PRODUCE and self._holds(frame):
                    self._held.append(writer)
                    self.swallowed.set()
                    # Silent from here on: the client's request times out; nothing it sends is forwarded.
                    while await reader.read(65536):
                        pass
                    return
                up_writer.write(head + frame)
                await up_writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        finally:
            back.cancel()
            up_writer.close()
            writer.close()

    def _holds(self, frame: bytes) -> bool:
        """Whether this Produce request is one to swallow: it names the held topic, or comes from the held
        client (request header: api key, api version, correlation id, then client_id as int16 length + bytes)."""
        if self._pattern is not None and self._pattern in frame:
            return True
        if self._client_id is None or len(frame) < 10:
            return False
        (length,) = struct.unpack(">h", frame[8:10])
        return length >= 0 and frame[10:10 + length] == self._client_id

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()


class ProxiedKafka(KafkaMavenBroker):
    """Real Kafka listening on one port and advertising the proxy's, so clients come back through the proxy."""

    def __init__(self, data_dir: Path, proxy: KafkaProxy, **kwargs: Any) -> None:
        super().__init__(data_dir, port=proxy.upstream_port, **kwargs)
        self.proxy = proxy

    def _listener_props(self, port: int, controller_port: int) -> dict[str, str]:
        props = super()._listener_props(port, controller_port)
        props["advertised.listeners"] = f"PLAINTEXT://127.0.0.1:{self.proxy.port}"
        return props


@contextlib.contextmanager
def proxied_kafka(data_dir: Path, cache_root: Path = DEFAULT_CACHE_ROOT) -> Iterator[tuple[ProxiedKafka, KafkaProxy]]:
    """A started broker and its proxy; clients bootstrap from ``proxy.port``."""
    choice = decide("kafka", cache_root)
    if choice.kind != "kafka" or choice.java is None:
        raise RuntimeError(f"real Kafka is not available here: {choice.reason}")
    proxy = KafkaProxy(free_loopback_port())
    proxy.start()
    broker = ProxiedKafka(data_dir, proxy, cache_root=cache_root, java=choice.java, mvn=choice.mvn)
    try:
        broker.start()
        yield broker, proxy
    finally:
        broker.stop()
        proxy.stop()
