"""Approval signatures: Slack v0 (Slack's published vector), DingTalk robot signing, our approval links."""

from __future__ import annotations

import base64
import hashlib
import hmac
import urllib.parse
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import SecretStr

from executors.approvals import (
    InMemoryNonceStore,
    LinkSigner,
    SignatureError,
    SignatureFailure,
    dingtalk_sign,
    dingtalk_signed_url,
    slack_signature,
    verify_dingtalk_callback,
    verify_slack_signature,
)

# Slack's documented example (https://api.slack.com/authentication/verifying-requests-from-slack).
SLACK_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
SLACK_TS = "1531420618"
SLACK_BODY = (
    b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V"
    b"&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text="
    b"&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN"
    b"&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"
)
SLACK_SIG = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"


def slack(**overrides: object) -> None:
    kwargs: dict[str, object] = {"signing_secret": SecretStr(SLACK_SECRET), "timestamp": SLACK_TS,
                                 "signature": SLACK_SIG, "body": SLACK_BODY, "now": int(SLACK_TS) + 30}
    kwargs.update(overrides)
    verify_slack_signature(**kwargs)  # type: ignore[arg-type]


def test_slack_published_vector_verifies() -> None:
    assert slack_signature(SLACK_SECRET, SLACK_TS, SLACK_BODY) == SLACK_SIG
    slack()
    slack(now=int(SLACK_TS) + 300)


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"signature": None}, SignatureFailure.MISSING),
        ({"timestamp": ""}, SignatureFailure.MISSING),
        ({"timestamp": "15314206l8"}, SignatureFailure.MALFORMED),
        ({"timestamp": "１５３１４２０６１８"}, SignatureFailure.MALFORMED),
        ({"signature": "v1=" + SLACK_SIG[3:]}, SignatureFailure.MALFORMED),
        ({"now": int(SLACK_TS) + 301}, SignatureFailure.STALE),
        ({"now": int(SLACK_TS) - 301}, SignatureFailure.STALE),
        ({"body": SLACK_BODY + b"&x=1"}, SignatureFailure.MISMATCH),
        ({"signing_secret": "another-secret"}, SignatureFailure.MISMATCH),
        ({"signature": SLACK_SIG[:-1] + "d"}, SignatureFailure.MISMATCH),
        ({"signature": "v0=ünïcode"}, SignatureFailure.MISMATCH),
    ],
)
def test_slack_refusals_say_why(overrides: dict[str, object], reason: SignatureFailure) -> None:
    with pytest.raises(SignatureError) as caught:
        slack(**overrides)
    assert caught.value.reason is reason and not caught.value.retriable
    assert SLACK_SECRET not in str(caught.value)


def documented_dingtalk_sign(secret: str, timestamp: int) -> str:
    """DingTalk's published Python recipe for custom robots, written out independently."""
    string_to_sign = f"{timestamp}\n{secret}"
    code = hmac.new(secret.encode(), string_to_sign.encode(), digestmod=hashlib.sha256).digest()
    return urllib.parse.quote_plus(base64.b64encode(code))


DING_SECRET = "SEC0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcd"
DING_TS = 1764064800000


def test_dingtalk_sign_follows_the_documented_recipe() -> None:
    assert dingtalk_sign(DING_SECRET, DING_TS) == documented_dingtalk_sign(DING_SECRET, DING_TS)
    assert dingtalk_sign(SecretStr(DING_SECRET), DING_TS) == documented_dingtalk_sign(DING_SECRET, DING_TS)


def test_dingtalk_signed_url_keeps_the_token_and_adds_timestamp_and_sign() -> None:
    url = dingtalk_signed_url("https://oapi.dingtalk.com/robot/send?access_token=abc&sign=old", DING_SECRET, DING_TS)
    parts = urllib.parse.urlsplit(url)
    query = urllib.parse.parse_qs(parts.query)
    assert parts.netloc == "oapi.dingtalk.com" and parts.path == "/robot/send"
    assert query == {
        "access_token": ["abc"],
        "timestamp": [str(DING_TS)],
        "sign": [urllib.parse.unquote_plus(documented_dingtalk_sign(DING_SECRET, DING_TS))],
    }
    assert f"sign={documented_dingtalk_sign(DING_SECRET, DING_TS)}" in url


