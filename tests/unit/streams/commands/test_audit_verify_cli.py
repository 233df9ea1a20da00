"""`rcaflow audit verify --file`: an intact export passes, any tampering fails naming tenant and seq."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

from click.testing import CliRunner

from executors.audit import AuditChain
from schemas.records import AuditKind, AuditRecord
from streams.commands.audit import audit
from tests.unit.streams.approval_helpers import NOW


def chain(tenant: str, n: int) -> list[AuditRecord]:
    c = AuditChain(tenant)
    return [c.append(kind=AuditKind.APPROVAL, actor=f"slack:U{i}", subject_id=f"act-{i}", action="approved",
                     detail={"channel": "slack"}, at=NOW + timedelta(seconds=i)) for i in range(1, n + 1)]


def write(path: Path, records: list[AuditRecord]) -> Path:
    path.write_text("".join(r.model_dump_json() + "\n" for r in records), encoding="utf-8")
    return path


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(audit, ["verify", *args])
    return result.exit_code, result.output


def interleaved() -> list[AuditRecord]:
    acme, other = chain("acme", 4), chain("other", 3)
    return [acme[0], other[0], acme[1], acme[2], other[1], acme[3], other[2]]


def test_an_intact_export_verifies(tmp_path: Path) -> None:
    code, out = run("--file", str(write(tmp_path / "audit.jsonl", interleaved())))
    assert code == 0, out
    assert "ok: 7 record(s) of 2 tenant(s) verified" in out
    assert "ok: tenant 'acme' seq 4 head " in out


def test_a_tampered_record_fails_naming_tenant_and_seq(tmp_path: Path) -> None:
    records = interleaved()
    records[3] = records[3].model_copy(update={"actor": "slack:MALLORY"})  # acme seq 3, hash left as it was
    code, out = run("--file", str(write(tmp_path / "audit.jsonl", records)))
    assert code == 1
    assert "tenant 'acme' seq 3: content does not match its hash (record altered)" in out
    assert "'other'" not in out.split("FAILED")[0]


def test_a_deleted_record_fails(tmp_path: Path) -> None:
    records = [r for r in interleaved() if not (r.tenant == "other" and r.seq == 2)]
    code, out = run("--file", str(write(tmp_path / "audit.jsonl", records)))
    assert code == 1 and "tenant 'other' seq 3: seq 2 missing" in out


def test_a_line_that_is_not_a_record_fails(tmp_path: Path) -> None:
    path = write(tmp_path / "audit.jsonl", chain("acme", 2))
    with path.open("a", encoding="utf-8") as f:
        f.write(json.dumps({"tenant": "acme", "seq": "three"}) + "\n")
    code, out = run("--file", str(path))
    assert code == 1 and "audit.jsonl:3: not an audit record" in out


def test_a_window_needs_the_flag(tmp_path: Path) -> None:
    path = write(tmp_path / "audit.jsonl", chain("acme", 5)[2:])
    assert run("--file", str(path))[0] == 1
    assert run("--file", str(path), "--window")[0] == 0


def test_without_file_or_broker_it_says_what_to_give() -> None:
    code, out = run()
    assert code == 2 and "--file" in out
