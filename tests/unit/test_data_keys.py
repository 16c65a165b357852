"""The data key ring, sealed secrets and record MACs (warning/shared/sealing.py), the subscription book's refusal
of unsigned records, and `ews keys rotate | reseal`'s decisions."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import orjson
import pytest

from alerts.subscriptions import Subscription, SubscriptionBook, sealed_record
from warning.keys_cli import _resealed, run_keys
from warning.shared import metrics
from warning.shared.sealing import MAC_HEADER, DataKeyError, KeyRing, Sealer, SealError, load_key_ring

SECRET = "whsec_" + "A" * 43


def sub(sub_id: str = "s1", **kw: Any) -> Subscription:
    return Subscription(id=sub_id, name="n", department="relief", url="https://example.org/h", secret=SECRET,
                        regions=["620000"], hazards=[], **kw)


def test_the_key_file_is_made_0600_on_first_start_and_reused(tmp_path: Path) -> None:
    ring, where = load_key_ring(None, None, tmp_path)
    path = tmp_path / "keys"
    assert where.endswith("(new)") and stat.S_IMODE(path.stat().st_mode) == 0o600
    again, where2 = load_key_ring(None, None, tmp_path)
    assert again == ring and where2 == str(path) and len(ring.keys[ring.current]) == 32


def test_env_key_wins_and_bad_keys_fail_clearly(tmp_path: Path) -> None:
    a, b = KeyRing.generate("a"), KeyRing.generate("b")
    text = f"b:{b.to_text().split()[1]},a:{a.to_text().split()[1]}"
    ring, where = load_key_ring(text, None, tmp_path)
    assert (ring.current, set(ring.keys), where) == ("b", {"a", "b"}, "EWS_DATA_KEY")
    assert not (tmp_path / "keys").exists()
    for bad, msg in (("k1:short", "not 32 bytes"), ("", "no key"), ("b@d:x", "key id"),
                     (f"a:{a.to_text().split()[1]},a:{a.to_text().split()[1]}", "twice")):
        with pytest.raises(DataKeyError, match=msg):
            KeyRing.parse(bad.split(","), "EWS_DATA_KEY")
    with pytest.raises(DataKeyError, match="does not exist"):
        load_key_ring(None, tmp_path / "nowhere", tmp_path)


def test_sealed_secrets_open_only_for_their_record_and_field() -> None:
    s = Sealer(KeyRing.generate())
    one, two = s.seal(SECRET, "s1:secret"), s.seal(SECRET, "s1:secret")
    assert one != two and "whsec_" not in one and one.startswith("sealed:v1:k1:")
    assert s.open(one, "s1:secret") == SECRET
    with pytest.raises(SealError):
        s.open(one, "s2:secret")  # moved to another subscription
    with pytest.raises(SealError):
        s.open(one, "s1:previous_secret")
    tampered = one[:-3] + ("A" if one[-3] != "A" else "B") + one[-2:]
    with pytest.raises(SealError):
        s.open(tampered, "s1:secret")
    with pytest.raises(SealError, match="not in the key ring"):
        Sealer(KeyRing.generate("other")).open(one, "s1:secret")


def test_rotation_keeps_old_keys_for_reading() -> None:
    ring = KeyRing.generate()
    old = Sealer(ring)
    sealed, mac = old.seal(SECRET, "c"), old.mac("subscriptions", b"k", b"v")
    new = Sealer(ring.rotated())
    assert new.ring.current == "k2" and set(new.ring.keys) == {"k1", "k2"}
    assert new.open(sealed, "c") == SECRET
    assert new.check("subscriptions", b"k", b"v", [(MAC_HEADER, mac)]) is None
    assert new.mac("subscriptions", b"k", b"v").startswith(b"k2:")
    assert KeyRing.parse(new.ring.to_text().splitlines(), "f") == new.ring


def test_the_mac_covers_topic_key_value_and_tells_a_tombstone_from_empty() -> None:
    s = Sealer(KeyRing.generate())
    h = s.headers("signals", b"620982", b"{}")
    assert s.check("signals", b"620982", b"{}", h) is None
    assert s.check("signals", b"620982", b"{}", dict(h)) is None  # faust may give a mapping
    assert s.check("signals", b"620982", b"{} ", h) == "bad_mac"
    assert s.check("signals", b"620981", b"{}", h) == "bad_mac"
    assert s.check("subscriptions", b"620982", b"{}", h) == "bad_mac"
    assert s.check("signals", b"620982", b"{}", []) == "missing"
    assert s.check("signals", b"620982", b"{}", None) == "missing"
    assert s.check("signals", b"620982", b"{}", [(MAC_HEADER, b"k9:" + b"0" * 64)]) == "unknown_key"
    tomb = s.headers("subscriptions", b"s1", None)
    assert s.check("subscriptions", b"s1", None, tomb) is None
    assert s.check("subscriptions", b"s1", b"", tomb) == "bad_mac"
    assert Sealer(KeyRing.generate()).check("signals", b"620982", b"{}", h) == "bad_mac"  # another k1


class FakeTopic:
    def __init__(self) -> None:
        self.sent: list[tuple[bytes | None, bytes | None, Any]] = []

    def get_topic_name(self) -> str:
        return "subscriptions"

    async def send(self, *, key: bytes | None = None, value: bytes | None = None, partition: int | None = None,
                   headers: Any = None) -> None:
        self.sent.append((key, value, headers))


def refused(reason: str) -> float:
    return metrics.RECORDS_REJECTED.labels("subscriptions", reason)._value.get()  # type: ignore[no-any-return]


async def test_the_book_seals_on_write_and_refuses_what_it_cannot_check() -> None:
    sealer = Sealer(KeyRing.generate())
    topic = FakeTopic()
    book = SubscriptionBook(topic, sealer)
    await book.put(sub(previous_secret=SECRET.replace("A", "B"), previous_secret_expires=1.0), "s1")
    [(key, value, headers)] = topic.sent
    assert value is not None and b"whsec_" not in value and key == b"s1"
    other = SubscriptionBook(FakeTopic(), sealer)  # another worker, fed by its mirror
    other.mirror(key, value, headers)
    got = other.get("s1")
    assert got is not None and got.secret == SECRET and got.previous_secret == SECRET.replace("A", "B")

    missing, bad = refused("missing"), refused("bad_mac")
    forged = orjson.dumps(sub("evil").to_dict())
    other.mirror(b"evil", forged, None)
    other.mirror(b"s1", None, [(MAC_HEADER, b"k1:" + b"0" * 64)])  # a forged delete
    assert other.get("evil") is None and other.get("s1") is not None
    assert (refused("missing") - missing, refused("bad_mac") - bad) == (1, 1)

    swapped = orjson.loads(value) | {"id": "s2"}  # s1's sealed secret copied into a record for s2, re-MACed
    raw = orjson.dumps(swapped)
    other.mirror(b"s2", raw, sealer.headers("subscriptions", b"s2", raw))
    assert other.get("s2") is None

    legacy = orjson.dumps(sub("old").to_dict())  # a plain secret in a record the service signed: accepted
    other.mirror(b"old", legacy, sealer.headers("subscriptions", b"old", legacy))
    old = other.get("old")
    assert old is not None and old.secret == SECRET

    tomb = sealer.headers("subscriptions", b"s1", None)
    other.mirror(b"s1", None, tomb)
    assert other.get("s1") is None


def test_reseal_decides_per_latest_record() -> None:
    ring = KeyRing.generate()
    old, new = Sealer(ring), Sealer(ring.rotated())
    plain = orjson.dumps(sub().to_dict())
    assert _resealed(new, b"s1", plain, None, adopt_unsigned=False) == ("refused", None)
    outcome, value = _resealed(new, b"s1", plain, None, adopt_unsigned=True)
    assert outcome == "adopted" and value is not None and b"sealed:v1:k2:" in value and b"whsec_" not in value
    by_old = orjson.dumps(sealed_record(sub(), old))
    outcome, value = _resealed(new, b"s1", by_old, old.headers("subscriptions", b"s1", by_old), adopt_unsigned=False)
    assert outcome == "resealed" and value is not None and new.open(orjson.loads(value)["secret"], "s1:secret")
    by_new = orjson.dumps(sealed_record(sub(), new))
    assert _resealed(new, b"s1", by_new, new.headers("subscriptions", b"s1", by_new), adopt_unsigned=True) == (
        "current", None)
    assert _resealed(new, b"s1", by_new, [(MAC_HEADER, b"k2:" + b"0" * 64)], adopt_unsigned=True) == (
        "refused", None)


def test_ews_keys_rotate_rewrites_the_file_0600(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("EWS_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("EWS_DATA_KEY", raising=False)
    monkeypatch.delenv("EWS_DATA_KEY_FILE", raising=False)
    first, _ = load_key_ring(None, None, tmp_path)
    from argparse import Namespace

    assert run_keys(Namespace(keys_command="rotate")) == 0
    ring, _ = load_key_ring(None, None, tmp_path)
    assert ring.current == "k2" and ring.keys["k1"] == first.keys["k1"]
    assert stat.S_IMODE((tmp_path / "keys").stat().st_mode) == 0o600
    assert "current key 'k2'" in capsys.readouterr().out
    monkeypatch.setenv("EWS_DATA_KEY", ring.to_text().replace(" ", ":").replace("\n", ",").rstrip(","))
    assert run_keys(Namespace(keys_command="rotate")) == 0
    printed = capsys.readouterr().out.split("EWS_DATA_KEY=")[1].strip()
    assert KeyRing.parse(printed.split(","), "out").current == "k3"
