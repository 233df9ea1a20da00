"""One data dir, one broker: `rcaflow broker` and `rcaflow run` share it, and an older rcaflow's dir is not lost.

A run's own broker is recorded as that run's: `broker status` says so, `broker stop` and a second run leave it to
that run, and the record goes with the run.

Each command runs as a user would run it, in a process whose HOME is a temp dir, so the defaults
(~/.local/state/rcaflow/broker, and the old ~/.local/share/rcaflow/broker) land there and not in the real home.
Tansu: the cheapest live broker; what is checked here is which broker is found, not Kafka semantics.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from streams.broker.base import pid_alive

pytestmark = pytest.mark.tansu

# What `rcaflow run` does about its broker, without its roles: the Stack with no role.
_RUN_BROKER_ONLY = (
    "import logging\n"
    "from streams.settings import Settings\n"
    "from streams.wiring.supervisor import Stack\n"
    "logging.basicConfig(level=logging.WARNING, format='%(message)s')\n"
    "with Stack(Settings(), roles=(), env={}) as stack:\n"
    "    print(stack.bootstrap, 'own' if stack.broker is not None else 'reused', flush=True)\n"
)
# The same, staying up until SIGTERM, as `rcaflow run` does.
_RUN_UNTIL_STOPPED = _RUN_BROKER_ONLY + "    stack.wait()\n"


@pytest.fixture(autouse=True)
def _no_broker_left(tmp_path: Path) -> Iterator[None]:
    """A failed test must not leave a detached broker behind: every broker runs from a dir under its HOME."""
    yield
    home = str(tmp_path.resolve())
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and os.readlink(entry / "cwd").startswith(home):
                os.killpg(int(entry.name), signal.SIGKILL)
        except OSError:
            continue


def _env(home: Path) -> dict[str, str]:
    kept = {k: v for k, v in os.environ.items() if not k.startswith(("RCAFLOW_", "KAFKA_"))}
    return {**kept, "HOME": str(home), "RCAFLOW_KAFKA__EMBEDDED__PREFER": "tansu"}


def _rcaflow(home: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "streams.cli", *args], env=_env(home), capture_output=True,
                          text=True, timeout=timeout, check=False)


def _run_broker_only(home: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", _RUN_BROKER_ONLY], env=_env(home), capture_output=True, text=True,
                          timeout=120, check=False)


def _start_run(home: Path) -> tuple[subprocess.Popen[str], str]:
    """A run that started its own broker (it has no other to use), and that broker's bootstrap."""
    log = (home / "run.log").open("w")
    run = subprocess.Popen([sys.executable, "-c", _RUN_UNTIL_STOPPED], env=_env(home), stdout=subprocess.PIPE,
                           stderr=log, text=True)
    log.close()
    try:
        assert run.stdout is not None
        bootstrap, how = [*run.stdout.readline().split(), "", ""][:2]
        assert how == "own", (home / "run.log").read_text()
    except BaseException:
        _end(run, signal.SIGKILL)
        raise
    return run, bootstrap


def _end(run: subprocess.Popen[str], sig: signal.Signals = signal.SIGTERM) -> int:
    """Stop a run as a user would (SIGTERM) or as a crash does (SIGKILL); its exit code."""
    run.send_signal(sig)
    with run:  # closes its pipe
        return run.wait(timeout=60)


