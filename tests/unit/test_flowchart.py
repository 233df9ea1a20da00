"""The flowchart in docs/ is what users read first: it must name every topic and match its source."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from schemas.topics import ALL_TOPICS

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "docs" / "flowchart" / "aiops-email-rca-flowchart.dot"
SVG = ROOT / "docs" / "aiops-email-rca-flowchart.svg"
PNG = ROOT / "docs" / "aiops-email-rca-flowchart.png"


def _svg_texts(svg: str) -> set[str]:
    """The visible text of an SVG graphviz wrote (one <text> per label line)."""
    texts = re.findall(r"<text[^>]*>([^<]*)</text>", svg)
    return {t.replace("&#45;", "-").replace("&gt;", ">").replace("&lt;", "<").replace("&amp;", "&") for t in texts}


def _topic_nodes(dot: str) -> set[str]:
    """Labels of the note-shaped nodes: the source draws Kafka topics, and only them, as notes."""
    body = dot.split('node [shape=note', 1)[1].split("node [shape=box", 1)[0]
    return set(re.findall(r'label="([^"]+)"', body))


def test_every_topic_is_in_the_flowchart_source() -> None:
    topics = {spec.name for spec in ALL_TOPICS}
    drawn = _topic_nodes(SOURCE.read_text(encoding="utf-8"))
    assert topics - drawn == set(), f"topics missing from {SOURCE.name}: {sorted(topics - drawn)}"
    assert drawn - topics == set(), f"{SOURCE.name} draws topics that do not exist: {sorted(drawn - topics)}"


def test_the_rendered_flowchart_shows_every_topic() -> None:
    texts = _svg_texts(SVG.read_text(encoding="utf-8"))
    missing = {spec.name for spec in ALL_TOPICS} - texts
    assert not missing, f"{SVG.name} is stale (run `make flowchart`): missing {sorted(missing)}"
    assert PNG.stat().st_size > 10_000


def test_the_rendered_flowchart_matches_its_source() -> None:
    if shutil.which("dot") is None:
        if os.environ.get("CI"):
            pytest.fail("graphviz's dot is missing under CI: .ci/system-deps.sh installs it")
        pytest.skip("graphviz's dot is not installed (make system-deps)")
    fresh = subprocess.run(
        ["dot", "-Tsvg", str(SOURCE)], check=True, capture_output=True, text=True, timeout=60
    ).stdout
    assert _svg_texts(fresh) == _svg_texts(SVG.read_text(encoding="utf-8")), (
        f"{SVG.name} does not match {SOURCE.name}: run `make flowchart` and commit both"
    )
