"""A real single-node Elasticsearch on a free loopback port, for the tests (knowledge base, /tools/es).

The distribution is Maven Central's ``integ-test-zip`` (8.19.x runs on the Java 17 the Kafka fixture
already needs), installed once by ``install-es.sh`` into ``~/.cache/rcaflow/elasticsearch-<v>/``.
It is a minimal build: no ``GET /`` (so ``es.info()`` answers 405 and ``ping()`` is False), no
ILM, no ``delete_by_query``, no painless, no ``english`` analyzer — the project designs around
those (docs/knowledge-base.md), and the readiness probe is ``_cluster/health``.

Elasticsearch refuses to run as root. When the tests run as root the node runs as ``nobody``;
since ``~`` is usually private to root, the node gets a hard-linked copy of the cached
distribution in its run directory (same inodes, no extra disk, no permission on ``~`` needed).
With ``security=True`` basic auth is on (file realm user, no TLS: loopback only), as production
Elasticsearch 8 requires.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ES_VERSION = os.environ.get("RCAFLOW_ES_VERSION", "8.19.21")
INSTALL_SCRIPT = Path(__file__).with_name("install-es.sh")
JAVA17_HOME = Path("/usr/lib/jvm/java-17-openjdk-amd64")
RUN_AS = "nobody"


class EsStartError(RuntimeError):
    """The node did not install, start or turn green; carries the tail of its log."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cache_root() -> Path:
    return Path(os.environ.get("RCAFLOW_CACHE_DIR", str(Path.home() / ".cache" / "rcaflow")))


def install(version: str = ES_VERSION) -> Path:
    """The unpacked distribution, fetched and unpacked on first use (the script is idempotent)."""
    home = cache_root() / f"elasticsearch-{version}"
    if (home / "bin" / "elasticsearch").exists():
        return home
    proc = subprocess.run(["bash", str(INSTALL_SCRIPT)], env={**os.environ, "ES_VERSION": version,
                                                              "RCAFLOW_CACHE_DIR": str(cache_root())},
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise EsStartError(f"install-es.sh failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return Path(proc.stdout.strip().splitlines()[-1])


def java_home() -> Path:
    override = os.environ.get("RCAFLOW_ES_JAVA_HOME")
    if override:
        return Path(override)
    if JAVA17_HOME.exists():
        return JAVA17_HOME
    java = shutil.which("java")
    if java is None:
        raise EsStartError("no Java found: Elasticsearch 8.19 needs Java 17 (.ci/system-deps.sh installs it)")
    return Path(java).resolve().parent.parent


@dataclass
class EsNode:
    """One node: ``start()`` returns once the cluster is green; ``stop()`` ends it by its own pid."""

    security: bool = False
    heap: str = "384m"
    version: str = ES_VERSION
    username: str = "rcaflow-test"
    password: str = field(default_factory=lambda: secrets.token_urlsafe(18))
    port: int = field(default_factory=free_port)
    run_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="rcaflow-es-")))
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def auth(self) -> tuple[str, str] | None:
        return (self.username, self.password) if self.security else None

    @property
    def log_file(self) -> Path:
        return self.run_dir / "logs" / "stdout.log"

    def _prefix(self) -> list[str]:
        """Run as ``nobody`` when we are root (the node refuses root)."""
        if os.geteuid() != 0:
            return []
        return ["setpriv", f"--reuid={RUN_AS}", f"--regid={pwd.getpwnam(RUN_AS).pw_gid}", "--clear-groups"]

    def _env(self, home: Path) -> dict[str, str]:
        return {"PATH": "/usr/bin:/bin", "HOME": str(self.run_dir), "ES_HOME": str(home),
                "ES_PATH_CONF": str(self.run_dir / "config"), "ES_TMPDIR": str(self.run_dir / "tmp"),
                "ES_JAVA_HOME": str(java_home()), "ES_JAVA_OPTS": f"-Xms{self.heap} -Xmx{self.heap}"}

    def _stage(self) -> Path:
        cached = install(self.version)
        home = self.run_dir / "home"
        try:  # hard links: same files, readable without access to the cache's parent folders
            shutil.copytree(cached, home, copy_function=os.link)
        except OSError:
            shutil.rmtree(home, ignore_errors=True)
            shutil.copytree(cached, home)
        for name in ("config", "data", "logs", "tmp"):
            (self.run_dir / name).mkdir(exist_ok=True)
        shutil.copytree(cached / "config", self.run_dir / "config", dirs_exist_ok=True)
        lines = [
            "cluster.name: rcaflow-test", "node.name: n1",
            f"path.data: {self.run_dir / 'data'}", f"path.logs: {self.run_dir / 'logs'}",
            "network.host: 127.0.0.1", f"http.port: {self.port}", f"transport.port: {free_port()}",
            "discovery.type: single-node", "action.destructive_requires_name: false",
            # The disk is shared with everything else on a CI box: never go read-only on a full-ish disk.
            "cluster.routing.allocation.disk.threshold_enabled: false",
            f"xpack.security.enabled: {'true' if self.security else 'false'}",
        ]
        if self.security:
            lines += ["xpack.security.http.ssl.enabled: false", "xpack.security.transport.ssl.enabled: false"]
        (self.run_dir / "config" / "elasticsearch.yml").write_text("\n".join(lines) + "\n")
        if os.geteuid() == 0:
            entry = pwd.getpwnam(RUN_AS)
            self.run_dir.chmod(0o755)
            # Only what the node writes; never home/ (its files are the cache's own inodes).
            for path in (self.run_dir / n for n in ("config", "data", "logs", "tmp")):
                for sub in [path, *path.rglob("*")]:
                    os.chown(sub, entry.pw_uid, entry.pw_gid)
        return home

    def start(self, timeout_s: float = 180.0) -> EsNode:
        home = self._stage()
        env = self._env(home)
        if self.security:
            users = subprocess.run(
                [*self._prefix(), "env", "-i", *(f"{k}={v}" for k, v in env.items()),
                 str(home / "bin" / "elasticsearch-users"), "useradd", self.username, "-p", self.password,
                 "-r", "superuser"], capture_output=True, text=True, check=False)
            if users.returncode != 0:
                raise EsStartError(f"elasticsearch-users failed: {users.stdout[-1000:]} {users.stderr[-1000:]}")
        with self.log_file.open("wb") as out:
            self.proc = subprocess.Popen(
                [*self._prefix(), "env", "-i", *(f"{k}={v}" for k, v in env.items()),
                 "nice", "-n", "10", str(home / "bin" / "elasticsearch")],
                stdout=out, stderr=subprocess.STDOUT, cwd=self.run_dir, start_new_session=True)
        self._wait_green(timeout_s)
        return self

    def _wait_green(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise EsStartError(f"elasticsearch exited with {self.proc.returncode}:\n{self.tail()}")
            with contextlib.suppress(httpx.HTTPError):
                answer = httpx.get(f"{self.url}/_cluster/health", auth=self.auth, timeout=3,
                                   params={"wait_for_status": "green", "timeout": "1s"})
                if answer.status_code == 200 and answer.json().get("status") == "green":
                    return
            time.sleep(0.5)
        self.stop()
        raise EsStartError(f"elasticsearch not green after {timeout_s}s:\n{self.tail()}")

    def tail(self, chars: int = 4000) -> str:
        try:
            return self.log_file.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        """SIGTERM to our own process group (launcher + JVM), then SIGKILL; the run directory is removed."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        shutil.rmtree(self.run_dir, ignore_errors=True)
