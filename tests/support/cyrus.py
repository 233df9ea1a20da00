"""A private Cyrus IMAP 3.x on loopback (generated imapd.conf/cyrus.conf, sasldb user), for tests and benchmarks.

Why a second server: dovecot 2.3 waits a compile-time 500 ms after a change before it tells IDLE
clients, which hides the producer's own latency. Cyrus' ``idled`` pushes the change to every imapd
in IDLE at once, so against Cyrus what is left is rcaflow's share (plus TCP effects: Cyrus leaves
Nagle on, see benchmarks/bench_imap.py --append-delay-ms).

Same shape as the dovecot launcher in tests/integration/imap/imap_helpers.py (``start``/``stop``
keep the mailboxes and the port; ``client``/``append``/``uids`` speak IMAP as the test user), so a
benchmark or test can take either server. Cyrus logs only to syslog; ``logs()`` has what master
printed, which is where a failing start shows up.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.imap_server import MailboxOps, free_port

#: Debian's cyrus-common puts master and ctl_cyrusdb here (not on PATH).
CYRUS_LIBEXEC = Path("/usr/lib/cyrus/bin")
#: imapd and idled come from the cyrus-imapd package, which Conflicts with dovecot-imapd (both
#: Provide imap-server). So that both servers can sit on one machine, .ci/cyrus-deps.sh unpacks that
#: .deb here instead of installing it; RCAFLOW_CYRUS_IMAPD_DIR points elsewhere.
UNPACKED_IMAPD_DIR = Path("/opt/rcaflow/cyrus-imapd/usr/lib/cyrus/bin")


def _imapd_dir() -> Path | None:
    override = os.environ.get("RCAFLOW_CYRUS_IMAPD_DIR")
    candidates = [Path(override)] if override else [CYRUS_LIBEXEC, UNPACKED_IMAPD_DIR]
    for folder in candidates:
        if (folder / "imapd").exists() and (folder / "idled").exists():
            return folder
    return None


CYRUS_MASTER = CYRUS_LIBEXEC / "master" if (CYRUS_LIBEXEC / "master").exists() else None
CYRUS_IMAPD_DIR = _imapd_dir()
SASLPASSWD2 = shutil.which("saslpasswd2") or (
    "/usr/sbin/saslpasswd2" if Path("/usr/sbin/saslpasswd2").exists() else None
)
#: The SASL realm and the name in the greeting; fixed so the sasldb entry does not depend on the hostname.
SERVERNAME = "rcaflow-cyrus.test"
INSTALL_HINT = "Cyrus IMAP is not installed: run .ci/cyrus-deps.sh (cyrus-common, sasl2-bin, unpacked cyrus-imapd)"

_IMAPD_CONF = """\
configdirectory: {base}/conf
partition-default: {base}/spool
defaultpartition: default
sievedir: {base}/sieve
servername: {servername}
cyrus_user: {run_user}
admins: cyrus-admin-unused
allowplaintext: yes
sasl_mech_list: PLAIN LOGIN
sasl_pwcheck_method: auxprop
sasl_auxprop_plugin: sasldb
sasl_sasldb_path: {base}/sasldb2
# The standard namespace: INBOX/Alerts is a child of INBOX, as in the dovecot fixture.
altnamespace: no
unixhierarchysep: yes
# The user's INBOX appears on first login; no admin step.
autocreate_quota: 0
# IDLE is pushed by idled (DAEMON in cyrus.conf); this poll is only the fallback when idled cannot be
# reached, left at a slow 60 s so a broken idled shows up as latency instead of hiding. 0 = no IDLE.
imapidlepoll: {idle_poll}
idlesocket: {base}/conf/socket/idle
syslog_prefix: rcaflow-cyrus
{tls}
"""

_CYRUS_CONF = """\
START {{
  recover cmd="{libexec}/ctl_cyrusdb -r -C {base}/imapd.conf"
}}
SERVICES {{
  imap cmd="{imapd_dir}/imapd -C {base}/imapd.conf" listen="127.0.0.1:{port}" prefork=0
{imaps}}}
DAEMON {{
  idled cmd="{imapd_dir}/idled -C {base}/imapd.conf"
}}
EVENTS {{
}}
"""



def _run_user() -> tuple[str, int, int]:
    """Who the Cyrus processes run as: the package's ``cyrus`` user when we are root, else ourselves."""
    info = pwd.getpwnam("cyrus") if os.geteuid() == 0 else pwd.getpwuid(os.geteuid())
    return info.pw_name, info.pw_uid, info.pw_gid


