"""Routing fields from real-world alert mail headers (charsets, encodings, missing ids)."""

from __future__ import annotations

import base64

from producers.imap.headers import derived_message_id, parse_headers


def b64word(text: str, charset: str) -> bytes:
    return b"=?" + charset.encode() + b"?B?" + base64.b64encode(text.encode(charset)) + b"?="


def test_gb2312_encoded_words() -> None:
    raw = (
        b"From: "
        + b64word("运维", "gb2312")
        + b" <Insight@DCE.example.com>\r\nSubject: "
        + b64word("控制集群告警", "gb2312")
        + b"\r\n\r\n"
    )
    head = parse_headers(raw)
    assert head.subject == "控制集群告警"
    assert head.sender == "insight@dce.example.com"


def test_utf8_quoted_printable_words_next_to_plain_text() -> None:
    head = parse_headers(b"Subject: =?UTF-8?Q?=E5=91=8A=E8=AD=A6?= etcd latency\r\n\r\n")
    assert head.subject == "告警 etcd latency"


def test_raw_8bit_gb18030_subject_is_recovered() -> None:
    head = parse_headers(b"Subject: " + "日志泛滥 log flood".encode("gb18030") + b"\r\n\r\n")
    assert head.subject == "日志泛滥 log flood"


def test_raw_8bit_utf8_subject_is_recovered() -> None:
    head = parse_headers(b"Subject: " + "vminsert 写入错误".encode() + b"\r\n\r\n")
    assert head.subject == "vminsert 写入错误"


def test_folded_message_id_is_unfolded() -> None:
    head = parse_headers(b"Message-ID:\r\n <1795600798703498597.7106051513621363225@vm>\r\n\r\n")
    assert head.message_id == "<1795600798703498597.7106051513621363225@vm>"


def test_missing_headers_are_none() -> None:
    head = parse_headers(b"X-Other: 1\r\n\r\nbody")
    assert (head.message_id, head.sender, head.subject) == (None, None, None)


def test_absurd_message_id_is_hashed_to_a_sane_key() -> None:
    head = parse_headers(b"Message-ID: <" + b"a" * 5000 + b"@x>\r\n\r\n")
    assert head.message_id is not None
    assert head.message_id.startswith("sha256:")
    assert len(head.message_id) == len("sha256:") + 64


def test_derived_id_is_stable_and_content_addressed() -> None:
    assert derived_message_id(b"mail") == derived_message_id(b"mail")
    assert derived_message_id(b"mail") != derived_message_id(b"mail2")
