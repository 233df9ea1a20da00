"""The metric names of an alert's expression are read by tokenising it: never run, never compiled as a regex."""

from __future__ import annotations

from urllib.parse import quote

import pytest

from policies.alert_expression import MAX_EXPRESSION_CHARS, alert_metric_names, expressions_in_url, metric_names


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ("rate(vm_rows_ignored_total[5m]) > 0", {"vm_rows_ignored_total"}),
        # Functions, label names in selectors and grouping lists, strings, durations and keywords are no metrics.
        ('sum by (job, instance) (increase(vmalert_recording_rules_errors_total{job=~"vm.*", group!="x"}[5m])) > 0',
         {"vmalert_recording_rules_errors_total"}),
        ("sum(increase(x_total[5m])) without(id) > 0", {"x_total"}),
        ("a - ignoring(remote_name, url) group_right b", {"a", "b"}),
        ("a * on(instance) group_left(node) b offset 5m", {"a", "b"}),
        ('label_replace(up, "dst", "$1", "instance", "(.*):.*")', {"up"}),
        ("histogram_quantile(0.99, sum by (le) (rate(h_bucket[5m]))) > 1e3", {"h_bucket"}),
        ('{__name__="vm_rows_ignored_total", job="x"}', {"vm_rows_ignored_total"}),
        ("count(up == bool 0) and on() vector(1)", {"up"}),
        ("sum(rate(a:b:rate5m[5m])) # a comment naming c_total", {"a:b:rate5m"}),
    ],
)
def test_metric_names_of_an_expression(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names


def test_garbage_and_unterminated_text_is_harmless() -> None:
    assert metric_names('rate(x{a="unterminated') == {"x"}
    assert metric_names("}}}))]]((([[[{{{") == frozenset()
    huge = "a_total + " * (MAX_EXPRESSION_CHARS // 4)
    assert metric_names(huge) == {"a_total"}


def test_expressions_in_prometheus_vmui_and_grafana_links() -> None:
    assert expressions_in_url("http://p:9090/graph?g0.expr=" + quote("up == 0") + "&g0.tab=1&g1.expr=x") == [
        "up == 0", "x"]
    assert expressions_in_url("http://vmalert/vmui/#/?g0.expr=" + quote("rate(y[5m])")) == ["rate(y[5m])"]
    left = quote('{"queries":[{"expr":"rate(z[1m])","refId":"A"}]}')
    assert expressions_in_url(f"http://grafana/explore?left={left}") == ["rate(z[1m])"]
    assert expressions_in_url("http://grafana/explore?left=%7Bnot-json") == []
    compact = quote('["now-1h","now","VictoriaMetrics",{"expr":"up == 0"},{"mode":"Metrics"}]')
    assert expressions_in_url(f"http://grafana/explore?orgId=1&left={compact}") == ["up == 0"]
    panes = quote('{"a1":{"datasource":"vm","queries":[{"refId":"A","expr":"rate(q[5m])"}]}}')
    assert expressions_in_url(f"http://grafana/explore?panes={panes}") == ["rate(q[5m])"]
    assert expressions_in_url("http://vmalert:8880/vmalert/alert?group_id=1&alert_id=2") == []


def test_alert_metric_names_reads_the_generator_url_and_expression_annotations() -> None:
    notes = {"generatorURL": "http://p/graph?g0.expr=" + quote("rate(a_total[5m])"), "expr": "b_total > 0",
             "description": "c_total is not read from prose"}
    assert alert_metric_names(notes) == {"a_total", "b_total"}
