"""Enveloped XML signatures on CAP (warning.cap_signing), checked by verifiers that are not ours: signxml's
XMLVerifier with the certificate, and the xmlsec1 command line (libxmlsec1) when installed."""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from lxml import etree

from tests.support import CAP_XSD
from tests.unit.test_rules_grading import HEAT, NOW, sig
from warning.cap import render_cap, validate_cap
from warning.cap_signing import CapSigner, CapSigningError
from warning.grading import apply_signal

signxml = pytest.importorskip("signxml", reason="signxml (the cap-signing extra) is not installed")
DS = "{http://www.w3.org/2000/09/xmldsig#}"


def key_and_cert(curve: bool = False) -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1()) if curve else rsa.generate_private_key(65537, 2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Gansu Meteorological Bureau CAP test")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=30)).sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return key_pem, cert.public_bytes(serialization.Encoding.PEM)


def cap() -> bytes:
    _, event = apply_signal(None, sig("red", value=40.6), HEAT, NOW)
    assert event is not None
    return render_cap(event)


@pytest.mark.parametrize("curve", [False, True], ids=["rsa", "ecdsa"])
def test_signed_cap_verifies_with_the_certificate_and_stays_valid_cap(curve: bool, tmp_path: Path) -> None:
    key_pem, cert_pem = key_and_cert(curve)
    signed = CapSigner(key_pem, cert_pem).sign(cap())
    root = etree.fromstring(signed)
    assert root[-1].tag == f"{DS}Signature"  # enveloped, the alert's last child (CAP 1.2 §3.3.2.1)
    assert validate_cap(signed, CAP_XSD) == []
    verified = signxml.XMLVerifier().verify(signed, x509_cert=cert_pem.decode())
    assert etree.tostring(verified.signed_xml) == etree.tostring(etree.fromstring(cap()))
    tampered = signed.replace(b"<severity>Extreme</severity>", b"<severity>Minor</severity>", 1)
    assert tampered != signed
    with pytest.raises(signxml.exceptions.InvalidSignature):
        signxml.XMLVerifier().verify(tampered, x509_cert=cert_pem.decode())
    if shutil.which("xmlsec1"):  # libxmlsec1's own verifier (apt-get install xmlsec1)
        (tmp_path / "cert.pem").write_bytes(cert_pem)
        for name, doc, ok in (("signed.xml", signed, True), ("tampered.xml", tampered, False)):
            (tmp_path / name).write_bytes(doc)
            run = subprocess.run(["xmlsec1", "--verify", "--pubkey-cert-pem", str(tmp_path / "cert.pem"),
                                  str(tmp_path / name)], capture_output=True, text=True, timeout=30)
            assert (run.returncode == 0) == ok, run.stderr


def test_rsa_signatures_are_deterministic_so_etags_hold() -> None:
    signer = CapSigner(*key_and_cert())
    assert signer.sign(cap()) == signer.sign(cap())


def test_settings_name_what_is_wrong(tmp_path: Path) -> None:
    assert CapSigner.from_files(None, None) is None  # unsigned is the default
    key_pem, cert_pem = key_and_cert()
    (tmp_path / "key.pem").write_bytes(key_pem)
    (tmp_path / "other.pem").write_bytes(key_and_cert()[1])
    with pytest.raises(CapSigningError, match="EWS_CAP_SIGNING_CERT: CAP signing needs both"):
        CapSigner.from_files(tmp_path / "key.pem", None)
    with pytest.raises(CapSigningError, match="EWS_CAP_SIGNING_CERT: the certificate is not the signing key's"):
        CapSigner.from_files(tmp_path / "key.pem", tmp_path / "other.pem")
    with pytest.raises(CapSigningError, match="EWS_CAP_SIGNING_KEY: not an unencrypted PEM"):
        CapSigner(b"nonsense", cert_pem)
