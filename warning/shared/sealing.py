"""The service's data keys: webhook secrets encrypted at rest in ``subscriptions`` and a MAC on every control
record (``subscriptions`` records and tombstones, every ``signals`` message), so write access to the broker is
not a way to read secrets, cancel a warning or inject a subscription (docs/ARCHITECTURE.md "Data keys").

A key ring is a current key id plus older keys kept for reading. It comes from ``EWS_DATA_KEY``
(``id:base64url,...``, the first current), else the file ``EWS_DATA_KEY_FILE``, else ``<data dir>/keys``, created
0600 with one random key on first start (as the token file). A file holds one ``id base64url-key`` per line, the
first current; ``ews keys rotate`` puts a new key first.

A secret is sealed with AES-256-GCM (``cryptography``'s AESGCM, NIST SP 800-38D) under a key derived for that
purpose by HMAC-SHA256 from the ring key, with a random 96-bit nonce and the version, key id and context
(subscription id and field) as associated data, so a sealed value copied into another record does not open. Record
MACs are HMAC-SHA256 (RFC 2104) under a second derived key. The format is versioned (``sealed:v1:``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
import secrets
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

MAC_HEADER = "ews-mac"
SEALED_PREFIX = "sealed:v1:"
_KEY_ID = re.compile(r"^[A-Za-z0-9_.-]{1,32}$")
_NONCE = 12  # the GCM nonce size NIST SP 800-38D recommends; random per sealing


class DataKeyError(ValueError):
    """A malformed or missing data key; the message says where it came from and never contains a key."""


class SealError(ValueError):
    """A sealed value that cannot be opened: unknown key id, wrong context or tampered bytes."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class KeyRing:
    current: str
    keys: Mapping[str, bytes]  # key id -> 32 random bytes; the current one included

    @classmethod
    def parse(cls, entries: Iterable[str], where: str) -> KeyRing:
        """``id key`` or ``id:key`` entries (base64url, 32 bytes), the first the current key."""
        keys: dict[str, bytes] = {}
        for n, entry in enumerate(entries, 1):
            entry = entry.strip()
            if not entry or entry.startswith("#"):
                continue
            kid, _, raw = entry.replace(":", " ", 1).partition(" ")
            kid, raw = kid.strip(), raw.strip()
            if not _KEY_ID.match(kid):
                raise DataKeyError(f"{where}: entry {n}: a key id is 1-32 letters, digits, '_', '-' or '.'")
            try:
                key = _unb64(raw)
            except (binascii.Error, ValueError):
                key = b""
            if len(key) != 32:
                raise DataKeyError(f"{where}: key {kid!r} is not 32 bytes of base64url")
            if kid in keys:
                raise DataKeyError(f"{where}: key id {kid!r} appears twice")
            keys[kid] = key
        if not keys:
            raise DataKeyError(f"{where}: no key")
        return cls(next(iter(keys)), keys)

    @classmethod
    def generate(cls, kid: str = "k1") -> KeyRing:
        return cls(kid, {kid: secrets.token_bytes(32)})

    def rotated(self) -> KeyRing:
        """A new current key (id ``k<n+1>``), every older key kept for reading."""
        n = 1 + max((int(k[1:]) for k in self.keys if re.fullmatch(r"k\d+", k)), default=0)
        kid = f"k{n}"
        return KeyRing(kid, {kid: secrets.token_bytes(32), **self.keys})

    def to_text(self) -> str:
        order = [self.current, *(k for k in self.keys if k != self.current)]
        return "".join(f"{k} {_b64(self.keys[k])}\n" for k in order)


def write_key_file(path: Path, ring: KeyRing) -> None:
    """Write the ring 0600 (atomically: a new file renamed over the old)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".new")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(ring.to_text())
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def load_key_ring(data_key: str | None, key_file: Path | None, data_dir: Path) -> tuple[KeyRing, str]:
    """(the ring, where it came from): ``EWS_DATA_KEY``, else ``EWS_DATA_KEY_FILE`` (must exist), else
    ``<data dir>/keys``, created 0600 with one new key when missing."""
    if data_key:
        return KeyRing.parse(data_key.split(","), "EWS_DATA_KEY"), "EWS_DATA_KEY"
    if key_file is not None:
        if not key_file.is_file():
            raise DataKeyError(f"EWS_DATA_KEY_FILE: {key_file} does not exist")
        return KeyRing.parse(key_file.read_text().splitlines(), str(key_file)), str(key_file)
    path = data_dir / "keys"
    if not path.exists():
        write_key_file(path, KeyRing.generate())
        return KeyRing.parse(path.read_text().splitlines(), str(path)), f"{path} (new)"
    return KeyRing.parse(path.read_text().splitlines(), str(path)), str(path)


def _derive(key: bytes, purpose: bytes) -> bytes:
    return hmac.new(key, b"ews/v1/" + purpose, hashlib.sha256).digest()


def _associated(kid: str, context: str) -> bytes:
    return b"\0".join((b"v1", kid.encode(), context.encode()))


def canonical(topic: str, key: bytes | None, value: bytes | None) -> bytes:
    """The bytes a record's MAC covers: topic, key and value (a tombstone distinct from an empty value)."""
    k, v = key if key is not None else b"", value if value is not None else b""
    return b"".join((b"ews-record-v1\0", topic.encode(), b"\0", struct.pack(">q", len(k) if key is not None else -1),
                     k, struct.pack(">q", len(v) if value is not None else -1), v))


