"""The Confluent wire format, against a local stand-in of the Schema Registry REST API."""

from __future__ import annotations

import io
import json
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient
from fastavro import schemaless_writer

from schemas.codec import ConfluentCodec, make_codec
from schemas.errors import CodecError
from schemas.records import ALL_RECORDS, AlertEvent, Record
from schemas.registry import HISTORY_DIR, default_catalog

Sample = Callable[[type[Record]], Record]


class StandInRegistry:
    """The Schema Registry endpoints confluent-kafka's client calls, kept in memory.

    POST /subjects/{s}/versions registers (same schema, same id), POST /subjects/{s}
    looks up, GET /schemas/ids/{id} fetches, GET /subjects/{s}/versions/latest; errors
    use the registry's JSON error body ({"error_code", "message"}).
    """

    def __init__(self) -> None:
        self.schemas: dict[int, str] = {}
        self.subjects: dict[str, list[int]] = {}
        self.requests: list[tuple[str, str]] = []
        self.fail_with: int | None = None
        self._lock = threading.Lock()

    def register(self, subject: str, schema: str) -> int:
        with self._lock:
            canonical = json.dumps(json.loads(schema), sort_keys=True)
            same = [
                i for i, known in self.schemas.items() if json.dumps(json.loads(known), sort_keys=True) == canonical
            ]
            schema_id = same[0] if same else len(self.schemas) + 1
            self.schemas[schema_id] = self.schemas.get(schema_id, schema)
            versions = self.subjects.setdefault(subject, [])
            if schema_id not in versions:
                versions.append(schema_id)
            return schema_id

    def handle(self, method: str, path: str, body: dict[str, Any] | None) -> tuple[int, dict[str, Any]]:
        self.requests.append((method, path.split("?", maxsplit=1)[0]))
        if self.fail_with is not None:
            return self.fail_with, {"error_code": self.fail_with * 100 + 1, "message": "stand-in says no"}
        route = path.split("?", maxsplit=1)[0]
        if method == "POST" and (m := re.fullmatch(r"/subjects/([^/]+)/versions", route)):
            assert body is not None
            return 200, {"id": self.register(m[1], body["schema"])}
        if method == "POST" and (m := re.fullmatch(r"/subjects/([^/]+)", route)):
            assert body is not None
            for version, schema_id in enumerate(self.subjects.get(m[1], []), start=1):
                if json.loads(self.schemas[schema_id]) == json.loads(body["schema"]):
                    return 200, {"subject": m[1], "id": schema_id, "version": version, "schema": body["schema"]}
            return 404, {"error_code": 40403, "message": "Schema not found"}
        if method == "GET" and (m := re.fullmatch(r"/schemas/ids/(\d+)", route)):
            schema = self.schemas.get(int(m[1]))
            if schema is None:
                return 404, {"error_code": 40403, "message": f"Schema {m[1]} not found"}
            return 200, {"schema": schema}
        if method == "GET" and (m := re.fullmatch(r"/subjects/([^/]+)/versions/latest", route)):
            ids = self.subjects.get(m[1])
            if not ids:
                return 404, {"error_code": 40401, "message": f"Subject '{m[1]}' not found."}
            return 200, {"subject": m[1], "id": ids[-1], "version": len(ids), "schema": self.schemas[ids[-1]]}
        return 404, {"error_code": 404, "message": f"stand-in has no {method} {route}"}


@contextmanager
def serve_registry(state: StandInRegistry) -> Iterator[str]:
    """The stand-in behind a real HTTP server on a loopback port; yields its base URL."""


    class Handler(BaseHTTPRequestHandler):
        def _reply(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length)) if length else None
            status, payload = state.handle(method, self.path, body)
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            self._reply("GET")

        def do_POST(self) -> None:
            self._reply("POST")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def registry() -> Iterator[tuple[StandInRegistry, str]]:
    state = StandInRegistry()
    with serve_registry(state) as url:
        yield state, url


def _codec(url: str) -> ConfluentCodec:
    return ConfluentCodec(SchemaRegistryClient({"url": url, "max.retries": 0}))


def _body(record: Record) -> bytes:
    out = io.BytesIO()
    schemaless_writer(out, default_catalog().current(type(record)).parsed, record.to_avro())
    return out.getvalue()


