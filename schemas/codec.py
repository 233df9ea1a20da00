"""Record <-> bytes for Kafka values: Avro single-object encoding, or Confluent's wire format.

Both codecs write with the current schema and read with the current schema as the
reader schema, so data written with any earlier version stays readable. Anything
that cannot be decoded raises :class:`CodecError` (not retriable) whose message is
meant for the dead-letter record.
"""

from __future__ import annotations

import importlib
import io
import logging
import struct
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any, Protocol, TypeVar
from urllib.parse import urlsplit, urlunsplit

from fastavro import schemaless_reader, schemaless_writer
from fastavro.read import SchemaResolutionError
from pydantic import ValidationError

from schemas.errors import CodecError, RegistryUnavailableError, SchemaLoadError
from schemas.records import Record
from schemas.registry import SchemaCatalog, SchemaVersion, default_catalog

if TYPE_CHECKING:
    from confluent_kafka.schema_registry import SchemaRegistryClient

logger = logging.getLogger(__name__)

R = TypeVar("R", bound=Record)

SINGLE_OBJECT_MARKER = b"\xc3\x01"
"""The Avro spec's two-byte marker that starts every single-object encoded message."""
_HEADER_LEN = len(SINGLE_OBJECT_MARKER) + 8

# What fastavro's readers raise on bytes that do not match the writer schema:
# short reads, bad varints, out-of-range union/enum indexes, invalid UTF-8,
# timestamps outside datetime's range, absurd lengths, and schema resolution failures.
_READ_ERRORS = (
    EOFError,
    ValueError,
    IndexError,
    KeyError,
    TypeError,
    OverflowError,
    MemoryError,
    struct.error,
    SchemaResolutionError,
)
_WRITE_ERRORS = (ValueError, TypeError, KeyError, AttributeError, OverflowError, struct.error)


class Codec(Protocol):
    """Turns records into Kafka message values and back; ``topic`` matters to registry-backed codecs."""

    def encode(self, record: Record, *, topic: str) -> bytes: ...

    def decode(self, data: bytes, record_type: type[R], *, topic: str) -> R: ...


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _validation_summary(exc: ValidationError) -> str:
    parts = [f"{'.'.join(str(p) for p in err['loc']) or '<record>'}: {err['msg']}" for err in exc.errors()[:5]]
    more = exc.error_count() - len(parts)
    return "; ".join(parts) + (f" (+{more} more)" if more > 0 else "")


def _current_schema(catalog: SchemaCatalog, record_type: type[Record]) -> SchemaVersion:
    try:
        return catalog.current(record_type)
    except SchemaLoadError as exc:
        raise CodecError(f"{record_type.__name__} has no Avro schema: {exc}") from exc


def _to_record(datum: Any, record_type: type[R], what: str) -> R:
    try:
        return record_type.from_avro(datum)
    except ValidationError as exc:
        raise CodecError(
            f"{what} decoded but is not a valid {record_type.__name__}: {_validation_summary(exc)}"
        ) from exc


@dataclass(frozen=True, slots=True)
class _ReadPlan:
    """How to read one (writer fingerprint, record type) pair; built once, then reused."""

    writer: SchemaVersion
    reader_schema: dict[str, Any] | None  # None: writer is current, no resolution needed


