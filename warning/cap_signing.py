"""Optional XML digital signature on CAP documents (CAP 1.2 §3.3.2.1: an enveloped XML-Signature as the last
child of ``<alert>``, which the CAP 1.2 schema allows there), as WMO's capvalidator checks for WIS2.

Off unless ``EWS_CAP_SIGNING_KEY`` (PEM private key, RSA or EC) and ``EWS_CAP_SIGNING_CERT`` (its PEM X.509
certificate, sent in ``<KeyInfo>``) are both set. RSA-SHA256 (ECDSA-SHA256 for an EC key), SHA-256 digests,
exclusive canonicalisation (``signxml``, the ``cap-signing`` extra). The signature depends only on the document's
bytes (RSA PKCS#1 v1.5 is deterministic), so a document's ETag stays stable; ECDSA signatures differ each time."""

from __future__ import annotations

from pathlib import Path
from typing import Any


class CapSigningError(ValueError):
    """The CAP signing settings cannot be used; the message names the setting."""


class CapSigner:
    def __init__(self, key_pem: bytes, cert_pem: bytes) -> None:
        try:
            from cryptography import x509
            from cryptography.hazmat.primitives.asymmetric import ec
            from cryptography.hazmat.primitives.serialization import load_pem_private_key
            from signxml import SignatureMethod, XMLSigner
        except ImportError as exc:  # pragma: no cover - the extra is missing
            raise CapSigningError(f"EWS_CAP_SIGNING_KEY: signing CAP needs signxml (pip install "
                                  f"'extreme-warning[cap-signing]'): {exc}") from None
        try:
            key = load_pem_private_key(key_pem, password=None)
        except (ValueError, TypeError) as exc:
            raise CapSigningError(f"EWS_CAP_SIGNING_KEY: not an unencrypted PEM private key ({exc})") from None
        try:
            cert = x509.load_pem_x509_certificate(cert_pem)
        except ValueError as exc:
            raise CapSigningError(f"EWS_CAP_SIGNING_CERT: not a PEM X.509 certificate ({exc})") from None
        if cert.public_key().public_numbers() != key.public_key().public_numbers():  # type: ignore[union-attr]
            raise CapSigningError("EWS_CAP_SIGNING_CERT: the certificate is not the signing key's")
        method = (SignatureMethod.ECDSA_SHA256 if isinstance(key, ec.EllipticCurvePrivateKey)
                  else SignatureMethod.RSA_SHA256)
        self._signer: Any = XMLSigner(signature_algorithm=method, digest_algorithm="sha256",
                                      c14n_algorithm="http://www.w3.org/2001/10/xml-exc-c14n#")
        self._key, self._cert = key_pem, cert_pem.decode()

    @classmethod
    def from_files(cls, key_path: Path | None, cert_path: Path | None) -> CapSigner | None:
        """The signer of the settings, or None when CAP stays unsigned (neither set)."""
        if key_path is None and cert_path is None:
            return None
        if key_path is None or cert_path is None:
            missing = "EWS_CAP_SIGNING_KEY" if key_path is None else "EWS_CAP_SIGNING_CERT"
            raise CapSigningError(f"{missing}: CAP signing needs both EWS_CAP_SIGNING_KEY and EWS_CAP_SIGNING_CERT")
        try:
            return cls(key_path.read_bytes(), cert_path.read_bytes())
        except OSError as exc:
            raise CapSigningError(f"EWS_CAP_SIGNING_KEY / _CERT: cannot read {exc.filename}: {exc.strerror}") from None

    def sign(self, cap_xml: bytes) -> bytes:
        """``cap_xml`` with an enveloped ``<ds:Signature>`` (reference URI "": the whole alert) as its last child."""
        from lxml import etree  # with signxml (the cap-signing extra): `make run` installs neither

        root = etree.fromstring(cap_xml, parser=etree.XMLParser(resolve_entities=False, no_network=True))
        signed = self._signer.sign(root, key=self._key, cert=self._cert)
        return bytes(etree.tostring(signed, xml_declaration=True, encoding="UTF-8"))
