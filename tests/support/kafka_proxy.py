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
:meth:`KafkaProxy.delay_produce_from` holds instead of swallowing: a connection of that client stops at its first
Produce request and forwards it, and whatever the client sent after it, only at :meth:`KafkaProxy.deliver_delayed`
(a broker that takes one producer's records late, so a test can time something else inside one publish).
:meth:`KafkaProxy.answer_offset_fetch_from` answers the next OffsetFetch requests of one client itself, with a
group error such as NOT_COORDINATOR, as a broker does while the group's coordinator moves (loading after a start,
at a rolling restart). :meth:`KafkaProxy.swallow_offset_commits_from` drops one client's OffsetCommit requests
and forwards the rest of its connection: a group coordinator that never answers a commit while fetches and
heartbeats work. :meth:`KafkaProxy.api_keys_from` tells which requests a client sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from streams.broker import DEFAULT_CACHE_ROOT
from streams.broker.base import free_loopback_port
from streams.broker.kafka_maven import KafkaMavenBroker
from streams.broker.select import decide

PRODUCE = 0
OFFSET_COMMIT = 8
OFFSET_FETCH = 9


class KafkaProxy:
    """Forwards 127.0.0.1:``port`` to the broker's real listener, frame by frame (client to broker)."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = free_loopback_port()
        self._pattern: bytes | None = None
        self._client_id: bytes | None = None
        self._held: list[asyncio.StreamWriter] = []
        self.swallowed = threading.Event()
        self._delayed_client_id: bytes | None = None
        #: Set when a Produce request of the delayed client is being held.
        self.delayed = threading.Event()
        self._deliver = asyncio.Event()
        self._offset_fetch_client_id: bytes | None = None
        self._offset_fetch_error = 0
        self._offset_fetch_left = 0
        #: How many OffsetFetch requests the proxy answered itself.
        self.offset_fetch_answered = 0
        self._commit_client_id: bytes | None = None
        self._commit_held: list[asyncio.StreamWriter] = []
        #: How many OffsetCommit requests the proxy dropped (set once one was).
        self.offset_commits_swallowed = 0
        self.commit_swallowed = threading.Event()
        self._api_keys: dict[bytes, set[int]] = {}
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

    def delay_produce_from(self, client_id: str) -> None:
        """Every connection of the client ``client_id`` stops at its first Produce request until
        :meth:`deliver_delayed`, which forwards what it held, in order (late, not lost)."""
        self.delayed.clear()

        def run() -> None:
            self._deliver.clear()
            self._delayed_client_id = client_id.encode("utf-8")

        asyncio.run_coroutine_threadsafe(_call(run), self._loop).result(10)

    def deliver_delayed(self) -> None:
        """Forwards the held Produce requests (and what followed them) and stops delaying."""

        def run() -> None:
            self._delayed_client_id = None
            self._deliver.set()

        self._loop.call_soon_threadsafe(run)

    def answer_offset_fetch_from(self, client_id: str, error_code: int, times: int) -> None:
        """The next ``times`` OffsetFetch requests (API key 9) of the client ``client_id`` get an answer from the
        proxy with ``error_code`` for the group (16: NOT_COORDINATOR) and never reach the broker."""

        def run() -> None:
            self._offset_fetch_client_id = client_id.encode("utf-8")
            self._offset_fetch_error = error_code
            self._offset_fetch_left = times

        asyncio.run_coroutine_threadsafe(_call(run), self._loop).result(10)

    def swallow_offset_commits_from(self, client_id: str | None) -> None:
        """The OffsetCommit requests (API key 8) of the client ``client_id`` are dropped, neither forwarded nor
        answered, until called with None; everything else on its connections goes on as before. None also closes
        the connections that lost a commit, so the client fails the unanswered request at once and reconnects."""

        def run() -> None:
            self._commit_client_id = client_id.encode("utf-8") if client_id is not None else None
            if client_id is None:
                for writer in self._commit_held:
                    writer.transport.abort()
                self._commit_held.clear()

        asyncio.run_coroutine_threadsafe(_call(run), self._loop).result(10)

    def api_keys_from(self, client_id: str) -> set[int]:
        """The API keys of every request the client ``client_id`` sent through the proxy so far."""
        return set(self._api_keys.get(client_id.encode("utf-8"), ()))

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
                self._api_keys.setdefault(_client_id(frame), set()).add(api_key)
                if api_key == OFFSET_FETCH and self._answers(frame):
                    self._offset_fetch_left -= 1
                    self.offset_fetch_answered += 1
                    writer.write(_offset_fetch_error(frame, self._offset_fetch_error))  # whole: see _pipe
                    await writer.drain()
                    continue
                if api_key == OFFSET_COMMIT and _sent_by(frame, self._commit_client_id):
                    self.offset_commits_swallowed += 1
                    self._commit_held.append(writer)
                    self.commit_swallowed.set()
                    continue
                if api_key == PRODUCE and self._holds(frame):
                    self._held.append(writer)
                    self.swallowed.set()
                    # Silent from here on: the client's request times out; nothing it sends is forwarded.
                    while await reader.read(65536):
                        pass
                    return
                if api_key == PRODUCE and self._delays(frame):
                    self.delayed.set()
                    # Nothing more is read from this client until then: what it sends next queues up behind.
                    await self._deliver.wait()
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
        client."""
        if self._pattern is not None and self._pattern in frame:
            return True
        return _sent_by(frame, self._client_id)

    def _answers(self, frame: bytes) -> bool:
        """Whether this OffsetFetch request is one the proxy answers itself."""
        return self._offset_fetch_left > 0 and _sent_by(frame, self._offset_fetch_client_id)

    def _delays(self, frame: bytes) -> bool:
        """Whether this Produce request is one to hold until :meth:`deliver_delayed`."""
        return _sent_by(frame, self._delayed_client_id)

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # Whole responses, one write each: an answer the proxy gives itself never lands inside one.
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError, OSError):
            while True:
                head = await reader.readexactly(4)
                writer.write(head + await reader.readexactly(struct.unpack(">i", head)[0]))
                await writer.drain()


