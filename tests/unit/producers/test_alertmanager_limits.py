"""Label and annotation caps of the Alertmanager webhook (schemas/limits.py)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from producers.alertmanager import LabelTooLargeError, WebhookBody, webhook_to_events
from schemas.limits import ANNOTATION_TRUNCATED_MARKER, MAX_LABEL_VALUE_BYTES


def _body(labels: dict[str, str], annotations: dict[str, str] | None = None) -> WebhookBody:
    return WebhookBody.model_validate({"alerts": [
        {"labels": {"alertname": "VMInsertWriteErrors", "namespace": "insight-system"}},
        {"labels": labels, "annotations": annotations or {}},
    ]})


def test_a_label_over_the_cap_is_refused_naming_the_alert_and_label() -> None:
    body = _body({"alertname": "X", "pod": "p" * (MAX_LABEL_VALUE_BYTES + 1)})
    with pytest.raises(LabelTooLargeError) as refused:
        webhook_to_events(body, tenant="acme", received_at=datetime.now(UTC))
    assert refused.value.status == 413
    assert "alert 1" in refused.value.message and "'pod'" in refused.value.message
    assert str(MAX_LABEL_VALUE_BYTES) in refused.value.message
    assert "ppppp" not in refused.value.message  # the value itself is not echoed


def test_a_label_at_the_cap_is_taken_whole() -> None:
    value = "é" * (MAX_LABEL_VALUE_BYTES // 2)  # 2 bytes each: exactly the cap
    (_, event) = webhook_to_events(_body({"alertname": "X", "pod": value}), tenant="acme",
                                   received_at=datetime.now(UTC))
    assert event.labels["pod"] == value


def test_a_long_annotation_is_cut_with_a_marker_saying_how_much() -> None:
    description = "磁盘写入失败。" * 2000  # 42 000 bytes of UTF-8
    (_, event) = webhook_to_events(_body({"alertname": "X"}, {"description": description, "summary": "short"}),
                                   tenant="acme", received_at=datetime.now(UTC))
    cut = event.annotations["description"]
    assert len(cut.encode("utf-8")) <= MAX_LABEL_VALUE_BYTES
    kept, _, tail = cut.partition(ANNOTATION_TRUNCATED_MARKER)
    assert description.startswith(kept) and kept
    assert tail == f"{len(description.encode()) - len(kept.encode())} bytes]"
    assert event.annotations["summary"] == "short"
