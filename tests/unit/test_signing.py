import base64
import time

import pytest

from alerts.signing import SignatureError, new_secret, sign, signature_headers, verify

# The published Standard Webhooks / Svix example (svix docs "Verifying payloads manually").
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
MSG_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
TS = 1614265330
BODY = b'{"test": 2432232314}'


def test_matches_published_vector() -> None:
    assert sign(SECRET, MSG_ID, TS, BODY) == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_verify_accepts_any_of_several_signatures_and_rejects_tampering() -> None:
    old, new = new_secret(), new_secret()
    headers = signature_headers([old, new], "msg_1", BODY, timestamp=int(time.time()))
    assert len(headers["webhook-signature"].split()) == 2
    verify(old, headers, BODY)
    verify(new, headers, BODY)
    with pytest.raises(SignatureError):
        verify(new_secret(), headers, BODY)
    with pytest.raises(SignatureError):
        verify(old, headers, BODY + b" ")


def test_verify_rejects_stale_timestamp() -> None:
    s = new_secret()
    headers = signature_headers([s], "msg_1", BODY, timestamp=int(time.time()) - 3600)
    with pytest.raises(SignatureError, match="tolerance"):
        verify(s, headers, BODY)


def test_secret_format() -> None:
    s = new_secret()
    assert s.startswith("whsec_") and len(base64.b64decode(s[6:])) == 24
    with pytest.raises(SignatureError):
        sign("nope", "m", 1, b"")
