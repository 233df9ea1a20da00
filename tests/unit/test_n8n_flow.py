"""deploy/n8n/n8n-flow.json must import into n8n and send rcaflow what its API takes.

The shape checked here is n8n's workflow export (name, nodes with id/name/type/typeVersion/position/
parameters, connections keyed by node name with `main` outputs as lists of lists); the Code node's
JavaScript is run in Node.js on sample mails and its output must be a valid POST /events body.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from producers.seed_event import SeedEvent
from streams.api.app import CORE_BODY_LIMITS

FLOW_FILE = Path(__file__).resolve().parents[2] / "deploy" / "n8n" / "n8n-flow.json"
FLOW: dict[str, Any] = json.loads(FLOW_FILE.read_text(encoding="utf-8"))
NODES: dict[str, dict[str, Any]] = {node["name"]: node for node in FLOW["nodes"]}

#: Node types the flow may use, with the typeVersions of n8n 1.x that define the parameters it sets.
KNOWN_TYPES: dict[str, set[float]] = {
    "n8n-nodes-base.webhook": {2},
    "n8n-nodes-base.emailReadImap": {2},
    "n8n-nodes-base.httpRequest": {4.2},
    "n8n-nodes-base.if": {2},
    "n8n-nodes-base.respondToWebhook": {1.1},
    "n8n-nodes-base.code": {2},
    "n8n-nodes-base.stopAndError": {1},
}
TRIGGERS = {"n8n-nodes-base.webhook", "n8n-nodes-base.emailReadImap"}


def test_the_flow_has_the_shape_n8n_imports() -> None:
    assert isinstance(FLOW["name"], str) and FLOW["name"]
    assert FLOW["settings"] == {"executionOrder": "v1"}
    ids = [node["id"] for node in FLOW["nodes"]]
    assert len(set(ids)) == len(ids), "node ids must be unique"
    assert len(NODES) == len(FLOW["nodes"]), "node names must be unique: connections refer to them"
    for node in FLOW["nodes"]:
        assert set(node) >= {"id", "name", "type", "typeVersion", "position", "parameters"}, node["name"]
        assert node["typeVersion"] in KNOWN_TYPES.get(node["type"], set()), (node["name"], node["type"])
        x, y = node["position"]
        assert isinstance(x, int | float) and isinstance(y, int | float)
        assert isinstance(node["parameters"], dict)


def test_connections_join_existing_nodes_and_every_node_is_reached_from_a_trigger() -> None:
    reached = {name for name, node in NODES.items() if node["type"] in TRIGGERS}
    frontier = list(reached)
    for source, outputs in FLOW["connections"].items():
        assert source in NODES, f"connection from unknown node {source!r}"
        assert set(outputs) == {"main"}
        for branch in outputs["main"]:
            for edge in branch:
                assert edge["node"] in NODES and edge["type"] == "main" and edge["index"] == 0
    while frontier:
        for branch in FLOW["connections"].get(frontier.pop(), {}).get("main", []):
            for edge in branch:
                if edge["node"] not in reached:
                    reached.add(edge["node"])
                    frontier.append(edge["node"])
    assert reached == set(NODES), f"unreachable nodes: {sorted(set(NODES) - reached)}"


def test_requests_go_to_rcaflow_routes_with_the_tenant_token_from_an_n8n_credential() -> None:
    posts = [n for n in NODES.values() if n["type"] == "n8n-nodes-base.httpRequest"]
    assert {p["parameters"]["url"].rsplit("/", 1)[1] for p in posts} == {"webhook", "events"}
    for post in posts:
        params = post["parameters"]
        path = "/" + params["url"].rsplit("/", 1)[1]
        assert path in CORE_BODY_LIMITS, f"{post['name']} posts to {path}, not an rcaflow intake route"
        assert params["method"] == "POST"
        assert (params["authentication"], params["genericAuthType"]) == ("genericCredentialType", "httpHeaderAuth")
        assert set(post["credentials"]) == {"httpHeaderAuth"}
        # rcaflow answers 4xx/503 with a reason: the flow must see it, not fail opaquely.
        assert params["options"]["response"]["response"] == {"fullResponse": True, "neverError": True}
    text = FLOW_FILE.read_text(encoding="utf-8").lower()
    assert "bearer " not in text.replace("'bearer <the tenant's token>'", ""), "no token in the flow file"


def test_alertmanager_gets_rcaflows_status_back_so_it_retries_a_503_and_stops_on_a_4xx() -> None:
    webhook = NODES["Alertmanager webhook"]
    assert webhook["parameters"]["responseMode"] == "responseNode"
    check = FLOW["connections"]["Accepted by rcaflow?"]["main"]
    accepted, refused = (NODES[branch[0]["node"]] for branch in check)
    assert accepted["parameters"]["options"]["responseCode"] == 202
    assert refused["parameters"]["options"]["responseCode"] == "={{ $json.statusCode }}"


MAILS = [
    {"subject": "[FIRING:1] PrometheusRemoteWriteBehind (prometheus k8s)", "messageId": "<a@example.com>",
     "text": "alertname = PrometheusRemoteWriteBehind\nseverity = critical\nnamespace: insight-system\n"
             "pod: prometheus-0\ncluster: kpanda-global\n"},
    {"subject": "【告警】日志泛滥", "messageId": "<b@example.com>",
     "text": "告警级别：严重\nseverity：严重\nnamespace：demo\npod：web-7d9f\n说明：日志量过大"},
    {"subject": "", "text": ""},
    {"subject": "x" * 5000, "text": "\n".join(f"k{i}: v" for i in range(300)) + "\nbad key with spaces: v\n"},
]


@pytest.mark.parametrize("mail", MAILS, ids=["alertmanager", "chinese", "empty", "huge"])
def test_the_code_node_turns_a_mail_into_a_valid_event(mail: dict[str, Any]) -> None:
    node = shutil.which("node")
    if node is None:
        if os.environ.get("CI"):
            pytest.fail("Node.js is missing under CI")
        pytest.skip("Node.js is not installed")
    code = NODES["Mail to rcaflow event"]["parameters"]["jsCode"]
    runner = ("const f = new Function('$json', process.argv[1]);"
              "process.stdout.write(JSON.stringify(f(JSON.parse(process.argv[2]))));")
    out = subprocess.run([node, "-e", runner, code, json.dumps(mail)], check=True, capture_output=True,
                         text=True, timeout=30).stdout
    event = SeedEvent.model_validate(json.loads(out)["json"])
    if mail["subject"].startswith("[FIRING"):
        assert event.alert == "PrometheusRemoteWriteBehind" and event.severity == "P2"
        assert event.labels["namespace"] == "insight-system" and event.labels["pod"] == "prometheus-0"
    if mail["subject"] == "【告警】日志泛滥":
        assert event.alert == "日志泛滥" and event.severity == "P2" and event.labels["pod"] == "web-7d9f"