@pytest.mark.parametrize("record_type", ALL_RECORDS, ids=lambda r: r.__name__)
def test_wire_format_is_magic_id_body(
    registry: tuple[StandInRegistry, str], sample: Sample, record_type: type[Record]
) -> None:
    state, url = registry
    record = sample(record_type)

    data = _codec(url).encode(record, topic="normalized")

    assert data[0] == 0
    schema_id = int.from_bytes(data[1:5], "big")
    assert state.subjects["normalized-value"] == [schema_id]
    assert json.loads(state.schemas[schema_id])["name"] == record_type.avro_name
    assert data[5:] == _body(record)
    assert ("POST", "/subjects/normalized-value/versions") in state.requests


@pytest.mark.parametrize("record_type", ALL_RECORDS, ids=lambda r: r.__name__)
def test_another_process_decodes_by_fetching_the_schema_by_id(
    registry: tuple[StandInRegistry, str], sample: Sample, record_type: type[Record]
) -> None:
    state, url = registry
    record = sample(record_type)
    data = _codec(url).encode(record, topic="incidents")
    schema_id = int.from_bytes(data[1:5], "big")

    decoded = _codec(url).decode(data, record_type, topic="incidents")  # fresh client: empty cache

    assert decoded == record
    assert ("GET", f"/schemas/ids/{schema_id}") in state.requests


def test_the_schema_is_registered_once_per_subject(registry: tuple[StandInRegistry, str], sample: Sample) -> None:
    state, url = registry
    codec = _codec(url)
    for _ in range(5):
        codec.encode(sample(AlertEvent), topic="normalized")
    assert state.requests.count(("POST", "/subjects/normalized-value/versions")) == 1


def test_data_written_with_an_older_registered_schema_is_read(
    registry: tuple[StandInRegistry, str], sample: Sample
) -> None:
    state, url = registry
    old_json = (HISTORY_DIR / "AlertEvent.v1.avsc").read_text(encoding="utf-8")
    old_id = state.register("normalized-value", old_json)
    old_schema = next(v for v in default_catalog().history(AlertEvent) if v.version == "v1")
    body = io.BytesIO()
    event = sample(AlertEvent)
    schemaless_writer(body, old_schema.parsed, event.to_avro())

    decoded = _codec(url).decode(b"\x00" + old_id.to_bytes(4, "big") + body.getvalue(), AlertEvent, topic="normalized")

    assert decoded == event.model_copy(update={"annotations": {}})


def test_unknown_schema_id_is_not_retriable(registry: tuple[StandInRegistry, str], sample: Sample) -> None:
    _, url = registry
    data = b"\x00" + (999).to_bytes(4, "big") + _body(sample(AlertEvent))
    with pytest.raises(CodecError, match=r"schema id 999.*not found") as info:
        _codec(url).decode(data, AlertEvent, topic="normalized")
    assert info.value.retriable is False


@pytest.mark.parametrize("data", [b"", b"\x00\x00\x00\x00\x01", b"\xc3\x01abcdefgh", b'{"alert":"x"}'])
def test_unframed_data_is_rejected_before_any_request(registry: tuple[StandInRegistry, str], data: bytes) -> None:
    state, url = registry
    with pytest.raises(CodecError, match="not a Confluent-framed Avro message") as info:
        _codec(url).decode(data, AlertEvent, topic="normalized")
    assert info.value.retriable is False
    assert state.requests == []


def test_truncated_body_is_not_retriable(registry: tuple[StandInRegistry, str], sample: Sample) -> None:
    _, url = registry
    codec = _codec(url)
    data = codec.encode(sample(AlertEvent), topic="normalized")
    with pytest.raises(CodecError, match="cannot decode AlertEvent") as info:
        codec.decode(data[: len(data) // 2], AlertEvent, topic="normalized")
    assert info.value.retriable is False


def test_registry_outage_is_retriable(registry: tuple[StandInRegistry, str], sample: Sample) -> None:
    state, url = registry
    state.fail_with = 503
    with pytest.raises(CodecError, match="stand-in says no") as info:
        _codec(url).encode(sample(AlertEvent), topic="normalized")
    assert info.value.retriable is True


def test_unreachable_registry_is_retriable(sample: Sample) -> None:
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(CodecError, match="unreachable") as info:
        _codec(f"http://127.0.0.1:{port}").encode(sample(AlertEvent), topic="normalized")
    assert info.value.retriable is True


def test_make_codec_with_a_url_speaks_the_wire_format(registry: tuple[StandInRegistry, str], sample: Sample) -> None:
    state, url = registry
    codec = make_codec(url, **{"max.retries": 0})
    event = sample(AlertEvent)
    data = codec.encode(event, topic="normalized")
    assert data[0] == 0 and state.subjects["normalized-value"]
    assert codec.decode(data, AlertEvent, topic="normalized") == event
