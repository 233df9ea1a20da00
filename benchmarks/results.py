"""benchmarks/results.json holds one entry per benchmark; each run replaces only its own entry."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results.json"


def write_results(key: str, value: Any, out: Path = RESULTS) -> None:
    data: dict[str, Any] = {}
    if out.exists():
        try:
            data = json.loads(out.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            data = {}
    data[key] = value
    out.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
