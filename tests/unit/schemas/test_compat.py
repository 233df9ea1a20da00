"""Data written with every earlier schema version (schemas/history) is read by the current one."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from fastavro import schemaless_writer

from schemas.codec import AvroSingleObjectCodec
from schemas.errors import CodecError
from schemas.records import ALL_RECORDS, ActionEvent, AlertEvent, Checkpoint, Incident, Record, Risk
from schemas.registry import HISTORY_DIR, SCHEMA_DIR, SchemaCatalog, SchemaVersion, default_catalog, freeze_current

Sample = Callable[[type[Record]], Record]

BY_NAME = {r.avro_name: r for r in ALL_RECORDS}
HISTORY_FILES = sorted(HISTORY_DIR.glob("*.avsc"))


def _old_version(path: Path) -> SchemaVersion:
    catalog = default_catalog()
    return next(v for r in ALL_RECORDS for v in catalog.history(r) if v.path == path)


def _write(version: SchemaVersion, datum: dict[str, object]) -> bytes:
    body = io.BytesIO()
    schemaless_writer(body, version.parsed, datum)
    return b"\xc3\x01" + version.fingerprint + body.getvalue()


def test_history_folder_is_not_empty() -> None:
    assert HISTORY_FILES
    assert {BY_NAME[_old_version(p).name] for p in HISTORY_FILES} == set(ALL_RECORDS), (
        "every top-level record keeps its earlier versions"
    )


def test_at_least_one_history_version_differs_from_the_current_schema() -> None:
    catalog = default_catalog()
    assert any(not old.is_current and old.fingerprint != catalog.current_named(old.name).fingerprint for old in catalog)


@pytest.mark.parametrize("path", HISTORY_FILES, ids=lambda p: p.name)
def test_old_data_is_read_by_the_current_schema(sample: Sample, path: Path) -> None:
    old = _old_version(path)
    record_type = BY_NAME[old.name]
    data = _write(old, sample(record_type).to_avro())

    decoded = AvroSingleObjectCodec().decode(data, record_type, topic="replay")

    assert type(decoded) is record_type
    # Nothing the old writer wrote is lost: writing the decoded record with the old schema gives the same bytes.
    assert _write(old, decoded.to_avro()) == data


def test_alert_event_v1_reads_with_empty_annotations(sample: Sample) -> None:
    old = _old_version(HISTORY_DIR / "AlertEvent.v1.avsc")
    assert "annotations" not in [f["name"] for f in old.parsed["fields"]]
    event = sample(AlertEvent)
    decoded = AvroSingleObjectCodec().decode(_write(old, event.to_avro()), AlertEvent, topic="normalized")
    assert decoded.annotations == {}
    assert decoded == event.model_copy(update={"annotations": {}})


def test_incident_v1_counters_written_as_int_read_as_long(sample: Sample) -> None:
    old = _old_version(HISTORY_DIR / "Incident.v1.avsc")
    incident = sample(Incident)
    decoded = AvroSingleObjectCodec().decode(_write(old, incident.to_avro()), Incident, topic="incidents")
    assert decoded.count == incident.count
    assert decoded.event.metrics.times == incident.event.metrics.times
    assert decoded.event.annotations == {}


def test_checkpoint_v1_reads_without_delta_link(sample: Sample) -> None:
    old = _old_version(HISTORY_DIR / "Checkpoint.v1.avsc")
    checkpoint = sample(Checkpoint).model_copy(update={"delta_link": "https://graph.microsoft.com/v1.0/delta?x=1"})
    decoded = AvroSingleObjectCodec().decode(_write(old, checkpoint.to_avro()), Checkpoint, topic="ckpt")
    assert decoded.delta_link is None
    assert decoded.last_uid == checkpoint.last_uid


def test_unknown_future_risk_symbol_reads_as_high(sample: Sample, tmp_path: Path) -> None:
    """A newer writer may add a risk level; this reader must treat it as high risk, never as read-only."""
    future = json.loads(default_catalog().current(ActionEvent).to_json())
    for field in future["fields"]:
        if field["name"] == "risk":
            field["type"]["symbols"] = [*field["type"]["symbols"], "critical"]
    (tmp_path / "ActionEvent.v99.avsc").write_text(json.dumps(future), encoding="utf-8")
    catalog = SchemaCatalog(history_dir=tmp_path)
    writer = catalog.history(ActionEvent)[-1]
    data = _write(writer, sample(ActionEvent).to_avro() | {"risk": "critical"})

    decoded = AvroSingleObjectCodec(catalog).decode(data, ActionEvent, topic="actions")

    assert decoded.risk is Risk.HIGH


def test_an_incompatible_change_is_caught(sample: Sample, tmp_path: Path) -> None:
    """A new field without a default cannot be filled in for old data: the decoder says so."""
    schema_dir = tmp_path / "schemas"
    schema_dir.mkdir()
    for path in SCHEMA_DIR.glob("*.avsc"):
        text = path.read_text(encoding="utf-8")
        if path.name == "rcaflow.AlertEvent.avsc":
            schema = json.loads(text)
            schema["fields"].append({"name": "team", "type": "string"})
            text = json.dumps(schema)
        (schema_dir / path.name).write_text(text, encoding="utf-8")
    catalog = SchemaCatalog(schema_dir, history_dir=HISTORY_DIR)
    old = next(v for v in catalog.history(AlertEvent) if v.version == "v1")

    with pytest.raises(CodecError, match=r"rcaflow\.AlertEvent \(v1\) data .* cannot be read with the current schema"):
        AvroSingleObjectCodec(catalog).decode(_write(old, sample(AlertEvent).to_avro()), AlertEvent, topic="t")


def test_freeze_current_adds_the_next_version_once(tmp_path: Path) -> None:
    history = tmp_path / "history"
    for path in HISTORY_DIR.glob("AlertEvent.*.avsc"):
        history.mkdir(exist_ok=True)
        (history / path.name).write_text(path.read_text(encoding="utf-8"), encoding="utf-8")

    frozen = freeze_current(AlertEvent, history)

    assert frozen is not None and frozen.name == "AlertEvent.v2.avsc"
    catalog = SchemaCatalog(history_dir=history)
    assert catalog.history(AlertEvent)[-1].fingerprint == catalog.current(AlertEvent).fingerprint
    assert freeze_current(AlertEvent, history) is None