def _brokers_in(data_dir: Path) -> list[int]:
    """Live broker processes whose working directory is ``data_dir``, as every embedded broker's is."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and os.readlink(entry / "cwd") == str(data_dir) and pid_alive(int(entry.name)):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def _dirs(tmp_path: Path) -> tuple[Path, Path, Path]:
    home = tmp_path.resolve()
    return home, home / ".local" / "share" / "rcaflow" / "broker", home / ".local" / "state" / "rcaflow" / "broker"


def _old_kafka_data(old: Path) -> dict[Path, bytes]:
    partition = old / "kafka-logs" / "rcaflow.incidents-0"
    partition.mkdir(parents=True)
    files = {old / "kafka-logs" / "meta.properties": b"cluster.id=abc\nnode.id=1\n",
             partition / "00000000000000000000.log": b"an incident\n"}
    for path, data in files.items():
        path.write_bytes(data)
    return files


def _started(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, done.stderr
    first = done.stdout.splitlines()[0]
    assert first.startswith("KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:"), done.stdout
    return first.removeprefix("KAFKA_BOOTSTRAP_SERVERS=")


def _wait_dead(pid: int, deadline_s: float = 30.0) -> bool:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return True
        time.sleep(0.1)
    return False


def test_status_start_and_stop_find_a_broker_still_running_from_the_old_data_dir(tmp_path: Path) -> None:
    home, old, new = _dirs(tmp_path)
    # What `rcaflow broker start` did by default before the data dir moved.
    bootstrap = _started(_rcaflow(home, "broker", "start", "--prefer", "tansu", "--data-dir", str(old)))
    pid = json.loads((old / "broker-state.json").read_text())["pid"]
    try:
        status = _rcaflow(home, "broker", "status")
        assert status.returncode == 0, status.stdout + status.stderr
        assert f"KAFKA_BOOTSTRAP_SERVERS={bootstrap}" in status.stdout
        assert f"it runs from the old data dir {old}" in status.stdout

        again = _rcaflow(home, "broker", "start", "--prefer", "tansu")
        assert _started(again) == bootstrap, "a second broker was started next to the running one"
        assert f"already running from {old}" in again.stderr
        assert not (new / "broker-state.json").exists()
    finally:
        stopped = _rcaflow(home, "broker", "stop")
    assert stopped.returncode == 0, stopped.stderr
    said = f"stopped the tansu broker (pid {pid}) on {bootstrap}, which ran from the old data dir {old}"
    assert said in stopped.stderr
    assert _wait_dead(pid)
    assert _rcaflow(home, "broker", "status").returncode == 1


def test_start_says_once_that_the_old_data_dir_is_not_used_any_more_and_leaves_it_as_it_is(tmp_path: Path) -> None:
    home, old, new = _dirs(tmp_path)
    files = _old_kafka_data(old)
    started = _rcaflow(home, "broker", "start", "--prefer", "tansu")
    try:
        _started(started)
        said = [line for line in started.stderr.splitlines() if str(old) in line]
        assert len(said) == 1, started.stderr
        assert "not used any more" in said[0] and f"mv -T {old} {new}" in said[0]
        assert all(line.startswith(("KAFKA_BOOTSTRAP_SERVERS=", "#")) for line in started.stdout.splitlines())
        assert (new / "broker-state.json").exists()
    finally:
        assert _rcaflow(home, "broker", "stop").returncode == 0
    assert {path: path.read_bytes() for path in files} == files


def test_run_says_that_the_old_data_dir_is_not_used_any_more_before_starting_its_own_broker(tmp_path: Path) -> None:
    home, old, new = _dirs(tmp_path)
    files = _old_kafka_data(old)
    run = _run_broker_only(home)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split()[1] == "own"
    said = [line for line in run.stderr.splitlines() if str(old) in line]
    assert len(said) == 1 and "not used any more" in said[0] and f"mv -T {old} {new}" in said[0], run.stderr
    assert {path: path.read_bytes() for path in files} == files


def test_run_uses_the_broker_that_broker_start_left_running_in_its_data_dir(tmp_path: Path) -> None:
    home, _, new = _dirs(tmp_path)
    bootstrap = _started(_rcaflow(home, "broker", "start", "--prefer", "tansu"))
    pid = json.loads((new / "broker-state.json").read_text())["pid"]
    try:
        run = _run_broker_only(home)
        assert run.returncode == 0, run.stderr
        assert run.stdout.split() == [bootstrap, "reused"]
        assert "left running" in run.stderr
        assert pid_alive(pid), "the run stopped a broker it did not start"
        assert _rcaflow(home, "broker", "status").returncode == 0
    finally:
        assert _rcaflow(home, "broker", "stop").returncode == 0
    assert _wait_dead(pid)


def test_broker_start_and_status_see_the_broker_a_run_keeps_in_the_same_data_dir(tmp_path: Path) -> None:
    home, _, new = _dirs(tmp_path)
    attached = (  # like `rcaflow run`: an attached broker, and no state file
        "import sys, time\n"
        "from pathlib import Path\n"
        "from streams.broker import TansuBroker\n"
        "b = TansuBroker(Path(sys.argv[1]))\n"
        "b.start()\n"
        "print(b.pid, flush=True)\n"
        "time.sleep(600)\n"
    )
    with subprocess.Popen([sys.executable, "-c", attached, str(new)], stdout=subprocess.PIPE, text=True) as run:
        try:
            assert run.stdout is not None
            pid = int(run.stdout.readline())
            started = _rcaflow(home, "broker", "start", "--prefer", "tansu")
            assert started.returncode != 0 and started.stdout == ""
            assert f"a broker that `rcaflow run` started (pid {pid}) is using {new}" in started.stderr
            status = _rcaflow(home, "broker", "status")
            assert status.returncode == 1
            assert f"a broker that `rcaflow run` started (pid {pid}) is using {new}" in status.stdout
            # A run of this rcaflow next to it (an older one's, which left no record) stops before its roles.
            second = _rcaflow(home, "run", timeout=60)
            assert second.returncode == 2, second.stderr
            assert f"rcaflow: a broker without a record (pid {pid}" in second.stderr
            assert f"already runs from {new}" in second.stderr
            assert _brokers_in(new) == [pid]
        finally:
            run.kill()
    assert _wait_dead(pid)


def test_a_runs_own_broker_is_recorded_as_its_own_and_left_to_it_by_status_stop_start_and_a_second_run(
    tmp_path: Path,
) -> None:
    home, _, new = _dirs(tmp_path)
    run, bootstrap = _start_run(home)
    try:
        record = json.loads((new / "broker-state.json").read_text())
        assert (record["owner"], record["owner_pid"], record["bootstrap"], record["kind"], record["data_dir"]) == (
            "run", run.pid, bootstrap, "tansu", str(new))
        broker_pid = record["pid"]

        status = _rcaflow(home, "broker", "status")
        assert status.returncode == 0, status.stdout + status.stderr
        assert f"KAFKA_BOOTSTRAP_SERVERS={bootstrap}" in status.stdout
        assert f"# broker: tansu (pid {broker_pid}, data {new}" in status.stdout
        assert f"# owned by `rcaflow run` (pid {run.pid}): it lives and ends with that run" in status.stdout

        stop = _rcaflow(home, "broker", "stop")
        assert stop.returncode != 0
        assert f"belongs to the `rcaflow run` with pid {run.pid}" in stop.stderr
        assert "stop that run instead" in stop.stderr and "--force" in stop.stderr
        assert pid_alive(broker_pid) and (new / "broker-state.json").exists()

        start = _rcaflow(home, "broker", "start", "--prefer", "tansu")
        assert start.returncode != 0 and start.stdout == ""
        assert f"broker that `rcaflow run` started (pid {run.pid}) is using {new}" in start.stderr

        second = _rcaflow(home, "run", timeout=60)
        assert second.returncode == 2, second.stderr
        said = [line for line in second.stderr.splitlines() if line.startswith("rcaflow: ")]
        assert len(said) == 1, second.stderr
        assert f"another `rcaflow run` (pid {run.pid})" in said[0] and f"from {new}" in said[0]
        assert "stop that run first" in said[0] and "data dir of its own" in said[0]
        assert "`rcaflow broker start`" in said[0]
        assert _brokers_in(new) == [broker_pid], "a second broker was started in the run's data dir"
        assert json.loads((new / "broker-state.json").read_text()) == record
    finally:
        assert _end(run) == 0
    assert _wait_dead(broker_pid)
    assert not (new / "broker-state.json").exists(), "the run left the record of its stopped broker behind"


def test_broker_stop_force_stops_a_runs_broker_and_the_run_leaves_the_next_record_alone(tmp_path: Path) -> None:
    home, _, new = _dirs(tmp_path)
    run, bootstrap = _start_run(home)
    try:
        broker_pid = json.loads((new / "broker-state.json").read_text())["pid"]
        forced = _rcaflow(home, "broker", "stop", "--force")
        assert forced.returncode == 0, forced.stderr
        assert f"stopped the tansu broker (pid {broker_pid}) on {bootstrap}" in forced.stderr
        assert f"started by `rcaflow run` pid {run.pid}, which stops too: it has lost Kafka" in forced.stderr
        assert _wait_dead(broker_pid)
        # The data dir is free again: `broker start` records a broker of its own there.
        shared = _started(_rcaflow(home, "broker", "start", "--prefer", "tansu"))
        record = (new / "broker-state.json").read_text()
        # The run does not go on without Kafka, looking healthy: it stops, and says why.
        assert run.wait(timeout=60) != 0
        said = (home / "run.log").read_text()
        assert f"the embedded tansu broker of this run (pid {broker_pid}, {bootstrap}) exited" in said, said[-2000:]
        assert "every role has lost Kafka" in said
    finally:
        _end(run)
    try:
        assert (new / "broker-state.json").read_text() == record, "the run removed a record that was not its own"
        status = _rcaflow(home, "broker", "status")
        assert status.returncode == 0 and f"KAFKA_BOOTSTRAP_SERVERS={shared}" in status.stdout
        assert "rcaflow run" not in status.stdout
    finally:
        assert _rcaflow(home, "broker", "stop").returncode == 0


def test_the_record_a_killed_run_left_does_not_keep_the_next_run_from_its_own_broker(tmp_path: Path) -> None:
    home, _, new = _dirs(tmp_path)
    run, _ = _start_run(home)
    broker_pid = json.loads((new / "broker-state.json").read_text())["pid"]
    _end(run, signal.SIGKILL)  # no clean-up: its broker dies with it (parent-death signal), its record stays
    assert _wait_dead(broker_pid)
    assert json.loads((new / "broker-state.json").read_text())["owner_pid"] == run.pid
    status = _rcaflow(home, "broker", "status")
    assert status.returncode == 1 and "no broker is running" in status.stdout

    again = _run_broker_only(home)
    assert again.returncode == 0, again.stderr
    assert again.stdout.split()[1] == "own"
    assert not (new / "broker-state.json").exists()
