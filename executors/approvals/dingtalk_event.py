"""DingTalk's encrypted event callback (HTTP push): the one DingTalk channel whose payload is authenticated.

DingTalk calls the registered URL with ``msg_signature``, ``timestamp`` (epoch ms) and ``nonce``
in the query and ``{"encrypt": "<base64>"}`` as the body. ``msg_signature`` is the hex SHA-1 of
the sorted concatenation of the callback ``token``, the timestamp, the nonce and the ciphertext;
the ciphertext is AES-256-CBC under the 43-character ``aes_key`` (base64 of the 32-byte key; the
IV is the key's first 16 bytes; PKCS#7 padding to 32-byte blocks) of
``16 random bytes | 4-byte big-endian length | message | owner key``, where the owner key is the
app key (event subscription of an internal app) or the corp id / suite key. So a captured request
cannot be re-pointed at another action or user (the signature covers the ciphertext, which covers
the message), and a request encrypted for another app is refused by its owner key. The robot's
``timestamp``/``sign`` headers cover only the timestamp and authenticate nothing else.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from pydantic import SecretStr

from executors.approvals.errors import SignatureError, SignatureFailure

#: How far a callback's timestamp may be from now; the replay memory keeps each callback this long.
TOLERANCE_MS = 5 * 60 * 1000
_BLOCK = 32
_AES_KEY = re.compile(r"^[A-Za-z0-9+/]{43}$")
_TIMESTAMP = re.compile(r"^[0-9]{1,15}$")
_NONCE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_SIGNATURE = re.compile(r"^[0-9a-fA-F]{40}$")
_MAX_CIPHERTEXT = 64 * 1024


@dataclass(frozen=True)
class DingTalkCallbackKeys:
    """The three values registered with DingTalk for the callback URL; ``owner_key`` is not secret."""

    token: SecretStr
    aes_key: SecretStr
    owner_key: str

    def key(self) -> bytes:
        text = self.aes_key.get_secret_value()
        if not _AES_KEY.fullmatch(text):
            raise ValueError("DingTalk aes_key must be the 43-character EncodingAESKey")
        return base64.b64decode(text + "=")


def callback_signature(token: SecretStr, timestamp: str, nonce: str, encrypt: str) -> str:
    """DingTalk's ``msg_signature``: hex SHA-1 over the sorted, concatenated four values."""
    parts = sorted([token.get_secret_value(), timestamp, nonce, encrypt])
    return hashlib.sha1("".join(parts).encode("utf-8")).hexdigest()  # SHA-1 is what DingTalk signs with


def open_callback(
    keys: DingTalkCallbackKeys,
    *,
    msg_signature: str | None,
    timestamp: str | None,
    nonce: str | None,
    encrypt: str | None,
    now_ms: int,
    tolerance_ms: int = TOLERANCE_MS,
) -> str:
    """The plaintext message of a genuine, fresh callback for our app; else :class:`SignatureError`."""
    if not (msg_signature and timestamp and nonce and encrypt):
        raise SignatureError(SignatureFailure.MISSING,
                             "DingTalk msg_signature, timestamp, nonce or encrypt is missing")
    if not (_TIMESTAMP.fullmatch(timestamp) and _NONCE.fullmatch(nonce) and _SIGNATURE.fullmatch(msg_signature)
            and len(encrypt) <= _MAX_CIPHERTEXT):
        raise SignatureError(SignatureFailure.MALFORMED, "DingTalk callback parameters are malformed")
    if abs(now_ms - int(timestamp)) > tolerance_ms:
        raise SignatureError(SignatureFailure.STALE,
                             f"DingTalk callback timestamp is more than {tolerance_ms // 1000} s away from now")
    expected = callback_signature(keys.token, timestamp, nonce, encrypt)
    if not hmac.compare_digest(expected, msg_signature.lower()):
        raise SignatureError(SignatureFailure.MISMATCH, "DingTalk msg_signature does not match")
    try:
        sealed = base64.b64decode(encrypt, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise SignatureError(SignatureFailure.MALFORMED, "DingTalk encrypt is not base64") from exc
    message, owner = _unseal(keys.key(), sealed)
    if not hmac.compare_digest(owner, keys.owner_key.encode("utf-8")):
        raise SignatureError(SignatureFailure.MISMATCH, "DingTalk callback was encrypted for another app")
    try:
        return message.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SignatureError(SignatureFailure.MALFORMED, "DingTalk message is not UTF-8") from exc


def _unseal(key: bytes, sealed: bytes) -> tuple[bytes, bytes]:
    if not sealed or len(sealed) % 16:
        raise SignatureError(SignatureFailure.MALFORMED, "DingTalk ciphertext is not whole AES blocks")
    decryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).decryptor()
    plain = decryptor.update(sealed) + decryptor.finalize()
    pad = plain[-1]
    if not 1 <= pad <= _BLOCK or plain[-pad:] != bytes([pad]) * pad or len(plain) - pad < 20:
        raise SignatureError(SignatureFailure.MALFORMED, "DingTalk plaintext padding is corrupt")
    body = plain[:-pad]
    length = int.from_bytes(body[16:20], "big")
    if 20 + length > len(body):
        raise SignatureError(SignatureFailure.MALFORMED, "DingTalk plaintext length is corrupt")
    return body[20:20 + length], body[20 + length:]


def seal_reply(keys: DingTalkCallbackKeys, message: str, *, timestamp: str, nonce: str | None = None) -> dict[str, str]:
    """The encrypted answer DingTalk expects (``"success"`` acknowledges an event)."""
    key = keys.key()
    data = message.encode("utf-8")
    plain = secrets.token_bytes(16) + len(data).to_bytes(4, "big") + data + keys.owner_key.encode("utf-8")
    pad = _BLOCK - len(plain) % _BLOCK
    encryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).encryptor()
    encrypt = base64.b64encode(encryptor.update(plain + bytes([pad]) * pad) + encryptor.finalize()).decode("ascii")
    nonce = nonce or secrets.token_urlsafe(12)
    return {"msg_signature": callback_signature(keys.token, timestamp, nonce, encrypt), "timeStamp": timestamp,
            "nonce": nonce, "encrypt": encrypt}