def header_value(headers: object, name: str = MAC_HEADER) -> bytes | None:
    """The value of header ``name`` from a Kafka record's headers (a list of pairs or a mapping)."""
    items = headers.items() if isinstance(headers, Mapping) else headers or ()
    for k, v in items:  # type: ignore[attr-defined]
        if k == name:
            return bytes(v) if v is not None else None
    return None


class Sealer:
    """Seals and opens secrets, signs and checks records, with one key ring."""

    def __init__(self, ring: KeyRing) -> None:
        self.ring = ring
        self._aead = {k: AESGCM(_derive(v, b"secret-aes-256-gcm")) for k, v in ring.keys.items()}
        self._mac = {k: _derive(v, b"record-mac") for k, v in ring.keys.items()}
        self._url_token = {k: _derive(v, b"url-token") for k, v in ring.keys.items()}

    # ----------------------------------------------------------------------------------------- secrets at rest
    def seal(self, plain: str, context: str) -> str:
        kid = self.ring.current
        nonce = secrets.token_bytes(_NONCE)
        ct = self._aead[kid].encrypt(nonce, plain.encode(), _associated(kid, context))
        return f"{SEALED_PREFIX}{kid}:{_b64(nonce + ct)}"

    def open(self, sealed: str, context: str) -> str:
        if not is_sealed(sealed):
            raise SealError("not a sealed value")
        kid, _, body = sealed[len(SEALED_PREFIX):].partition(":")
        if kid not in self._aead:
            raise SealError(f"sealed with key {kid!r}, which is not in the key ring")
        try:
            raw = _unb64(body)
        except (binascii.Error, ValueError):
            raise SealError("malformed sealed value") from None
        try:
            plain = self._aead[kid].decrypt(raw[:_NONCE], raw[_NONCE:], _associated(kid, context))
        except (InvalidTag, ValueError):
            raise SealError("the sealed value fails its check (tampered, or sealed for another record)") from None
        return plain.decode()

    # ----------------------------------------------------------------------------------------- record MACs
    def mac(self, topic: str, key: bytes | None, value: bytes | None) -> bytes:
        """The ``ews-mac`` header value: ``<key id>:<hex HMAC-SHA256>`` with the current key."""
        kid = self.ring.current
        return f"{kid}:{self._digest(kid, topic, key, value)}".encode()

    def headers(self, topic: str, key: bytes | None, value: bytes | None) -> list[tuple[str, bytes]]:
        return [(MAC_HEADER, self.mac(topic, key, value))]

    def check(self, topic: str, key: bytes | None, value: bytes | None, headers: object) -> str | None:
        """None when the record carries a valid MAC from a key of the ring, else why not (missing, unknown_key,
        bad_mac): the reason is a metric label and never contains record bytes."""
        got = header_value(headers)
        if got is None:
            return "missing"
        kid, _, digest = got.decode(errors="replace").partition(":")
        if kid not in self._mac:
            return "unknown_key"
        if not hmac.compare_digest(digest.encode(), self._digest(kid, topic, key, value).encode()):
            return "bad_mac"
        return None

    # ----------------------------------------------------------------------------------------- URL tokens
    def sign_token(self, purpose: str, message: bytes) -> str:
        """``<key id>.<base64url 128-bit HMAC-SHA256>`` of ``message`` for ``purpose`` (an acknowledgement URL):
        under a key derived for URL tokens alone, so a token is never a record MAC or the reverse."""
        kid = self.ring.current
        return f"{kid}.{_b64(self._token_digest(kid, purpose, message))}"

    def token_ok(self, purpose: str, message: bytes, signed: str) -> bool:
        """Whether ``signed`` (from :meth:`sign_token`) is ``message``'s token for ``purpose`` under a ring key."""
        kid, _, digest = signed.partition(".")
        if kid not in self._url_token:
            return False
        try:
            given = _unb64(digest)
        except (binascii.Error, ValueError):
            return False
        return hmac.compare_digest(given, self._token_digest(kid, purpose, message))

    def _token_digest(self, kid: str, purpose: str, message: bytes) -> bytes:
        return hmac.new(self._url_token[kid], purpose.encode() + b"\0" + message, hashlib.sha256).digest()[:16]

    def _digest(self, kid: str, topic: str, key: bytes | None, value: bytes | None) -> str:
        return hmac.new(self._mac[kid], canonical(topic, key, value), hashlib.sha256).hexdigest()


def is_sealed(value: str) -> bool:
    return value.startswith(SEALED_PREFIX)


def sealed_key_id(value: str) -> str | None:
    return value[len(SEALED_PREFIX):].partition(":")[0] if is_sealed(value) else None
