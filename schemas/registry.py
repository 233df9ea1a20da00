"""Loads the canonical .avsc files (current and history) and maps record classes to them.

The current schemas live in ``schemas/<full name>.avsc`` (e.g. ``rcaflow.AlertEvent.avsc``),
one per named type, and refer to each other by full name; fastavro's ``load_schema``
resolves those references from the same folder, so other teams can load the files with
plain fastavro too. ``schemas/history/<Name>.v<N>.avsc`` holds every earlier version of
a top-level schema, self-contained (named types expanded), so that data written with it
stays readable after the nested types change.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from fastavro.schema import (
    SchemaParseException,
    UnknownType,
    fingerprint,
    load_schema,
    parse_schema,
    to_parsing_canonical_form,
)

from schemas.errors import SchemaLoadError
from schemas.records import Record

logger = logging.getLogger(__name__)

SCHEMA_DIR = Path(__file__).resolve().parent
HISTORY_DIR = SCHEMA_DIR / "history"
NAMESPACE = "rcaflow"
CURRENT = "current"

_HISTORY_NAME = re.compile(r"^(?P<name>[A-Za-z_][A-Za-z0-9_]*)\.(?P<version>v[0-9]+)\.avsc$")


@dataclass(frozen=True, slots=True, eq=False)
class SchemaVersion:
    """One parsed Avro schema and its single-object fingerprint.

    ``parsed`` is fastavro's parsed form (ready for the fast readers and writers);
    ``fingerprint`` is the 8-byte CRC-64-AVRO of the Parsing Canonical Form, in
    the little-endian byte order the single-object encoding writes.
    """

    name: str
    version: str
    path: Path
    parsed: dict[str, Any]
    canonical: str
    fingerprint: bytes

    @property
    def fingerprint_hex(self) -> str:
        return self.fingerprint.hex()

    @property
    def is_current(self) -> bool:
        return self.version == CURRENT

    def to_json(self) -> str:
        """Self-contained Avro JSON (docs and defaults kept), e.g. for a schema registry."""
        return json.dumps(plain_schema(self.parsed), ensure_ascii=False, separators=(",", ":"))


def plain_schema(parsed: Any) -> Any:
    """fastavro's parsed schema minus its private ``__`` keys: valid Avro JSON again."""
    if isinstance(parsed, dict):
        return {k: plain_schema(v) for k, v in parsed.items() if not k.startswith("__")}
    if isinstance(parsed, list):
        return [plain_schema(v) for v in parsed]
    return parsed


def crc64_fingerprint(parsed: dict[str, Any]) -> tuple[str, bytes]:
    """Parsing Canonical Form and its CRC-64-AVRO fingerprint (little-endian bytes)."""
    canonical = to_parsing_canonical_form(parsed)
    # fastavro already returns the little-endian byte order Java and the spec's
    # single-object encoding use, as hex.
    return canonical, bytes.fromhex(fingerprint(canonical, "CRC-64-AVRO"))


def _version(name: str, version: str, path: Path, parsed: dict[str, Any]) -> SchemaVersion:
    canonical, fp = crc64_fingerprint(parsed)
    return SchemaVersion(name, version, path, parsed, canonical, fp)


