"""An older rcaflow's broker data dir is never passed over in silence, and a dead record is not a broker."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from streams.broker.state import BrokerState, has_broker_data, legacy_notice, running_broker


def _kafka_data(data_dir: Path) -> Path:
    """What a real Kafka broker leaves: a formatted log dir with a partition in it."""
    partition = data_dir / "kafka-logs" / "rcaflow.incidents-0"
    partition.mkdir(parents=True)
    (data_dir / "kafka-logs" / "meta.properties").write_text("cluster.id=abc\nnode.id=1\n")
    (partition / "00000000000000000000.log").write_bytes(b"\x00" * 64)
    return data_dir


def test_old_data_and_an_unused_new_dir_give_one_line_saying_how_to_move_it(tmp_path: Path) -> None:
    old, new = _kafka_data(tmp_path / "share" / "broker"), tmp_path / "state" / "broker"
    notice = legacy_notice(new, old)
    assert notice is not None and "\n" not in notice
    assert f"{old} holds an embedded broker's data" in notice and "not used any more" in notice
    assert f"mv -T {old} {new}" in notice and f"rcaflow broker stop --data-dir {old}" in notice


def test_a_state_file_alone_counts_as_old_data(tmp_path: Path) -> None:
    old = tmp_path / "old"
    old.mkdir()
    (old / "broker-state.json").write_text("{}")
    assert has_broker_data(old)
    assert legacy_notice(tmp_path / "new", old) is not None


def test_old_data_next_to_new_data_is_still_mentioned_but_no_move_is_offered(tmp_path: Path) -> None:
    old, new = _kafka_data(tmp_path / "old"), _kafka_data(tmp_path / "new")
    notice = legacy_notice(new, old)
    assert notice is not None and "not used any more" in notice and "the old topics are not read" in notice
    assert "mv" not in notice


def test_nothing_to_say_without_old_data_or_when_the_old_dir_is_the_one_in_use(tmp_path: Path) -> None:
    old = tmp_path / "old"
    assert legacy_notice(tmp_path / "new", old) is None  # no old dir at all
    old.mkdir()
    (old / "tansu.out").write_text("a Tansu broker keeps its records in memory\n")
    (old / "kafka-logs").mkdir()
    assert legacy_notice(tmp_path / "new", old) is None
    _kafka_data(tmp_path / "both")
    assert legacy_notice(tmp_path / "both", tmp_path / "both") is None


def test_a_record_of_a_process_that_is_gone_is_no_running_broker(tmp_path: Path) -> None:
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        BrokerState(pid=int(gone.stdout), bootstrap="127.0.0.1:1", kind="tansu", data_dir=str(tmp_path / name),
                    started_at=0.0).save()
    assert running_broker([tmp_path / "a", tmp_path / "b", tmp_path / "none"]) is None
