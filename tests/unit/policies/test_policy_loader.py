"""The policy file loads, and every kind of mistake in it is reported as file:line: field: message."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from policies import DEFAULT_POLICY_FILE, PolicyFileError, PolicySet, load_policies
from schemas.records import Approval, Risk
from tests.unit.policies.policy_samples import REALISTIC

CLASS_IDS = [
    "jenkins_restart",
    "vmalert_config_reload_failure",
    "prometheus_remote_write_behind",
    "prometheus_remote_write_desired_shards",
    "prometheus_remote_storage_failures",
    "log_flood",
    "rule_evaluation_failures",
    "vminsert_write_errors",
    "etcd_latency",
]

# A small valid file; the tests below break one thing at a time. Line numbers matter.
MINIMAL = textwrap.dedent(
    """\
    version: 1
    defaults:
      dedup_window: 30m
      approval_ttl: 1h
      vars:
        namespace: {from: [labels.namespace], format: dns1123_label}
        pod: {from: [labels.pod, labels.workload], format: dns1123_subdomain}
    classes:
      - id: demo
        title: Demo
        runbooks: [https://example.test/runbook]
        match:
          - alerts: [DemoAlert]
        evidence:
          - id: lag
            tool: prom
            operation: query
            query: 'max(lag{namespace="${namespace}"})'
        thresholds:
          - {id: high_lag, expr: 'lag > 120.0'}
        diagnoses:
          - {id: lagging, when: [high_lag], diagnosis: Lagging, confidence: 0.8}
          - {id: fallback, diagnosis: Something, confidence: 0.4}
        actions:
          - name: collect
            tool: diagnostics
            operation: collect
            params:
              namespace: {template: '${namespace}'}
              workload: {template: '${pod}'}
            risk: read
            approval: auto
          - name: restart
            tool: k8s
            operation: delete_pod
            params:
              namespace: {template: '${namespace}'}
              pod: {template: '${pod}'}
            risk: high
            approval: required
    """
)


def _write(tmp_path: Path, text: str, name: str = "policies.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _errors(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(PolicyFileError) as info:
        load_policies(_write(tmp_path, text))
    assert info.value.retriable is False
    return [str(e) for e in info.value.errors]


def test_shipped_file_loads_all_nine_classes(policies: PolicySet) -> None:
    assert [c.id for c in policies.classes] == CLASS_IDS
    assert set(REALISTIC) == set(CLASS_IDS)


def test_default_path_is_the_packaged_file() -> None:
    assert DEFAULT_POLICY_FILE.name == "remediation_policies.yaml"
    assert DEFAULT_POLICY_FILE.is_file()


@pytest.mark.parametrize("class_id", CLASS_IDS)
def test_each_shipped_class_has_an_automatic_and_a_high_risk_action(policies: PolicySet, class_id: str) -> None:
    cls = policies.get(class_id)
    assert cls is not None
    actions = cls.spec.actions
    assert any(a.risk in (Risk.READ, Risk.LOW) and a.approval is Approval.AUTO for a in actions)
    assert any(a.risk is Risk.HIGH and a.approval is Approval.REQUIRED for a in actions)
    assert cls.spec.runbooks and all(url.startswith("https://") for url in cls.spec.runbooks)
    assert cls.spec.evidence, "every class plans evidence"


def test_minimal_file_is_valid(tmp_path: Path) -> None:
    loaded = load_policies(_write(tmp_path, MINIMAL))
    assert [c.id for c in loaded.classes] == ["demo"]


def test_bad_enum_names_file_line_and_field(tmp_path: Path) -> None:
    errors = _errors(tmp_path, MINIMAL.replace("risk: read", "risk: hihg"))
    assert len(errors) == 1
    assert errors[0].startswith("policies.yaml:31: classes[0].actions[0].risk: 'hihg'")
    assert "'read', 'low' or 'high'" in errors[0]


def test_unknown_field_is_reported_where_it_is(tmp_path: Path) -> None:
    errors = _errors(tmp_path, MINIMAL.replace("    title: Demo\n", "    title: Demo\n    titel: typo\n"))
    assert errors == ["policies.yaml:11: classes[0].titel: unknown field (not part of the policy format)"]


def test_missing_field_points_at_its_parent(tmp_path: Path) -> None:
    errors = _errors(tmp_path, MINIMAL.replace("    title: Demo\n", ""))
    assert errors == ["policies.yaml:9: classes[0].title: required field is missing"]


def test_yaml_syntax_error_has_a_line(tmp_path: Path) -> None:
    errors = _errors(tmp_path, MINIMAL.replace("alerts: [DemoAlert]", "alerts: [DemoAlert"))
    assert errors[0].startswith("policies.yaml:")
    assert "not valid YAML" in errors[0]


def test_duplicate_key_is_an_error_not_an_override(tmp_path: Path) -> None:
    errors = _errors(tmp_path, MINIMAL.replace("  approval_ttl: 1h\n", "  approval_ttl: 1h\n  approval_ttl: 2h\n"))
    assert errors == ["policies.yaml:5: defaults.approval_ttl: duplicate key 'approval_ttl'"]


def test_bad_duration(tmp_path: Path) -> None:
    errors = _errors(tmp_path, MINIMAL.replace("dedup_window: 30m", "dedup_window: soon"))
    assert errors[0].startswith("policies.yaml:3: defaults.dedup_window: 'soon'")


def test_cel_syntax_error(tmp_path: Path) -> None:
    errors = _errors(tmp_path, MINIMAL.replace("'lag > 120.0'", "'lag > && 1'"))
    assert errors[0].startswith("policies.yaml:20: classes[0].thresholds[0].expr: CEL syntax error")


def test_cel_unknown_name(tmp_path: Path) -> None:
    errors = _errors(tmp_path, MINIMAL.replace("'lag > 120.0'", "'lagg > 120.0'"))
    assert errors[0].startswith("policies.yaml:20: classes[0].thresholds[0].expr: CEL expression 'lagg > 120.0'")
    assert "unknown name(s) lagg" in errors[0]


def test_precondition_is_compiled_too(tmp_path: Path) -> None:
    text = MINIMAL.replace("    risk: read\n", "    risk: read\n        preconditions: ['os.system(1)']\n")
    errors = _errors(tmp_path, text)
    assert errors[0].startswith("policies.yaml:32: classes[0].actions[0].preconditions[0]:")


def test_bad_regex(tmp_path: Path) -> None:
    text = MINIMAL.replace("- alerts: [DemoAlert]", "- alerts: [DemoAlert]\n        labels: {job: '(unclosed'}")
    errors = _errors(tmp_path, text)
    assert errors[0].startswith("policies.yaml:14: classes[0].match[0].labels.job: invalid regular expression")


def test_template_with_undeclared_variable(tmp_path: Path) -> None:
    errors = _errors(tmp_path, MINIMAL.replace('namespace="${namespace}"', 'namespace="${nmespace}"'))
    assert errors[0].startswith("policies.yaml:18: classes[0].evidence[0].query: unknown variable ${nmespace}")


def test_promql_placeholder_outside_a_string_is_rejected(tmp_path: Path) -> None:
    errors = _errors(tmp_path, MINIMAL.replace('max(lag{namespace="${namespace}"})', "max(${namespace})"))
    assert "must be inside a double-quoted PromQL string" in errors[0]


def test_promql_regex_matcher_requires_re_filter(tmp_path: Path) -> None:
    errors = _errors(tmp_path, MINIMAL.replace('namespace="${namespace}"', 'namespace=~"${namespace}"'))
    assert "must use ${namespace|re}" in errors[0]


def test_unescaped_queries_only_take_name_variables(tmp_path: Path) -> None:
    text = MINIMAL.replace(
        "    pod: {from: [labels.pod, labels.workload], format: dns1123_subdomain}\n",
        "    pod: {from: [labels.pod, labels.workload], format: dns1123_subdomain}\n"
        "    text: {from: [annotations.description], format: safe_text}\n",
    ).replace(
        "    thresholds:\n",
        "      - {id: logs, tool: es, operation: search, query: 'message:\"${text}\"'}\n    thresholds:\n",
    )
    errors = _errors(tmp_path, text)
    assert errors == [
        "policies.yaml:20: classes[0].evidence[1].query: "
        "${text} has format safe_text; only name formats may be used here"
    ]


def test_unknown_tool_operation(tmp_path: Path) -> None:
    errors = _errors(tmp_path, MINIMAL.replace("operation: delete_pod", "operation: exec"))
    assert errors[0].startswith("policies.yaml:35: classes[0].actions[1].operation: unknown tool/operation k8s.exec")


def test_missing_and_extra_action_params(tmp_path: Path) -> None:
    text = MINIMAL.replace("          workload: {template: '${pod}'}\n", "          shell: {value: ls}\n")
    errors = _errors(tmp_path, text)
    assert (
        "policies.yaml:28: classes[0].actions[0].params: missing parameter(s) workload for diagnostics.collect"
        in errors
    )
    assert (
        "policies.yaml:30: classes[0].actions[0].params.shell: diagnostics.collect takes no parameter 'shell'" in errors
    )


def test_high_risk_needs_required_approval(tmp_path: Path) -> None:
    errors = _errors(tmp_path, MINIMAL.replace("approval: required", "approval: auto"))
    assert errors == [
        "policies.yaml:40: classes[0].actions[1].approval: a high-risk action must have approval: required"
    ]


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("- alerts: [DemoAlert]", "- alerts: [etcdHighFsyncDurations]", "restarting etcd is always high risk"),
        ("title: Demo", "title: Demo\n    description: x", None),
        (
            "pod: {template: '${pod}'}\n        risk: high",
            "pod: {value: prometheus-k8s-0}\n        risk: high",
            "restarting prometheus is always high risk",
        ),
    ],
)
def test_restarting_etcd_or_prometheus_is_always_high(tmp_path: Path, old: str, new: str, expected: str | None) -> None:
    text = MINIMAL.replace(old, new)
    text = text.replace("risk: high\n        approval: required", "risk: low\n        approval: auto")
    if expected is None:
        load_policies(_write(tmp_path, text))  # restarting something else may be low risk
        return
    errors = _errors(tmp_path, text)
    assert errors == [f"policies.yaml:39: classes[0].actions[1].risk: {expected}; set risk: high"]


def test_mass_rule_rollback_is_always_high(tmp_path: Path) -> None:
    text = MINIMAL.replace("- name: collect\n", "- name: rollback_all_rules\n")
    text = text.replace("risk: read", "risk: low")
    errors = _errors(tmp_path, text)
    assert errors == [
        "policies.yaml:31: classes[0].actions[0].risk: a mass rule rollback is always high risk; set risk: high"
    ]


def test_kind_must_be_an_allowed_constant(tmp_path: Path) -> None:
    text = MINIMAL.replace(
        "        operation: delete_pod\n        params:\n          namespace: {template: '${namespace}'}\n"
        "          pod: {template: '${pod}'}\n",
        "        operation: rollout_restart\n        params:\n          namespace: {template: '${namespace}'}\n"
        "          kind: {value: cronjob}\n          name: {template: '${pod}'}\n",
    )
    errors = _errors(tmp_path, text)
    assert len(errors) == 1
    assert "classes[0].actions[1].params.kind: 'cronjob' is not a valid dns1123_label in" in errors[0]


def test_free_param_needs_a_default_inside_allowed(tmp_path: Path) -> None:
    text = MINIMAL.replace("workload: {template: '${pod}'}", "workload: {allowed: [a, b], default: c}")
    errors = _errors(tmp_path, text)
    assert any("classes[0].actions[0].params.workload.default: default 'c' is not in allowed" in e for e in errors)


def test_fallback_diagnosis_must_be_last(tmp_path: Path) -> None:
    text = MINIMAL.replace(
        "      - {id: lagging, when: [high_lag], diagnosis: Lagging, confidence: 0.8}\n"
        "      - {id: fallback, diagnosis: Something, confidence: 0.4}\n",
        "      - {id: fallback, diagnosis: Something, confidence: 0.4}\n"
        "      - {id: lagging, when: [high_lag], diagnosis: Lagging, confidence: 0.8}\n",
    )
    errors = _errors(tmp_path, text)
    assert errors == [
        "policies.yaml:21: classes[0].diagnoses: exactly one diagnosis must have no 'when' (the fallback), "
        "and it must be last"
    ]


def test_diagnosis_refers_to_known_thresholds(tmp_path: Path) -> None:
    errors = _errors(tmp_path, MINIMAL.replace("when: [high_lag]", "when: [hi_lag]"))
    assert errors == ["policies.yaml:22: classes[0].diagnoses[0].when[0]: unknown threshold 'hi_lag'"]


def test_unknown_var_format_and_source(tmp_path: Path) -> None:
    text = MINIMAL.replace("format: dns1123_label}", "format: anything}").replace(
        "[labels.pod, labels.workload]", "[labels.pod|rot13]"
    )
    errors = _errors(tmp_path, text)
    assert any(
        e.startswith("policies.yaml:6: defaults.vars.namespace.format: unknown format 'anything'") for e in errors
    )
    assert any(e.startswith("policies.yaml:7: defaults.vars.pod.from[0]: unknown transform 'rot13'") for e in errors)


def test_reserved_and_duplicate_class_ids(tmp_path: Path) -> None:
    body = MINIMAL.split("classes:\n", 1)[1]
    text = MINIMAL + body + body.replace("id: demo", "id: unclassified")
    errors = _errors(tmp_path, text)
    assert any("classes[1].id: duplicate class id 'demo' (first at classes[0])" in e for e in errors)
    assert any("classes[2].id: 'unclassified' is reserved" in e for e in errors)


def test_all_errors_are_reported_at_once(tmp_path: Path) -> None:
    text = MINIMAL.replace("'lag > 120.0'", "'lagg > 1.0'").replace("approval: required", "approval: auto")
    errors = _errors(tmp_path, text)
    assert len(errors) == 2


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(PolicyFileError) as info:
        load_policies(tmp_path / "missing.yaml")
    assert str(info.value).startswith("missing.yaml: cannot read")


def test_automatic_undo_only_for_operations_that_record_an_inverse(tmp_path: Path) -> None:
    text = MINIMAL.replace("        approval: auto\n", "        approval: auto\n        on_failure: undo\n", 1)
    errors = _errors(tmp_path, text)
    assert errors == [
        "policies.yaml:33: classes[0].actions[0].on_failure: diagnostics.collect cannot be undone automatically; "
        "on_failure: undo needs one of k8s.rollout_restart, k8s.scale"
    ]


def test_the_shipped_policy_undoes_failed_vmalert_restarts_and_vminsert_scaling() -> None:
    policies = load_policies(DEFAULT_POLICY_FILE)
    undo = sorted(a.name for c in policies.document.classes for a in c.actions if a.on_failure == "undo")
    assert undo == ["restart_rule_evaluator", "restart_vmalert", "scale_vminsert"]