class SchemaCatalog:
    """Every known schema, current and historical, by record name and by fingerprint.

    Loaded once and immutable afterwards, so it can be shared by every codec in a
    process without locking. When two versions share a fingerprint (a history
    file equal to the current schema) the current one wins, so decoders take the
    no-resolution fast path.
    """

    def __init__(self, schema_dir: Path = SCHEMA_DIR, history_dir: Path | None = HISTORY_DIR) -> None:
        self._current: dict[str, SchemaVersion] = {}
        self._history: dict[str, list[SchemaVersion]] = {}
        self._by_fp: dict[bytes, SchemaVersion] = {}
        for path in sorted(schema_dir.glob(f"{NAMESPACE}.*.avsc")):
            version = self._load_current(path)
            if version is not None:
                self._current[version.name] = version
        if not self._current:
            raise SchemaLoadError(f"no {NAMESPACE}.*.avsc schemas found in {schema_dir}")
        if history_dir is not None and history_dir.is_dir():
            for path in sorted(history_dir.glob("*.avsc")):
                old = self._load_history(path)
                self._history.setdefault(old.name, []).append(old)
        for versions in self._history.values():
            for old in versions:
                self._index(old)
        for version in self._current.values():
            self._index(version)  # last, so the current schema wins a shared fingerprint

    def _index(self, version: SchemaVersion) -> None:
        clash = self._by_fp.get(version.fingerprint)
        if clash is not None and clash.name != version.name:
            raise SchemaLoadError(
                f"{version.path} and {clash.path} have the same fingerprint {version.fingerprint_hex} "
                f"but different names ({version.name}, {clash.name})"
            )
        self._by_fp[version.fingerprint] = version

    @staticmethod
    def _load_current(path: Path) -> SchemaVersion | None:
        try:
            parsed = load_schema(str(path))
        except (OSError, ValueError, SchemaParseException, UnknownType) as exc:
            raise SchemaLoadError(f"cannot load {path}: {exc}") from exc
        if not isinstance(parsed, dict) or parsed.get("type") not in ("record", "enum"):
            raise SchemaLoadError(f"{path} does not hold a named record or enum")
        name = str(parsed["name"])
        if f"{name}.avsc" != path.name:
            raise SchemaLoadError(f"{path} defines {name}; the file must be named {name}.avsc")
        if parsed["type"] != "record":
            return None  # enums are only ever used inside records
        return _version(name, CURRENT, path, parsed)

    @staticmethod
    def _load_history(path: Path) -> SchemaVersion:
        match = _HISTORY_NAME.match(path.name)
        if match is None:
            raise SchemaLoadError(f"{path}: history files are named <Name>.v<N>.avsc")
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            parsed = parse_schema(raw, named_schemas={})
        except (OSError, ValueError, SchemaParseException, UnknownType) as exc:
            raise SchemaLoadError(f"cannot load {path} (history files must be self-contained): {exc}") from exc
        expected = f"{NAMESPACE}.{match['name']}"
        if not isinstance(parsed, dict) or parsed.get("name") != expected:
            raise SchemaLoadError(f"{path} must define the record {expected}")
        return _version(expected, match["version"], path, parsed)

    def current(self, record_type: type[Record]) -> SchemaVersion:
        """The schema a record class is written with today."""
        return self.current_named(record_type.avro_name)

    def current_named(self, name: str) -> SchemaVersion:
        try:
            return self._current[name]
        except KeyError:
            raise SchemaLoadError(f"no schema named {name!r} in the catalog") from None

    def history(self, record_type: type[Record]) -> tuple[SchemaVersion, ...]:
        """Earlier versions of a record's schema, oldest first."""
        versions = self._history.get(record_type.avro_name, [])
        return tuple(sorted(versions, key=lambda v: int(v.version[1:])))

    def by_fingerprint(self, fp: bytes) -> SchemaVersion | None:
        return self._by_fp.get(fp)

    def names(self) -> tuple[str, ...]:
        return tuple(sorted(self._current))

    def __iter__(self) -> Iterator[SchemaVersion]:
        """Every distinct known schema, current and historical."""
        return iter(list(self._by_fp.values()))


@cache
def default_catalog() -> SchemaCatalog:
    """The catalog of the packaged .avsc files, loaded once per process."""
    catalog = SchemaCatalog()
    logger.debug("loaded %d record schemas, %d fingerprints", len(catalog.names()), len(list(catalog)))
    return catalog


def schema_for(record_type: type[Record]) -> dict[str, Any]:
    """fastavro-parsed current schema of a record class."""
    return default_catalog().current(record_type).parsed


def freeze_current(record_type: type[Record], history_dir: Path = HISTORY_DIR) -> Path | None:
    """Copies a record's current schema into history as the next version; run it before changing the schema.

    The copy is self-contained (named types expanded) so later changes to nested
    types cannot alter it. Returns the new file, or None when history already
    holds this exact schema.
    """
    catalog = SchemaCatalog(history_dir=history_dir)
    current = catalog.current(record_type)
    versions = catalog.history(record_type)
    if any(v.fingerprint == current.fingerprint for v in versions):
        return None
    number = max((int(v.version[1:]) for v in versions), default=0) + 1
    path = history_dir / f"{record_type.avro_name.removeprefix(NAMESPACE + '.')}.v{number}.avsc"
    history_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(plain_schema(current.parsed), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    logger.info("froze %s as %s", current.name, path)
    return path
