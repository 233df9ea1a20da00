"""What importing a room loads: configuration and stage logic pull in no engine, no web framework, no Kafka client.

Each case runs in a fresh interpreter, since this one has imported everything already.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("fastapi", "starlette", "uvicorn", "faust", "mode", "aiokafka", "confluent_kafka")
WEB = ("fastapi", "starlette", "uvicorn")
ENGINE = ("faust", "mode", "aiokafka")

_PROBE = """
import importlib, json, pkgutil, sys
for name in sys.argv[1:]:
    module = importlib.import_module(name)
    if hasattr(module, "__path__"):
        for info in pkgutil.iter_modules(module.__path__):
            importlib.import_module(f"{name}.{info.name}")
print(json.dumps(sorted({m.split(".")[0] for m in sys.modules})))
"""


def _loaded(*modules: str) -> set[str]:
    done = subprocess.run([sys.executable, "-c", _PROBE, *modules], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, check=True)
    return set(json.loads(done.stdout))


@pytest.mark.parametrize(("modules", "forbidden"), [
    (("streams.settings",), HEAVY),
    (("streams.stages",), HEAVY),  # the package and every stage module in it
    (("streams.cli",), HEAVY),
    (("streams.notify",), HEAVY),
    (("streams.worker",), WEB),
    (("streams.api",), ENGINE),
    (("streams.executor",), WEB + ENGINE),
])
def test_a_room_loads_only_what_it_is_about(modules: tuple[str, ...], forbidden: tuple[str, ...]) -> None:
    loaded = _loaded(*modules)
    assert not loaded & set(forbidden), f"importing {', '.join(modules)} loads {sorted(loaded & set(forbidden))}"


def test_the_probe_sees_a_heavy_import() -> None:
    """A guard for the guard: the worker package does load Faust."""
    assert "faust" in _loaded("streams.worker")
