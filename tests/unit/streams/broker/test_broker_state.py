"""An older rcaflow's broker data dir is never passed over in silence, a dead record is not a broker, and a
run's record names that run and is removed only by it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from streams.broker.state import (
    OWNER_BROKER_START,
    OWNER_RUN,
    BrokerState,
    has_broker_data,
    legacy_notice,
    process_started,
    release,
    running_broker,
)


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


def test_a_record_written_before_owners_were_recorded_is_a_broker_start_one(tmp_path: Path) -> None:
    (tmp_path / "broker-state.json").write_text(json.dumps({
        "pid": 4242, "bootstrap": "127.0.0.1:9092", "kind": "kafka", "data_dir": str(tmp_path),
        "started_at": 1.5, "foreground": False, "security": "PLAINTEXT"}))
    state = BrokerState.load(tmp_path)
    assert state is not None and state.owner == OWNER_BROKER_START
    assert not state.run_owned and not state.owner_alive()


def _run_record(data_dir: Path, owner_started: int | None) -> BrokerState:
    return BrokerState(pid=4242, bootstrap="127.0.0.1:1", kind="kafka", data_dir=str(data_dir), started_at=2.0,
                       foreground=True, owner=OWNER_RUN, owner_pid=os.getpid(), owner_started=owner_started)


def test_a_runs_record_names_its_run_only_while_that_very_process_runs(tmp_path: Path) -> None:
    me = process_started(os.getpid())
    assert me is not None
    state = _run_record(tmp_path, me)
    state.save()
    assert BrokerState.load(tmp_path) == state and state.owner_alive()
    # The same pid, started at another time, is another process: a recycled pid is not the run.
    assert not _run_record(tmp_path, me + 1).owner_alive()


def test_a_run_removes_its_own_record_and_leaves_one_that_replaced_it(tmp_path: Path) -> None:
    ours = _run_record(tmp_path, process_started(os.getpid()))
    ours.save()
    assert release(ours) and not (tmp_path / "broker-state.json").exists()
    ours.save()
    theirs = BrokerState(pid=4343, bootstrap="127.0.0.1:2", kind="tansu", data_dir=str(tmp_path), started_at=3.0)
    theirs.save()
    assert not release(ours)
    assert BrokerState.load(tmp_path) == theirs
