"""XML-DSig signature of a ``GIAMDINHHS`` document by the facility's certificate.

The signature is enveloped: its single reference (``URI=""``) covers the whole
document minus the signature itself, and it sits in ``CHUKYDONVI``. RSA-SHA256
with SHA-256 digests and inclusive Canonical XML 1.0, which every XML-DSig
verifier supports (.NET ``SignedXml`` does not support C14N 1.1 by default).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from lxml import etree
from signxml.algorithms import CanonicalizationMethod, DigestAlgorithm, SignatureMethod
from signxml.exceptions import InvalidInput
from signxml.exceptions import InvalidSignature as SignxmlInvalidSignature
from signxml.signer import XMLSigner
from signxml.verifier import SignatureConfiguration, VerifyResult, XMLVerifier

from hospital.billing.domain.xml130.models import Xml130Error

DSIG_NS = "http://www.w3.org/2000/09/xmldsig#"
_SIGNATURE_PARENT = "CHUKYDONVI"
_EXPECTED = SignatureConfiguration(
    location=f"./{_SIGNATURE_PARENT}/",
    signature_methods=frozenset({SignatureMethod.RSA_SHA256}),
    digest_algorithms=frozenset({DigestAlgorithm.SHA256}),
)


class XmlSignatureError(Xml130Error):
    """The document cannot be signed, or its signature does not verify."""


def _parse(xml_bytes: bytes) -> etree._Element:
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    try:
        return etree.fromstring(xml_bytes, parser)
    except etree.XMLSyntaxError as exc:
        raise XmlSignatureError(f"not well-formed XML: {exc}") from exc


def sign(xml_bytes: bytes, key_pem: bytes, cert_pem: bytes) -> bytes:
    """Sign an unsigned ``GIAMDINHHS`` document; the certificate is embedded in ``KeyInfo``."""
    root = _parse(xml_bytes)
    slots = root.findall(_SIGNATURE_PARENT)
    if root.tag != "GIAMDINHHS" or len(slots) != 1:
        raise XmlSignatureError(f"expected a GIAMDINHHS document with one {_SIGNATURE_PARENT}")
    if len(slots[0]) or (slots[0].text or "").strip():
        raise XmlSignatureError(f"{_SIGNATURE_PARENT} is not empty: the document is already signed")
    etree.SubElement(slots[0], f"{{{DSIG_NS}}}Signature", Id="placeholder", nsmap={"ds": DSIG_NS})
    signer = XMLSigner(
        signature_algorithm=SignatureMethod.RSA_SHA256,
        digest_algorithm=DigestAlgorithm.SHA256,
        c14n_algorithm=CanonicalizationMethod.CANONICAL_XML_1_0,
    )
    try:
        signed = signer.sign(root, key=key_pem, cert=cert_pem.decode("ascii"))
    except (InvalidInput, ValueError) as exc:
        raise XmlSignatureError(f"cannot sign: {exc}") from exc
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + etree.tostring(signed, encoding="UTF-8")


def verify(xml_bytes: bytes, cert_pem: bytes, *, at: datetime | None = None) -> None:
    """Check that ``CHUKYDONVI`` holds a valid signature of the whole document by ``cert_pem``.

    Raises :class:`XmlSignatureError` for any change to the signed document, a
    signature by another key, a signature elsewhere than ``CHUKYDONVI``, one
    that covers only part of the document, or a certificate not valid at ``at``
    (default now; pass the submission time to re-check an archived claim after
    the certificate expired).
    """
    root = _parse(xml_bytes)
    config = replace(_EXPECTED, verification_time=at)
    try:
        result = XMLVerifier().verify(root, x509_cert=cert_pem.decode("ascii"), expect_config=config)
    except (SignxmlInvalidSignature, InvalidInput) as exc:
        raise XmlSignatureError(f"signature does not verify: {exc}") from exc
    if (
        not isinstance(result, VerifyResult)
        or result.signed_xml is None
        or result.signed_xml.tag != "GIAMDINHHS"
    ):
        raise XmlSignatureError("the signature does not cover the whole GIAMDINHHS document")