def test_dingtalk_callback_verification() -> None:
    raw = urllib.parse.unquote_plus(documented_dingtalk_sign(DING_SECRET, DING_TS))
    verify_dingtalk_callback(app_secret=DING_SECRET, timestamp=str(DING_TS), sign=raw, now_ms=DING_TS + 1000)
    cases = [
        ({"sign": None}, SignatureFailure.MISSING),
        ({"timestamp": "soon"}, SignatureFailure.MALFORMED),
        ({"now_ms": DING_TS + 3600 * 1000 + 1}, SignatureFailure.STALE),
        ({"sign": raw[:-2] + "A="}, SignatureFailure.MISMATCH),
        ({"app_secret": "other"}, SignatureFailure.MISMATCH),
    ]
    for change, reason in cases:
        kwargs: dict[str, object] = {"app_secret": DING_SECRET, "timestamp": str(DING_TS), "sign": raw,
                                     "now_ms": DING_TS + 1000, **change}
        with pytest.raises(SignatureError) as caught:
            verify_dingtalk_callback(**kwargs)  # type: ignore[arg-type]
        assert caught.value.reason is reason, change


LINK_KEY = SecretStr("k" * 32)
NOW = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)


def test_approval_link_round_trip_and_single_use() -> None:
    signer = LinkSigner(LINK_KEY, ttl=timedelta(minutes=30))
    token = signer.issue("acme", "act-42", now=NOW)
    assert "|" not in token and all(c.isalnum() or c in "._-" for c in token)
    store = InMemoryNonceStore()
    claims = signer.redeem(token, now=NOW + timedelta(minutes=5), store=store, tenant="acme")
    assert (claims.tenant, claims.action_id) == ("acme", "act-42")
    assert claims.expires_at == NOW + timedelta(minutes=30)
    with pytest.raises(SignatureError) as caught:
        signer.redeem(token, now=NOW + timedelta(minutes=6), store=store)
    assert caught.value.reason is SignatureFailure.REPLAYED


def refusal(fn: object, *args: object, **kwargs: object) -> SignatureFailure:
    with pytest.raises(SignatureError) as caught:
        fn(*args, **kwargs)  # type: ignore[operator]
    return caught.value.reason


def test_approval_link_refusals() -> None:
    signer = LinkSigner(LINK_KEY)
    store = InMemoryNonceStore()
    token = signer.issue("acme", "act-42", now=NOW)
    version, payload, mac = token.split(".")
    forged_payload = base64.urlsafe_b64encode(
        base64.urlsafe_b64decode(payload + "==").replace(b"act-42", b"act-99")
    ).rstrip(b"=").decode()
    assert refusal(signer.redeem, f"{version}.{forged_payload}.{mac}", now=NOW, store=store) \
        is SignatureFailure.MISMATCH
    assert refusal(LinkSigner(SecretStr("x" * 32)).redeem, token, now=NOW, store=store) is SignatureFailure.MISMATCH
    assert refusal(signer.redeem, token, now=NOW + timedelta(minutes=30), store=store) is SignatureFailure.EXPIRED
    assert refusal(signer.redeem, token, now=NOW, store=store, tenant="globex") is SignatureFailure.WRONG_TENANT
    assert refusal(signer.redeem, "garbage", now=NOW, store=store) is SignatureFailure.MALFORMED
    assert refusal(signer.redeem, "v2." + token[3:], now=NOW, store=store) is SignatureFailure.MALFORMED
    # None of the refused attempts used the token up.
    assert signer.redeem(token, now=NOW, store=store).action_id == "act-42"


def test_reading_a_link_does_not_use_it_up() -> None:
    signer = LinkSigner(LINK_KEY)
    store = InMemoryNonceStore()
    token = signer.issue("acme", "act-1", now=NOW)
    assert signer.read(token, now=NOW).action_id == "act-1"
    assert signer.redeem(token, now=NOW, store=store).action_id == "act-1"


def test_link_fields_cannot_smuggle_the_separator_and_keys_must_be_long() -> None:
    signer = LinkSigner(LINK_KEY)
    with pytest.raises(ValueError, match="tenant"):
        signer.issue("acme|globex", "act-1", now=NOW)
    with pytest.raises(ValueError, match="action_id"):
        signer.issue("acme", "act\n1", now=NOW)
    with pytest.raises(ValueError, match="32 bytes"):
        LinkSigner(SecretStr("short"))
