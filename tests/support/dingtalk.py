"""A stand-in for DingTalk's side of the encrypted event callback (HTTP push), written from its documented protocol.

It produces what DingTalk sends to a registered callback URL: query ``msg_signature``,
``timestamp`` (ms) and ``nonce``, body ``{"encrypt": ...}`` where ``encrypt`` is base64 of
AES-256-CBC(key = base64(EncodingAESKey + "="), IV = key[:16]) over
``16 random bytes | big-endian uint32 length | message | owner key`` with PKCS#7 padding to 32
bytes, and ``msg_signature`` = hex SHA-1 of the sorted concatenation of token, timestamp, nonce,
encrypt. It also opens the encrypted answer DingTalk expects back. Deliberately independent of
rcaflow's own implementation, so a mistake there cannot hide here.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import string
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes


def new_aes_key() -> str:
    """A random 43-character EncodingAESKey, as the DingTalk console generates (letters and digits)."""
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(43))


@dataclass(frozen=True)
class DingTalkCallbackRequest:
    """One HTTP request DingTalk makes: its query parameters and JSON body."""

    params: dict[str, str]
    body: dict[str, str]

    def url(self, path: str = "/approvals/dingtalk") -> str:
        return path + "?" + "&".join(f"{k}={v}" for k, v in self.params.items())


@dataclass(frozen=True)
class DingTalkStandIn:
    """DingTalk as the app registered with it: callback token, EncodingAESKey and owner key (app key / corp id)."""

    token: str
    aes_key: str
    owner_key: str

    def _key(self) -> bytes:
        return base64.b64decode(self.aes_key + "=")

    def signature(self, timestamp: str, nonce: str, encrypt: str) -> str:
        return hashlib.sha1("".join(sorted([self.token, timestamp, nonce, encrypt])).encode()).hexdigest()

    def encrypt(self, message: str, *, owner_key: str | None = None) -> str:
        data = message.encode("utf-8")
        plain = os.urandom(16) + len(data).to_bytes(4, "big") + data + (owner_key or self.owner_key).encode()
        pad = 32 - len(plain) % 32
        key = self._key()
        enc = Cipher(algorithms.AES(key), modes.CBC(key[:16])).encryptor()
        return base64.b64encode(enc.update(plain + bytes([pad]) * pad) + enc.finalize()).decode()

    def callback(self, event: dict[str, Any], *, at: datetime, owner_key: str | None = None,
                 nonce: str | None = None) -> DingTalkCallbackRequest:
        """The request DingTalk sends for ``event`` at ``at``."""
        timestamp = str(int(at.timestamp() * 1000))
        nonce = nonce or secrets.token_hex(4)
        encrypt = self.encrypt(json.dumps(event, ensure_ascii=False), owner_key=owner_key)
        return DingTalkCallbackRequest(
            params={"msg_signature": self.signature(timestamp, nonce, encrypt), "timestamp": timestamp,
                    "nonce": nonce},
            body={"encrypt": encrypt},
        )

    def robot_reply(self, content: str, *, staff: str, at: datetime, **more: Any) -> DingTalkCallbackRequest:
        """A group member's @-reply to the robot, as an encrypted event."""
        event = {"EventType": "im_robot_message", "msgtype": "text", "text": {"content": content},
                 "senderStaffId": staff, "senderNick": "Alice", "conversationId": "cid1",
                 "msgId": secrets.token_hex(8), **more}
        return self.callback(event, at=at)

    def open_answer(self, answer: dict[str, str]) -> str:
        """Check the signature of the callback's answer and decrypt it (DingTalk wants ``success``)."""
        expected = self.signature(answer["timeStamp"], answer["nonce"], answer["encrypt"])
        if expected != answer["msg_signature"]:
            raise AssertionError("answer msg_signature does not verify")
        key = self._key()
        dec = Cipher(algorithms.AES(key), modes.CBC(key[:16])).decryptor()
        plain = dec.update(base64.b64decode(answer["encrypt"])) + dec.finalize()
        plain = plain[:-plain[-1]]
        length = int.from_bytes(plain[16:20], "big")
        if plain[20 + length:].decode() != self.owner_key:
            raise AssertionError("answer was encrypted for another owner key")
        return plain[20:20 + length].decode("utf-8")
