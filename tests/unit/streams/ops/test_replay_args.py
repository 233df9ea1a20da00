"""How `rcaflow replay` reads its window arguments, and what it says when they are wrong."""

from __future__ import annotations

from datetime import UTC, datetime

import click
import pytest

from streams.commands.replay import parse_since
from streams.ops.replay import parse_offsets, shadow_env

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def test_since_takes_a_duration_ago_or_a_time() -> None:
    assert parse_since("2h", now=NOW) == datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
    assert parse_since("90m", now=NOW) == datetime(2026, 11, 25, 10, 30, tzinfo=UTC)
    assert parse_since("1d", now=NOW) == datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
    assert parse_since("2026-11-24T18:00:00Z") == datetime(2026, 11, 24, 18, 0, tzinfo=UTC)
    assert parse_since("2026-11-24T18:00:00") == datetime(2026, 11, 24, 18, 0, tzinfo=UTC)
    with pytest.raises(click.BadParameter, match="neither a duration"):
        parse_since("yesterday")


def test_offsets_are_partition_colon_offset() -> None:
    assert parse_offsets(("0:120", "2:7")) == {0: 120, 2: 7}
    with pytest.raises(click.BadParameter, match="'0-120' is not PARTITION:OFFSET"):
        parse_offsets(("0-120",))


def test_the_shadow_environment_keeps_nothing_that_reaches_the_world(monkeypatch: pytest.MonkeyPatch,
                                                                      tmp_path: object) -> None:
    monkeypatch.setenv("RCAFLOW_NOTIFY__TENANTS__ACME__SLACK__TOKEN", "t")
    monkeypatch.setenv("RCAFLOW_APPROVALS__SLACK_SIGNING_SECRET", "s")
    monkeypatch.setenv("QWEN_API_KEY", "k")
    monkeypatch.setenv("RCAFLOW_EXECUTOR__DRY_RUN", "false")
    env = shadow_env("p.replay-1.", "b:9092", tmp_path, with_llm=False)  # type: ignore[arg-type]
    assert not [k for k in env if k.startswith(("RCAFLOW_NOTIFY__TENANTS__", "RCAFLOW_APPROVALS__"))]
    assert "QWEN_API_KEY" not in env and env["RCAFLOW_LLM__ENABLED"] == "false"
    assert env["RCAFLOW_EXECUTOR__DRY_RUN"] == "true" and env["RCAFLOW_KAFKA__TOPIC_PREFIX"] == "p.replay-1."
    assert shadow_env("p.", "b:9092", tmp_path, with_llm=True)["QWEN_API_KEY"] == "k"  # type: ignore[arg-type]