def _sent_by(frame: bytes, client_id: bytes | None) -> bool:
    """Whether the request came from ``client_id`` (request header: api key, api version, correlation id, then
    client_id as int16 length + bytes)."""
    if client_id is None or len(frame) < 10:
        return False
    (length,) = struct.unpack(">h", frame[8:10])
    return length >= 0 and frame[10:10 + length] == client_id


def _client_id(frame: bytes) -> bytes:
    """The request's ``client_id`` (empty when there is none)."""
    if len(frame) < 10:
        return b""
    (length,) = struct.unpack(">h", frame[8:10])
    return frame[10:10 + length] if length > 0 else b""


def _varint(data: bytes, at: int) -> tuple[int, int]:
    """An unsigned varint of the flexible versions at ``at``: (value, where the next field starts)."""
    value = shift = 0
    while True:
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, at
        shift += 7


def _uvarint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _offset_fetch_error(frame: bytes, error_code: int) -> bytes:
    """The OffsetFetch response (v2 to v9) to the request ``frame``: no topics, ``error_code`` for the group."""
    version, correlation = struct.unpack(">hi", frame[2:8])
    if version < 2:
        raise ValueError(f"OffsetFetch v{version} has no group error")
    flexible = version >= 6
    body = struct.pack(">i", 0) if version >= 3 else b""  # throttle_time_ms
    if version >= 8:  # one group: its id (read from the request), no topics, the error
        at = 10 + max(0, struct.unpack(">h", frame[8:10])[0])
        tags, at = _varint(frame, at)  # request header tagged fields (librdkafka sends none)
        if tags:
            raise ValueError("OffsetFetch request header with tagged fields")
        _groups, at = _varint(frame, at)
        length, at = _varint(frame, at)
        group = frame[at:at + length - 1]
        body += _uvarint(2) + _uvarint(len(group) + 1) + group + _uvarint(1) + struct.pack(">h", error_code)
        body += b"\0\0"  # the group's tagged fields, the response's
    elif flexible:  # no topics, the error, no tagged fields
        body += bytes([1]) + struct.pack(">h", error_code) + b"\0"
    else:
        body += struct.pack(">ih", 0, error_code)
    header = struct.pack(">i", correlation) + (b"\0" if flexible else b"")
    return struct.pack(">i", len(header) + len(body)) + header + body


async def _call(function: Callable[[], None]) -> None:
    """Runs ``function`` on the proxy's loop (so the caller knows it took effect before going on)."""
    function()


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