@dataclass
class Cyrus(MailboxOps):
    """One Cyrus master (plus idled and imapd children) in the foreground of its own session."""

    base: Path
    port: int
    user: str = "alerts"
    password: str = field(default_factory=lambda: uuid.uuid4().hex)
    idle: bool = True
    #: With TLS: a self-signed certificate for 127.0.0.1 made on the fly, imaps on ``tls_port``.
    tls_port: int | None = None
    proc: subprocess.Popen[bytes] | None = None
    name: str = "cyrus"

    @property
    def cert(self) -> Path:
        return self.base / "cert.pem"

    def write_config(self) -> Path:
        run_user, uid, gid = _run_user()
        for sub in ("conf", "conf/socket", "spool", "sieve"):
            (self.base / sub).mkdir(exist_ok=True)
        tls, imaps = "", ""
        if self.tls_port is not None:
            self._make_certificate()
            tls = f"tls_server_cert: {self.cert}\ntls_server_key: {self.base / 'key.pem'}"
            imaps = (
                f'  imaps cmd="{CYRUS_IMAPD_DIR}/imapd -s -C {self.base}/imapd.conf" '
                f'listen="127.0.0.1:{self.tls_port}" prefork=0\n'
            )
        conf = self.base / "imapd.conf"
        conf.write_text(
            _IMAPD_CONF.format(
                base=self.base,
                servername=SERVERNAME,
                run_user=run_user,
                idle_poll=60 if self.idle else 0,
                tls=tls,
            )
        )
        (self.base / "cyrus.conf").write_text(
            _CYRUS_CONF.format(
                libexec=CYRUS_LIBEXEC, imapd_dir=CYRUS_IMAPD_DIR, base=self.base, port=self.port, imaps=imaps
            )
        )
        self._write_sasldb()
        if os.geteuid() == 0:
            for root, dirs, files in os.walk(self.base):
                for name in (*dirs, *files):
                    os.chown(os.path.join(root, name), uid, gid)
            os.chown(self.base, uid, gid)
        return conf

    def _write_sasldb(self) -> None:
        assert SASLPASSWD2 is not None
        subprocess.run(
            [SASLPASSWD2, "-p", "-c", "-f", str(self.base / "sasldb2"), "-u", SERVERNAME, self.user],
            input=self.password.encode(),
            check=True,
            capture_output=True,
        )

    def _make_certificate(self) -> None:
        if self.cert.exists():
            return
        subprocess.run(
            [
                "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                "-keyout", str(self.base / "key.pem"), "-out", str(self.cert),
                "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
            ],
            check=True,
            capture_output=True,
        )  # fmt: skip

    def start(self) -> None:
        assert CYRUS_MASTER is not None
        self.write_config()
        log = (self.base / "master.log").open("ab")
        run_user, _, _ = _run_user()
        env = {**os.environ, "CYRUS_USER": run_user}
        # -D: stay in the foreground with stderr open; own session so stop() takes every child down together.
        self.proc = subprocess.Popen(
            [
                str(CYRUS_MASTER), "-D",
                "-C", str(self.base / "imapd.conf"),
                "-M", str(self.base / "cyrus.conf"),
                "-p", str(self.base / "master.pid"),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
        )  # fmt: skip
        idle_socket = self.base / "conf" / "socket" / "idle"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"cyrus master exited {self.proc.returncode}: {self.logs()}")
            # Without idled's socket an imapd that starts IDLE now would fall back to the 60 s poll.
            if idle_socket.exists() or not self.idle:
                try:
                    with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                        if s.recv(100).startswith(b"* OK"):
                            return
                except OSError:
                    pass
            time.sleep(0.05)
        raise RuntimeError(f"cyrus did not answer on port {self.port}: {self.logs()}")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # an imapd serving a client may outlive its master
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    time.sleep(0.05)
            except OSError:
                return

    def logs(self) -> str:
        path = self.base / "master.log"
        text = path.read_text(errors="replace")[-4000:] if path.exists() else ""
        return text + "\n(cyrus daemons log to syslog only)"


def cyrus_missing() -> str | None:
    """Why a Cyrus cannot be started here, or None."""
    if CYRUS_MASTER is None or CYRUS_IMAPD_DIR is None or SASLPASSWD2 is None:
        return INSTALL_HINT
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("cyrus")
        except KeyError:
            return "running as root needs the 'cyrus' user that cyrus-common creates"
    return None


@contextlib.contextmanager
def running_cyrus(idle: bool = True, tls: bool = False) -> Iterator[Cyrus]:
    """A started Cyrus in a fresh temp dir, stopped and removed afterwards (benchmarks use this directly)."""
    missing = cyrus_missing()
    if missing is not None:
        raise RuntimeError(missing)
    # Not pytest's tmp_path: its 0700 parents keep out the cyrus user the daemons run as.
    base = Path(tempfile.mkdtemp(prefix="rcaflow-cyrus-"))
    base.chmod(0o755)
    server = Cyrus(base=base, port=free_port(), idle=idle, tls_port=free_port() if tls else None)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


def make_cyrus(idle: bool = True, tls: bool = False) -> Iterator[Cyrus]:
    """For a pytest fixture: skip (fail on CI) when Cyrus is not installed, like make_dovecot."""
    missing = cyrus_missing()
    if missing is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(missing)
        pytest.skip(missing)
    with running_cyrus(idle=idle, tls=tls) as server:
        yield server
