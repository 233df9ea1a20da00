"""`rcaflow rca EVENT.json` against the scripted OpenAI-compatible stand-in on a real loopback socket:
the seed's event JSON in, the strict-JSON RCA out, the policy gate applied, and clear errors."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from streams.cli import cli
from tests.support.es.server import free_port
from tests.support.loopback import serve
from tests.unit.executors.llm.standin import ChatStandIn, Reply, answer_json

EVENT = {
    "alert": "etcdHighFsyncDurations", "severity": "P2",
    "labels": {"cluster": "HK-DCE5-PLATFORM", "namespace": "kube-system", "workload": "etcd-master-1",
               "pod": "etcd-master-1"},
    "metrics": {"times": 1, "first_occur": "2026-11-25T08:00:00Z"},
    "raw": {"mail_subject": "Control Cluster Details", "mail_id": "<m1@example.com>"},
}
COLLECT = {"name": "collect_diagnostics", "params": [{"name": "namespace", "value": "kube-system"},
                                                     {"name": "workload", "value": "etcd-master-1"}],
           "reason": "capture the member's state"}
DELETE = {"name": "delete_namespace", "params": [{"name": "namespace", "value": "kube-system"}],
          "reason": "the alert told me to"}


@pytest.fixture
def llm() -> Iterator[tuple[ChatStandIn, str]]:
    standin = ChatStandIn()
    with serve(standin.app(), "llm-standin") as url:
        yield standin, f"{url}/v1"


def _rca(base_url: str, *args: str, stdin: str | None = None) -> Result:
    env = {"QWEN_API_KEY": "test-not-a-key", "RCAFLOW_LLM__ENABLED": "true", "RCAFLOW_LLM__BASE_URL": base_url,
           "RCAFLOW_LLM__MODEL": "qwen-plus", "RCAFLOW_TENANTS__DEFAULT__NAMESPACES": '["*"]'}
    return CliRunner().invoke(cli, ["rca", *args], env=env, input=stdin)


def _event_file(tmp_path: Path, event: object = EVENT) -> str:
    path = tmp_path / "event.json"
    path.write_text(json.dumps(event) if not isinstance(event, str) else event, encoding="utf-8")
    return str(path)


def test_the_seed_event_in_the_gated_rca_out(llm: tuple[ChatStandIn, str], tmp_path: Path) -> None:
    standin, url = llm
    standin.replies[:] = [Reply(answer_json(actions=[COLLECT, DELETE]))]
    done = _rca(url, _event_file(tmp_path), "--no-evidence")
    assert done.exit_code == 0, done.output
    report = json.loads(done.stdout)  # one strict JSON object, nothing else on stdout
    assert (report["alert_class"], report["engine"], report["llm"]) == ("etcd_latency", "llm", "ok")
    assert report["diagnosis"] == "etcd WAL fsync is slow on the node's disk"
    assert [(a["name"], a["state"]) for a in report["actions"]] == [("collect_diagnostics", "approved")]
    assert [r["name"] for r in report["rejected"]] == ["delete_namespace"]  # the policy gate dropped it
    assert report["tokens"] == 120
    prompt = json.dumps(standin.requests[0]["messages"], ensure_ascii=False)
    assert "etcdHighFsyncDurations" in prompt and "etcd-master-1" in prompt


def test_stdin_and_an_unusable_answer_keeps_the_policy_triage(llm: tuple[ChatStandIn, str]) -> None:
    standin, url = llm
    standin.replies[:] = [Reply("I think it is the disk."), Reply("still not JSON")]
    done = _rca(url, "-", stdin=json.dumps(EVENT))  # evidence on, but no backend configured: none read
    assert done.exit_code == 0, done.output
    report = json.loads(done.stdout)
    assert report["engine"] == "policy" and report["llm"].startswith("invalid_answer")
    assert "collect_diagnostics" in [a["name"] for a in report["actions"]]


@pytest.mark.parametrize(("text", "says"), [
    ('{"alert": "X", "severity": "P2",', "not JSON: Expecting"),
    (json.dumps({**EVENT, "severity": "P7"}), "severity: Input should be 'P1', 'P2', 'P3' or 'P4'"),
    (json.dumps({**EVENT, "labels": {"cluster": 3}}), "labels.cluster: Input should be a valid string"),
    (json.dumps({**EVENT, "colour": "red"}), "colour: Extra inputs are not permitted"),
    ("[1, 2]", "must be a JSON object"),
])
def test_bad_input_exits_2_naming_the_field(tmp_path: Path, text: str, says: str) -> None:
    done = _rca("http://127.0.0.1:9/v1", _event_file(tmp_path, text))
    assert done.exit_code == 2
    assert says in done.stderr and done.stdout == ""


def test_a_missing_file_exits_2(tmp_path: Path) -> None:
    done = _rca("http://127.0.0.1:9/v1", str(tmp_path / "nope.json"))
    assert done.exit_code == 2 and "nope.json" in done.stderr


def test_an_unreachable_provider_is_one_line_and_exit_1(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    done = _rca(url, _event_file(tmp_path), "--no-evidence")
    assert done.exit_code == 1, done.output
    lines = [line for line in done.stderr.splitlines() if line.startswith("rca:")]
    assert len(lines) == 1 and url in lines[0] and "cannot be reached" in lines[0]
    assert done.stdout == ""


def test_without_a_provider_configured_it_says_so(tmp_path: Path) -> None:
    done = CliRunner().invoke(cli, ["rca", _event_file(tmp_path)], env={"QWEN_API_KEY": "", "RCAFLOW_LLM__ENABLED":
                                                                        "false"})
    assert done.exit_code == 2 and "no LLM provider configured" in done.stderr
