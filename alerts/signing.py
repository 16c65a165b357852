"""Standard Webhooks signatures (https://www.standardwebhooks.com/, spec v1).

``webhook-signature: v1,<base64(HMAC-SHA256(key, f"{id}.{timestamp}.{body}"))>`` where the key is the
base64-decoded part of the secret after ``whsec_``. Several space-separated signatures may be sent (secret
rotation); a receiver accepts the message when any of them verifies.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Iterable, Mapping

SECRET_PREFIX = "whsec_"
DEFAULT_TOLERANCE_S = 300  # the spec's recommended replay window


class SignatureError(ValueError):
    pass


def new_secret(nbytes: int = 24) -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(nbytes)).decode()


def _key(secret: str) -> bytes:
    if not secret.startswith(SECRET_PREFIX):
        raise SignatureError("secret must start with 'whsec_'")
    return base64.b64decode(secret[len(SECRET_PREFIX):])


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """One ``v1,<base64>`` signature of ``id.timestamp.body``."""
    mac = hmac.new(_key(secret), f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256)
    return "v1," + base64.b64encode(mac.digest()).decode()


def signature_headers(secrets_: Iterable[str], msg_id: str, body: bytes,
                      timestamp: int | None = None) -> dict[str, str]:
    """The three Standard Webhooks headers; one signature per secret, space-separated."""
    ts = int(time.time()) if timestamp is None else timestamp
    sigs = " ".join(sign(s, msg_id, ts, body) for s in secrets_)
    return {"webhook-id": msg_id, "webhook-timestamp": str(ts), "webhook-signature": sigs}


def verify(secret: str, headers: Mapping[str, str], body: bytes, *, tolerance_s: int = DEFAULT_TOLERANCE_S,
           now: float | None = None) -> None:
    """Receiver-side check (used by tests and by departments' sample receivers). Raises SignatureError."""
    try:
        msg_id = headers["webhook-id"]
        ts = int(headers["webhook-timestamp"])
        sigs = headers["webhook-signature"].split()
    except (KeyError, ValueError) as exc:
        raise SignatureError(f"missing or malformed webhook header: {exc}") from None
    current = time.time() if now is None else now
    if abs(current - ts) > tolerance_s:
        raise SignatureError("timestamp outside the tolerance window")
    expected = sign(secret, msg_id, ts, body)
    if not any(hmac.compare_digest(expected, s) for s in sigs):
        raise SignatureError("no matching signature")
