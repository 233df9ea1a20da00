"""Which embedded broker to run: real Kafka when Java 17 and its jars are reachable, else Tansu."""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from streams.broker.base import DEFAULT_STARTUP_TIMEOUT, BrokerError, EmbeddedBroker
from streams.broker.kafka_maven import (
    DEFAULT_KAFKA_VERSION,
    KafkaMavenBroker,
    ScramUser,
    jar_cache_complete,
    jar_cache_dir,
)
from streams.broker.tansu import TANSU_LIMITS, TansuBroker

logger = logging.getLogger(__name__)

Prefer = Literal["auto", "kafka", "tansu"]
MIN_JAVA = 17
_JAVA_VERSION = re.compile(r'version\s+"(?P<v>[^"]+)"')


def parse_java_version(text: str) -> int | None:
    """The feature release from `java -version` output: "1.8.0_392" -> 8, "17.0.15" -> 17, "21" -> 21."""
    match = _JAVA_VERSION.search(text)
    if match is None:
        return None
    numbers = re.findall(r"\d+", match.group("v"))
    if not numbers:
        return None
    first = int(numbers[0])
    if first == 1 and len(numbers) > 1:  # the pre-9 "1.x" scheme
        return int(numbers[1])
    return first


def java_version(java: str) -> int | None:
    """Run `java -version`; None when it cannot run or says nothing we understand."""
    try:
        done = subprocess.run([java, "-version"], capture_output=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        logger.debug("`%s -version` failed: %s", java, exc)
        return None
    return parse_java_version((done.stderr + done.stdout).decode("utf-8", errors="replace"))


@dataclass(frozen=True)
class BrokerChoice:
    """The decision and why, so the caller (and the log) can say it."""

    kind: Literal["kafka", "tansu"]
    reason: str
    java: str | None = None
    mvn: str | None = None


def decide(
    prefer: Prefer,
    cache_dir: Path,
    *,
    kafka_version: str = DEFAULT_KAFKA_VERSION,
    search_path: str | None = None,
) -> BrokerChoice:
    """Pick the broker kind without starting anything.

    ``search_path`` is a PATH-style string used to find `java` and `mvn` (None: the
    process PATH). An explicit ``prefer="kafka"`` that cannot be met is an error,
    not a silent fallback.
    """
    if prefer == "tansu":
        return BrokerChoice("tansu", "Tansu was asked for")
    why_not = _why_not_kafka(cache_dir, kafka_version, search_path)
    if isinstance(why_not, BrokerChoice):
        return why_not
    if prefer == "kafka":
        raise BrokerError(f"cannot run the embedded Apache Kafka broker: {why_not}")
    return BrokerChoice("tansu", why_not)


def _why_not_kafka(cache_dir: Path, kafka_version: str, search_path: str | None) -> BrokerChoice | str:
    java = shutil.which("java", path=search_path)
    if java is None:
        return "no `java` on PATH (Apache Kafka needs Java 17+)"
    version = java_version(java)
    if version is None:
        return f"`{java} -version` did not report a version (Apache Kafka needs Java 17+)"
    if version < MIN_JAVA:
        return f"{java} is Java {version}; Apache Kafka {kafka_version} needs Java {MIN_JAVA}+"
    mvn = shutil.which("mvn", path=search_path)
    jar_dir = jar_cache_dir(cache_dir, kafka_version)
    if mvn is None and not jar_cache_complete(jar_dir):
        return f"no `mvn` on PATH to resolve Apache Kafka {kafka_version}, and the jar cache {jar_dir} is empty"
    return BrokerChoice("kafka", f"Java {version} found at {java}", java=java, mvn=mvn)


def choose_broker(
    prefer: Prefer,
    data_dir: Path,
    cache_dir: Path,
    port: int | None = None,
    *,
    kafka_version: str = DEFAULT_KAFKA_VERSION,
    search_path: str | None = None,
    startup_timeout: float = DEFAULT_STARTUP_TIMEOUT,
    detached: bool = False,
    scram: ScramUser | None = None,
) -> EmbeddedBroker:
    """A not-yet-started broker of the best available kind.

    ``cache_dir`` is the cache root (e.g. ~/.cache/rcaflow); Kafka's jars live in
    ``cache_dir/kafka-<version>/``. Falling back to Tansu logs a warning saying why.
    ``scram``: a SASL_PLAINTEXT (SCRAM-SHA-512) listener with this user; only real Kafka offers it, so it
    never falls back to Tansu.
    """
    if scram is not None and prefer == "tansu":
        raise BrokerError("the Tansu broker has no SASL listener; a secured embedded broker needs Java 17+")
    choice = decide("kafka" if scram is not None else prefer, cache_dir, kafka_version=kafka_version,
                    search_path=search_path)
    if choice.kind == "kafka":
        assert choice.java is not None
        return KafkaMavenBroker(
            data_dir,
            cache_root=cache_dir,
            version=kafka_version,
            java=choice.java,
            mvn=choice.mvn,
            port=port,
            startup_timeout=startup_timeout,
            detached=detached,
            scram=scram,
        )
    if prefer == "auto":
        logger.warning(
            "using the Tansu fallback broker because %s; in Tansu %s. Install Java 17+ and Maven "
            "for real Kafka, or set KAFKA_BOOTSTRAP_SERVERS",
            choice.reason,
            TANSU_LIMITS,
        )
    else:
        logger.info("using the Tansu broker as asked; in Tansu %s", TANSU_LIMITS)
    return TansuBroker(data_dir, port=port, startup_timeout=startup_timeout, detached=detached)
