"""Which embedded broker already runs from a data dir, whose it is, and what an older rcaflow left in its old data dir.

``rcaflow broker start`` and ``rcaflow run`` (for a broker it starts itself) record their broker in
``<data dir>/broker-state.json``; ``rcaflow broker stop|status`` and ``rcaflow run`` read that record, so one
data dir has one broker whoever started it, and nobody takes or stops a run's broker under it unasked.
Before, ``rcaflow broker`` kept its broker in :data:`LEGACY_DATA_DIR` while ``run`` used the XDG state dir;
a broker still running from there must stay reachable, and its data must not be left behind unseen.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from streams.broker.base import BrokerError, pid_alive

logger = logging.getLogger(__name__)

STATE_FILE = "broker-state.json"
#: The data dir of ``rcaflow broker start|stop|status`` up to this change; now only looked at, never written.
LEGACY_DATA_DIR = Path.home() / ".local" / "share" / "rcaflow" / "broker"
#: What the broker's command line must contain, so a recycled pid is never signalled.
_CMDLINE_MARK = {"kafka": "kafka.Kafka", "tansu": "tansu"}
#: ``BrokerState.owner``: a broker of ``rcaflow broker start`` is there to be shared and outlives its shell ...
OWNER_BROKER_START = "broker start"
#: ... one of ``rcaflow run`` lives and ends with that run (``owner_pid``), so nobody else may use or stop it.
OWNER_RUN = "run"


@dataclass(frozen=True)
class BrokerState:
    """What a ``broker start`` leaves in the data dir for ``stop``, ``status`` and ``run``."""

    pid: int
    bootstrap: str
    kind: str
    data_dir: str
    started_at: float
    foreground: bool = False
    #: How clients log in (``SASL_PLAINTEXT SCRAM-SHA-512 as user alice``); never the password.
    security: str = "PLAINTEXT"
    #: Who started it: :data:`OWNER_BROKER_START` (also every record written before this field) or :data:`OWNER_RUN`.
    owner: str = OWNER_BROKER_START
    #: The ``rcaflow run`` process that owns the broker, and its start time (/proc stat ticks), so a recycled pid
    #: is not taken for that run.
    owner_pid: int | None = None
    owner_started: int | None = None

    @classmethod
    def load(cls, data_dir: Path) -> BrokerState | None:
        try:
            raw = json.loads((data_dir / STATE_FILE).read_text())
            return cls(**raw)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError) as exc:
            raise BrokerError(f"unreadable broker state file {data_dir / STATE_FILE}: {exc}") from exc

    def save(self) -> None:
        path = Path(self.data_dir) / STATE_FILE
        tmp = path.with_suffix(".tmp")
        try:
            tmp.write_text(json.dumps(asdict(self), indent=2) + "\n")
            tmp.replace(path)
        except OSError as exc:
            raise BrokerError(f"cannot record the broker in {path}: {exc}") from exc

    @property
    def run_owned(self) -> bool:
        """Started by ``rcaflow run`` for itself: it stops when that run stops."""
        return self.owner == OWNER_RUN

    def owner_alive(self) -> bool:
        """The ``rcaflow run`` that owns this broker still runs (False for a broker of ``broker start``).

        A run's broker dies with its run (parent-death signal); a live broker whose run has ended is on its way out.
        """
        if not self.run_owned or self.owner_pid is None or not pid_alive(self.owner_pid):
            return False
        return self.owner_started is None or process_started(self.owner_pid) == self.owner_started

    def alive(self) -> bool:
        """The recorded process is still running and is still our broker."""
        if not pid_alive(self.pid):
            return False
        try:
            cmdline = Path(f"/proc/{self.pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            return False
        return _CMDLINE_MARK.get(self.kind, self.kind) in cmdline


def clear_state(data_dir: Path) -> None:
    (data_dir / STATE_FILE).unlink(missing_ok=True)


def release(state: BrokerState) -> bool:
    """Remove ``state``'s record from its data dir if it is still that record; whether it was removed.

    A run's record may have been replaced meanwhile (``broker stop --force`` and then ``broker start``): that
    broker is someone else's, and its record stays.
    """
    data_dir = Path(state.data_dir)
    if BrokerState.load(data_dir) != state:
        return False
    clear_state(data_dir)
    return True


def process_started(pid: int) -> int | None:
    """When ``pid`` started, in clock ticks after boot (field 22 of /proc/<pid>/stat); None when it is gone.

    Together with the pid it names one process: a pid reused later has a later start time.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name may contain spaces and parentheses: fields are counted after the last ')'.
    return int(stat[stat.rfind(")") + 2 :].split()[19])


def running_broker(data_dirs: Sequence[Path]) -> BrokerState | None:
    """The first live broker recorded in one of ``data_dirs``; None when none runs."""
    for data_dir in data_dirs:
        state = BrokerState.load(data_dir)
        if state is not None and state.alive():
            return state
    return None


def unrecorded_broker(data_dir: Path) -> int | None:
    """The pid of a broker that runs from ``data_dir`` without a state file (``rcaflow run``'s), if any.

    Every embedded broker runs with its data dir as working directory; a second one there would fail on
    Kafka's log dir lock (or, for Tansu, serve a second set of topics).
    """
    target = data_dir.resolve()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if Path(os.readlink(entry / "cwd")) != target:
                continue
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue  # gone, or another user's
        if any(mark in cmdline for mark in _CMDLINE_MARK.values()) and pid_alive(int(entry.name)):
            return int(entry.name)
    return None


def has_broker_data(data_dir: Path) -> bool:
    """Whether a broker has used ``data_dir``: a state file, or a Kafka log dir with something in it.

    Tansu keeps its records in memory, so a dir it used alone holds nothing worth moving.
    """
    if (data_dir / STATE_FILE).exists():
        return True
    try:
        return any((data_dir / "kafka-logs").iterdir())
    except OSError:
        return False


def legacy_notice(data_dir: Path, legacy: Path = LEGACY_DATA_DIR) -> str | None:
    """One line for a user whose older rcaflow left a broker's data in ``legacy``; None when there is none.

    Nothing is moved for the user: a broker may still run from the old dir, and a rename across file
    systems is a copy that could be cut short. The line says how to move it instead.
    """
    if data_dir.expanduser().resolve() == legacy.expanduser().resolve() or not has_broker_data(legacy):
        return None
    if has_broker_data(data_dir):
        return (f"{legacy} holds an embedded broker's data from an older rcaflow and is not used any more; the "
                f"data dir is now {data_dir}, which has data of its own: the old topics are not read "
                "(docs/upgrading.md)")
    return (f"{legacy} holds an embedded broker's data from an older rcaflow and is not used any more (the data "
            f"dir is now {data_dir}); to keep its topics, move it while no broker runs from it: "
            f"`rcaflow broker stop --data-dir {legacy}; mkdir -p {data_dir.parent} && mv -T {legacy} {data_dir}` "
            "(docs/upgrading.md)")
