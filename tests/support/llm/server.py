"""A real Qwen model behind llama.cpp's OpenAI-compatible ``llama-server`` on loopback, for tests and benchmarks.

Why a real model and not only the scripted stand-in: the stand-in replays answers we wrote, so it can
never show what a small model really does with our prompt, our JSON schema (llama-server turns it into
a grammar), a prompt longer than its context, or a client that gives up mid-generation. The binary and
the weights are built/fetched by ``.ci/llm-deps.sh`` (tests/support/llm/build_llama_server.sh and
fetch_model.sh) into ``~/.cache/rcaflow``; this module only finds and starts them.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

#: Keep these three in step with build_llama_server.sh and fetch_model.sh (the scripts are the source).
LLAMA_CPP_PYTHON_VERSION = "0.3.36"
MODEL_SHA256 = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
MODEL_FILE = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
#: The name the server answers to (``--alias``); what ``LlmConfig.model`` should say.
MODEL_ALIAS = "qwen2.5-coder-0.5b-instruct"

SCRIPTS = Path(__file__).resolve().parent
INSTALL_HINT = "run .ci/llm-deps.sh (builds llama-server and fetches the Qwen GGUF into ~/.cache/rcaflow)"


class LlamaServerError(RuntimeError):
    """The server cannot be found or did not come up; the message says which and shows its log tail."""


def cache_root() -> Path:
    """``RCAFLOW_CACHE`` (as the scripts read it) or ``~/.cache/rcaflow``."""
    return Path(os.environ.get("RCAFLOW_CACHE", str(Path.home() / ".cache" / "rcaflow")))


def server_binary() -> Path:
    return cache_root() / f"llama-server-{LLAMA_CPP_PYTHON_VERSION}" / "bin" / "llama-server"


def model_path() -> Path:
    return cache_root() / "models" / MODEL_SHA256 / MODEL_FILE


def missing() -> str | None:
    """Why the real model cannot be started here, or None. The ``.verified`` marker is written by
    fetch_model.sh only after the sha256 matched, so a half-downloaded file never counts."""
    if not os.access(server_binary(), os.X_OK):
        return f"no llama-server at {server_binary()}: {INSTALL_HINT}"
    model = model_path()
    if not model.exists() or not model.with_name(model.name + ".verified").exists():
        return f"no verified model at {model}: {INSTALL_HINT}"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LlamaServer:
    """One ``llama-server`` process: ``start()`` waits for ``/health`` to answer 200, ``stop()`` ends it.

    ``ctx`` is the context window in tokens (small keeps memory and the prompt-overflow test cheap);
    ``threads`` 2 because the machines have two cores; one slot (``-np 1``), so requests queue.
    """

    log_dir: Path
    ctx: int = 4096
    threads: int = 2
    nice: int = 10
    start_timeout_s: float = 300.0
    port: int = 0
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def base_url(self) -> str:
        """The OpenAI-compatible base URL (``…/v1``), what ``LlmConfig.base_url`` takes."""
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def log_path(self) -> Path:
        return self.log_dir / f"llama-server-{self.port}.log"

    def command(self) -> list[str]:
        # setpriv --pdeathsig: the server gets SIGTERM when the test process dies, even by SIGKILL or a
        # timeout that skips the fixture's teardown (measured: an orphan went on generating for 20 min).
        return [
            *(["setpriv", "--pdeathsig", "TERM", "--"] if shutil.which("setpriv") else []),
            "nice", "-n", str(self.nice), str(server_binary()),
            "-m", str(model_path()), "--host", "127.0.0.1", "--port", str(self.port),
            "-c", str(self.ctx), "-t", str(self.threads), "-np", "1",
            "--jinja", "--alias", MODEL_ALIAS, "--no-webui",
        ]  # fmt: skip

    def start(self) -> LlamaServer:
        why = missing()
        if why is not None:
            raise LlamaServerError(why)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.port = self.port or _free_port()
        log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            self.command(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
        log.close()
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise LlamaServerError(f"llama-server exited with {self.process.returncode}:\n{self.log_tail()}")
            if self.healthy():
                return self
            time.sleep(0.25)
        self.stop()
        raise LlamaServerError(f"llama-server not healthy after {self.start_timeout_s:g}s:\n{self.log_tail()}")

    def healthy(self) -> bool:
        """``GET /health`` answers 200 (503 while the model is loading)."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=2) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)  # its own session: nice and the server go together
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=5)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def rss_mib(self) -> float | None:
        """The server's resident memory (nice execs the server, so the pid is the server's)."""
        if self.process is None:
            return None
        try:
            for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        except OSError:
            return None
        return None


@contextlib.contextmanager
def running(log_dir: Path, *, ctx: int = 4096, threads: int = 2) -> Iterator[LlamaServer]:
    """A started server for the block; stopped (its whole process group) however the block ends."""
    server = LlamaServer(log_dir, ctx=ctx, threads=threads)
    try:
        yield server.start()
    finally:
        server.stop()