class AvroSingleObjectCodec:
    """Avro single-object encoding: ``C3 01``, 8-byte CRC-64-AVRO fingerprint (LE), body.

    Self-describing without a registry: the fingerprint names the writer schema
    among the packaged ones (current and ``schemas/history``). Writer headers and
    read plans are cached per record type and fingerprint, so the steady state is
    one fastavro call plus one pydantic validation per message. Safe to share
    between threads (the caches only ever gain equal entries).
    """

    def __init__(self, catalog: SchemaCatalog | None = None) -> None:
        self._catalog = catalog if catalog is not None else default_catalog()
        self._writers: dict[type[Record], tuple[bytes, dict[str, Any]]] = {}
        self._plans: dict[tuple[bytes, type[Record]], _ReadPlan] = {}

    def encode(self, record: Record, *, topic: str = "") -> bytes:
        writer = self._writers.get(type(record))
        if writer is None:
            writer = self._writer_for(type(record))
        header, schema = writer
        out = io.BytesIO()
        out.write(header)
        try:
            schemaless_writer(out, schema, record.to_avro())
        except _WRITE_ERRORS as exc:
            raise CodecError(
                f"cannot encode {type(record).__name__} as {record.avro_name} for topic {topic!r}: {_describe(exc)}"
            ) from exc
        return out.getvalue()

    def _writer_for(self, record_type: type[Record]) -> tuple[bytes, dict[str, Any]]:
        version = _current_schema(self._catalog, record_type)
        writer = (SINGLE_OBJECT_MARKER + version.fingerprint, version.parsed)
        self._writers[record_type] = writer
        return writer

    def decode(self, data: bytes, record_type: type[R], *, topic: str = "") -> R:
        if len(data) < _HEADER_LEN or data[:2] != SINGLE_OBJECT_MARKER:
            raise CodecError(
                f"not an Avro single-object message (expected marker c301 and 8 fingerprint bytes, got "
                f"{len(data)} bytes starting {bytes(data[:4]).hex() or '<empty>'}) on topic {topic!r}"
            )
        fp = bytes(data[2:_HEADER_LEN])
        plan = self._plans.get((fp, record_type))
        if plan is None:
            plan = self._plan(fp, record_type, topic)
        fo = io.BytesIO(data)
        fo.seek(_HEADER_LEN)
        try:
            datum = schemaless_reader(fo, plan.writer.parsed, plan.reader_schema)
        except SchemaResolutionError as exc:
            raise CodecError(
                f"{plan.writer.name} ({plan.writer.version}) data on topic {topic!r} cannot be read with the "
                f"current schema (an incompatible schema change): {_describe(exc)}"
            ) from exc
        except _READ_ERRORS as exc:
            raise CodecError(
                f"corrupt or truncated {plan.writer.name} ({plan.writer.version}) body of {len(data)} bytes "
                f"on topic {topic!r}: {_describe(exc)}"
            ) from exc
        if fo.tell() != len(data):
            raise CodecError(
                f"{len(data) - fo.tell()} unexpected trailing bytes after a {plan.writer.name} "
                f"({plan.writer.version}) body on topic {topic!r}"
            )
        return _to_record(datum, record_type, f"{plan.writer.name} ({plan.writer.version})")

    def _plan(self, fp: bytes, record_type: type[Record], topic: str) -> _ReadPlan:
        writer = self._catalog.by_fingerprint(fp)
        if writer is None:
            raise CodecError(
                f"unknown writer schema fingerprint {fp.hex()} (CRC-64-AVRO, little-endian) on topic "
                f"{topic!r}: not a current or historical rcaflow schema"
            )
        if writer.name != record_type.avro_name:
            raise CodecError(
                f"message on topic {topic!r} was written as {writer.name} ({writer.version}), "
                f"not as {record_type.avro_name}"
            )
        reader = self._writer_for(record_type)[1]
        plan = _ReadPlan(writer, None if writer.is_current else reader)
        self._plans[(fp, record_type)] = plan
        return plan


# --------------------------------------------------------------------------- Confluent wire format


_REGISTRY_HINT = 'the schema registry codec needs confluent-kafka\'s extra: pip install "rcaflow[schema-registry]"'


