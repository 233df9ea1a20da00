"""Signed approval links as a browser uses them: each link names its approver, and the record names them too."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from datetime import timedelta

import pytest
from pydantic import SecretStr

from executors.approvals import LinkSigner
from schemas.records import ActionState, Risk
from streams.notify.links import ApprovalLinkSigner, approval_links, approver_links
from tests.unit.streams.api.approval_env import LINK_SECRET, Env, link, make_env
from tests.unit.streams.approval_helpers import NOW, action


@pytest.fixture
def env() -> Iterator[Env]:
    yield from make_env()


def test_link_page_shows_what_will_run_without_using_the_link(env: Env) -> None:
    url = link(env)
    details = env.client.get(url, headers={"Accept": "application/json"})
    assert details.status_code == 200
    body = details.json()
    assert body["tenant"] == "acme" and body["name"] == "restart etcd member" and body["risk"] == "high"
    assert body["params"] == {"kind": "statefulset", "name": "etcd", "namespace": "kube-system"}
    assert body["expires_at"] == (NOW + timedelta(minutes=30)).isoformat() and body["open"] is True
    assert body["for"] == "link:alice@acme.example"
    assert details.headers["cache-control"] == "no-store"
    page = env.client.get(url)
    assert page.headers["content-type"].startswith("text/html") and 'value="approve"' in page.text
    assert env.publisher.published == []
    assert env.client.post(url, data={"decision": "approve"}).status_code == 200  # still usable


def test_link_page_escapes_untrusted_text(env: Env) -> None:
    env.pending.see(action("act-x", params={"namespace": "<script>alert(1)</script>"}))
    page = env.client.get(link(env, action_id="act-x"))
    assert "<script>" not in page.text and "&lt;script&gt;" in page.text


def test_a_per_approver_link_decides_once_and_the_decision_names_its_approver(env: Env) -> None:
    url = link(env)
    response = env.client.post(url, json={"decision": "reject", "reason": "maintenance window"},
                               headers={"Accept": "application/json"})
    assert response.status_code == 200
    assert response.json() == {"ok": True, "action_id": "act-1", "decision": "reject",
                               "approver": "link:alice@acme.example"}
    [decision] = env.decisions()
    assert (decision.channel, decision.approver, decision.reason) == (
        "link", "link:alice@acme.example", "maintenance window")
    assert decision.claim_id.startswith("link:")
    again = env.client.post(url, json={"decision": "approve"})
    assert again.status_code == 409 and again.json()["reason"] == "replayed"
    assert len(env.decisions()) == 1


def test_a_used_link_is_refused_on_another_replica_that_has_read_the_decision() -> None:
    for a in make_env():
        url = link(a, nonce="the-same-nonce-0123456789")
        assert a.client.post(url, data={"decision": "approve"}).status_code == 200
        published = a.decisions()
    for b in make_env():
        # Same secret, same link; B has read A's decision from the approvals topic, but not yet its action's new state.
        b.claims.see(published[0])
        again = b.client.post(link(b, nonce="the-same-nonce-0123456789"), data={"decision": "reject"})
        assert again.status_code == 409 and again.json()["reason"] == "replayed"
        assert b.publisher.published == []


def test_a_link_past_its_expiry_is_refused_while_the_action_is_still_open() -> None:
    for env in make_env():
        env.pending.see(action("act-long", expires_at=NOW + timedelta(hours=4)))
        url = link(env, action_id="act-long")  # links live 30 minutes
        env.clock.now += timedelta(minutes=31)
        response = env.client.post(url, data={"decision": "approve"})
        assert response.status_code == 410 and response.json()["reason"] == "expired"
        assert env.publisher.published == [] and len(env.rejections) == 1


def test_a_link_of_another_tenant_cannot_decide_this_tenants_action(env: Env) -> None:
    response = env.client.post(link(env, tenant="other", approver="mallory@other.example"),
                               data={"decision": "approve"})
    assert response.status_code == 403 and response.json()["reason"] == "wrong_tenant"
    assert env.publisher.published == []


def test_a_link_naming_another_tenant_is_refused_even_for_an_approver_of_the_actions_tenant(env: Env) -> None:
    """Signed for tenant other (B's route) but pointing at acme's action: refused although alice approves acme."""
    response = env.client.post(link(env, tenant="other"), data={"decision": "approve"})
    assert response.status_code == 403 and response.json()["reason"] == "wrong_tenant"
    assert env.publisher.published == []
    [rejection] = env.rejections
    assert rejection.tenant == "acme" and rejection.approver == "link:alice@acme.example"


def test_a_link_sent_to_someone_no_longer_an_approver_is_refused(env: Env) -> None:
    response = env.client.post(link(env, approver="bob@acme.example"), data={"decision": "approve"})
    assert response.status_code == 403 and response.json()["reason"] == "unknown_approver"
    assert env.publisher.published == []


def test_a_forged_link_is_401(env: Env) -> None:
    forged = ApprovalLinkSigner(SecretStr("another-secret-that-is-32-bytes-long!")).issue(
        "acme", "act-1", now=NOW, approver="alice@acme.example")
    response = env.client.post(f"/approvals/link/{forged}", data={"decision": "approve"})
    assert response.status_code == 401 and env.publisher.published == []


def test_a_per_approver_link_cannot_be_readdressed_or_made_anonymous(env: Env) -> None:
    token = env.signer.issue("acme", "act-1", now=NOW, approver="carol@acme.example")
    version, payload, mac = token.split(".")
    text = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)).decode()
    readdressed = base64.urlsafe_b64encode(text.replace("carol@", "alice@").encode()).rstrip(b"=").decode()
    for forged in (f"{version}.{readdressed}.{mac}", f"v1.{payload}.{mac}"):
        response = env.client.post(f"/approvals/link/{forged}", data={"decision": "approve"})
        assert response.status_code in (400, 401), response.text
    assert env.publisher.published == []


def test_an_anonymous_link_cannot_decide_what_the_policy_does_not_mark_anonymous(env: Env) -> None:
    response = env.client.post(link(env, approver=None), data={"decision": "approve"})
    assert response.status_code == 403 and response.json()["reason"] == "unknown_approver"
    assert "does not allow anonymous approval" in response.json()["detail"]
    assert env.publisher.published == []
    [rejection] = env.rejections
    assert rejection.tenant == "acme" and rejection.action_id == "act-1"


def test_an_anonymous_link_decides_what_the_policy_marks_anonymous_and_the_record_says_so() -> None:
    for env in make_env(anonymous=frozenset({"silence alert"})):
        env.pending.see(action("act-quiet", risk=Risk.LOW).model_copy(update={"name": "silence alert"}))
        response = env.client.post(link(env, action_id="act-quiet", approver=None), data={"decision": "approve"})
        assert response.status_code == 200, response.text
        [decision] = env.decisions()
        assert decision.approver == "link:anonymous"


def test_with_an_identity_header_only_listed_approvers_decide() -> None:
    for env in make_env(identity_header="X-Forwarded-Email"):
        url = link(env, approver=None)
        nobody = env.client.post(url, data={"decision": "approve"})
        assert nobody.status_code == 403 and nobody.json()["reason"] == "unknown_approver"
        mallory = env.client.post(url, data={"decision": "approve"}, headers={"X-Forwarded-Email": "mallory@x.io"})
        assert mallory.status_code == 403
        alice = env.client.post(url, data={"decision": "approve"},
                                headers={"X-Forwarded-Email": "alice@acme.example"})
        assert alice.status_code == 200
        assert [d.approver for d in env.decisions()] == ["link:alice@acme.example"]


def test_with_an_identity_header_a_per_approver_link_is_only_for_its_approver() -> None:
    for env in make_env(identity_header="X-Forwarded-Email"):
        url = link(env)  # sent to alice
        carol = env.client.post(url, data={"decision": "approve"}, headers={"X-Forwarded-Email": "carol@acme.example"})
        assert carol.status_code == 403 and "sent to link:alice@acme.example" in carol.json()["detail"]
        assert env.publisher.published == []


def test_the_notification_gets_one_link_per_link_approver_of_the_tenant() -> None:
    signer = ApprovalLinkSigner(LINK_SECRET)
    actions = [action(), action("act-2", state=ActionState.APPROVED), action("act-o", tenant="other")]
    approvers = {"acme": ["slack:U1", "link:alice@acme.example", "link:carol@acme.example"], "other": []}
    links = approver_links(signer, "https://rcaflow.example/", actions, NOW, approvers)
    assert sorted(links) == ["act-1", "act-o"] and links["act-o"] == {}
    assert sorted(links["act-1"]) == ["link:alice@acme.example", "link:carol@acme.example"]
    for person, url in links["act-1"].items():
        token = url.removeprefix("https://rcaflow.example/approvals/link/")
        assert f"link:{signer.read(token, now=NOW).approver}" == person


def test_anonymous_approval_links_cover_only_waiting_actions() -> None:
    actions = [action(), action("act-2", state=ActionState.APPROVED)]
    links = approval_links(LinkSigner(LINK_SECRET), "https://rcaflow.example/", actions, NOW)
    assert list(links) == ["act-1"]
    assert links["act-1"].startswith("https://rcaflow.example/approvals/link/v1.")


def test_nobody_can_pose_as_the_anonymous_link(env: Env) -> None:
    """``link:anonymous`` is how a link naming nobody decides; no SSO login or link may claim that name."""
    with pytest.raises(ValueError):
        env.signer.issue("acme", "act-1", now=NOW, approver="anonymous")
    for proxied in make_env(identity_header="X-Forwarded-Email"):
        response = proxied.client.post(link(proxied, approver=None), data={"decision": "approve"},
                                       headers={"X-Forwarded-Email": "anonymous"})
        assert response.status_code == 403 and proxied.publisher.published == []


def test_an_anonymous_link_past_its_expiry_is_refused_while_the_action_is_still_open() -> None:
    for env in make_env(anonymous=frozenset({"silence alert"})):
        quiet = action("act-quiet", risk=Risk.LOW, expires_at=NOW + timedelta(hours=4))
        env.pending.see(quiet.model_copy(update={"name": "silence alert"}))
        url = link(env, action_id="act-quiet", approver=None)  # links live 30 minutes
        env.clock.now += timedelta(minutes=31)
        response = env.client.post(url, data={"decision": "approve"})
        assert response.status_code == 410 and response.json()["reason"] == "expired"
        assert env.publisher.published == []