class ConfluentCodec:
    """Confluent wire format: magic byte 0, 4-byte big-endian schema id, Avro body.

    Uses confluent-kafka's own AvroSerializer/AvroDeserializer against a Schema
    Registry (subject ``<topic>-value``, auto-registered on first encode), so the
    bytes are what every Confluent-speaking consumer expects. Registry outages are
    raised as :class:`RegistryUnavailableError` (a retriable CodecError and a TransientError,
    so the worker waits instead of dead-lettering); undecodable data as non-retriable CodecError.
    """

    def __init__(
        self,
        client: SchemaRegistryClient,
        catalog: SchemaCatalog | None = None,
        *,
        auto_register: bool = True,
    ) -> None:
        try:
            from confluent_kafka.schema_registry import Schema
        except ImportError as exc:  # pragma: no cover - depends on the installed extras
            raise ImportError(_REGISTRY_HINT) from exc
        self._client = client
        self._catalog = catalog if catalog is not None else default_catalog()
        self._auto_register = auto_register
        self._schema_cls = Schema
        self._serializers: dict[type[Record], Callable[[Any, Any], bytes | None]] = {}
        self._deserializers: dict[type[Record], Callable[[bytes, Any], Any]] = {}

    @classmethod
    def from_url(cls, url: str, **sr_config: Any) -> ConfluentCodec:
        """Builds the registry client; ``sr_config`` takes the client's dotted keys (e.g. basic.auth.user.info)."""
        try:
            from confluent_kafka.schema_registry import SchemaRegistryClient
        except ImportError as exc:  # pragma: no cover - depends on the installed extras
            raise ImportError(_REGISTRY_HINT) from exc
        return cls(SchemaRegistryClient({**sr_config, "url": url}))

    def _schema(self, record_type: type[Record]) -> Any:
        return self._schema_cls(_current_schema(self._catalog, record_type).to_json(), "AVRO")

    def _serializer(self, record_type: type[Record]) -> Callable[[Any, Any], bytes | None]:
        ser = self._serializers.get(record_type)
        if ser is None:
            from confluent_kafka.schema_registry.avro import AvroSerializer

            ser = AvroSerializer(
                self._client,
                self._schema(record_type),
                to_dict=lambda record, _ctx: record.to_avro(),
                conf={"auto.register.schemas": self._auto_register},
            )
            self._serializers[record_type] = ser
        return ser

    def _deserializer(self, record_type: type[Record]) -> Callable[[bytes, Any], Any]:
        de = self._deserializers.get(record_type)
        if de is None:
            from confluent_kafka.schema_registry.avro import AvroDeserializer

            de = AvroDeserializer(self._client, self._schema(record_type))
            self._deserializers[record_type] = de
        return de

    def encode(self, record: Record, *, topic: str) -> bytes:
        from confluent_kafka.serialization import MessageField, SerializationContext

        ctx = SerializationContext(topic, MessageField.VALUE)
        with _registry_errors(f"cannot encode {type(record).__name__} for topic {topic!r}"):
            data = self._serializer(type(record))(record, ctx)
        if data is None:  # pragma: no cover - the serializer only returns None for None
            raise CodecError(f"serializer returned nothing for {type(record).__name__}")
        return data

    def decode(self, data: bytes, record_type: type[R], *, topic: str) -> R:
        from confluent_kafka.serialization import MessageField, SerializationContext

        if len(data) < 6 or data[0] != 0:
            raise CodecError(
                f"not a Confluent-framed Avro message (expected magic byte 00, a 4-byte schema id and a "
                f"body, got {len(data)} bytes starting {bytes(data[:5]).hex() or '<empty>'}) on topic {topic!r}"
            )
        schema_id = int.from_bytes(data[1:5], "big")
        ctx = SerializationContext(topic, MessageField.VALUE)
        with _registry_errors(f"cannot decode {record_type.__name__} (schema id {schema_id}) on topic {topic!r}"):
            datum = self._deserializer(record_type)(data, ctx)
        return _to_record(datum, record_type, f"schema id {schema_id}")


@contextmanager
def _registry_errors(what: str) -> Iterator[None]:
    """Maps confluent-kafka, fastavro and transport errors to CodecError in one place."""
    from confluent_kafka.schema_registry.error import SchemaRegistryError
    from confluent_kafka.serialization import SerializationError

    try:
        yield
    except CodecError:
        raise
    except SchemaRegistryError as exc:
        # 404/422: the id or subject does not exist or the schema is refused; 5xx/408/429: try later.
        status = exc.http_status_code
        if status >= 500 or status in (408, 429):
            raise RegistryUnavailableError(f"{what}: {_describe(exc)}") from exc
        raise CodecError(f"{what}: {_describe(exc)}") from exc
    except _transport_errors() as exc:
        raise RegistryUnavailableError(f"{what}: schema registry unreachable: {_describe(exc)}") from exc
    except (SerializationError, *_READ_ERRORS, *_WRITE_ERRORS) as exc:
        raise CodecError(f"{what}: {_describe(exc)}") from exc


@cache
def _transport_errors() -> tuple[type[BaseException], ...]:
    """Registry unreachable: the client speaks httpx2 (confluent-kafka >= 2.13) or httpx, or raw sockets."""
    errors: list[type[BaseException]] = [ConnectionError, TimeoutError]
    for module in ("httpx2", "httpx"):
        try:
            errors.append(importlib.import_module(module).TransportError)
        except ImportError:
            continue
    return tuple(errors)


def make_codec(schema_registry_url: str | None = None, **sr_config: Any) -> Codec:
    """The codec for a deployment: Confluent wire format with a registry, single-object without."""
    if schema_registry_url:
        logger.info("using the Confluent wire format with schema registry %s", _redacted(schema_registry_url))
        return ConfluentCodec.from_url(schema_registry_url, **sr_config)
    return AvroSingleObjectCodec()


def _redacted(url: str) -> str:
    """The URL without user:password, which some deployments put in it."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))
