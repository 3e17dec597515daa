"""XML-DSig of a GIAMDINHHS submission with a self-signed certificate generated here."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from lxml import etree

from hospital.billing.domain.insurance import ChargeLine, InsuranceCard, split_visit
from hospital.billing.domain.xml130 import (
    ChiTietDvkt,
    HoSo,
    TongHop,
    XmlSignatureError,
    build_giamdinhhs,
    sign,
    validate,
    verify,
)

DSIG = "{http://www.w3.org/2000/09/xmldsig#}"
DAY = date(2024, 8, 2)


@dataclass(frozen=True)
class Credentials:
    key_pem: bytes
    cert_pem: bytes


def make_credentials(common_name: str, *, valid_from: datetime | None = None, days: int = 365) -> Credentials:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "VN"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, common_name),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )
    start = valid_from or datetime.now(UTC) - timedelta(days=1)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return Credentials(
        key_pem=key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
        cert_pem=cert.public_bytes(serialization.Encoding.PEM),
    )


@pytest.fixture(scope="module")
def hospital() -> Credentials:
    return make_credentials("Bệnh viện Đa khoa tỉnh Thái Bình")


@pytest.fixture(scope="module")
def other_signer() -> Credentials:
    return make_credentials("Phòng khám Đa khoa Hồng Ngọc")


@pytest.fixture(scope="module")
def unsigned() -> bytes:
    card = InsuranceCard("DN4350120878811", date(2024, 1, 1), date(2024, 12, 31))
    (line,) = split_visit([ChargeLine(DAY, True, 45_000, 45_000)], card).lines
    summary = TongHop(
        ma_lk="LK2408020007",
        ma_bn="BN0077777",
        ho_ten="Lê Việt Hưng",
        so_cccd="035085001234",
        ngay_sinh=date(1985, 9, 4),
        gioi_tinh=1,
        ma_quoctich="000",
        ma_dantoc="01",
        ma_nghe_nghiep="00000",
        dia_chi="Thôn Đông, xã Vũ Phúc, thành phố Thái Bình, tỉnh Thái Bình",
        matinh_cu_tru="034",
        mahuyen_cu_tru="336",
        maxa_cu_tru="12472",
        ma_the_bhyt=(card.number,),
        ma_dkbd=("35001",),
        gt_the_tu=(card.valid_from,),
        gt_the_den=(card.valid_to,),
        ly_do_vv="Đau họng, sốt",
        chan_doan_vao="Viêm họng",
        chan_doan_rv="Viêm họng cấp",
        ma_benh_chinh="J02.9",
        ma_doituong_kcb="1.1",
        ngay_vao=datetime(2024, 8, 2, 7, 30),
        ngay_ra=datetime(2024, 8, 2, 8, 15),
        ket_qua_dtri=1,
        ma_loai_rv=1,
        nam_qt=2024,
        thang_qt=8,
        ma_loai_kcb="01",
        ma_khoa=("K30",),
        ma_cskcb="35001",
        ma_hsba="KB2408020007",
        ma_ttdv="3599001234",
    )
    exam = ChiTietDvkt(
        ma_lk="LK2408020007",
        stt=1,
        ma_dich_vu="02.1896",
        ma_nhom=13,
        ten_dich_vu="Khám Tai Mũi Họng",
        don_vi_tinh="Lần",
        so_luong=1,
        don_gia_bv=45_000,
        don_gia_bh=45_000,
        ma_khoa="K30",
        ma_bac_si="001122/TB-CCHN",
        ma_benh="J02.9",
        ngay_yl=datetime(2024, 8, 2, 7, 40),
        **line.xml_fields(),
    )
    return build_giamdinhhs([HoSo(summary, dvkt=(exam,))], ma_cskcb="35001", ngay_lap=DAY)


@pytest.fixture(scope="module")
def signed(unsigned: bytes, hospital: Credentials) -> bytes:
    return sign(unsigned, hospital.key_pem, hospital.cert_pem)


def test_signed_document_verifies_and_still_validates(signed: bytes, hospital: Credentials) -> None:
    verify(signed, hospital.cert_pem)
    validate(signed)


def test_signature_sits_in_chukydonvi_and_covers_the_whole_document(signed: bytes) -> None:
    root = etree.fromstring(signed)
    (signature,) = root.findall(f"CHUKYDONVI/{DSIG}Signature")
    (reference,) = signature.iter(f"{DSIG}Reference")
    assert reference.get("URI") == ""
    method = signature.find(f"{DSIG}SignedInfo/{DSIG}SignatureMethod")
    assert method is not None and method.get("Algorithm", "").endswith("rsa-sha256")
    assert signature.findtext(f".//{DSIG}X509Certificate")


def _flip_one_byte(document: bytes, marker: bytes) -> bytes:
    """Change the byte right after ``marker`` to a digit (valid in dates, codes and base64 alike)."""
    position = document.index(marker) + len(marker)
    replacement = b"2" if document[position : position + 1] == b"1" else b"1"
    changed = document[:position] + replacement + document[position + 1 :]
    assert changed != document and len(changed) == len(document)
    return changed


@pytest.mark.parametrize(
    "marker",
    [
        b"<NGAYLAP>",  # wrapper field
        b"<MACSKCB>",
        b"<LOAIHOSO>XML",
        b"<NOIDUNGFILE>PD94bWwgdmVyc2lv",  # inside the base64 of XML1
        b"<ds:SignatureValue>",
        b"<ds:DigestValue>",
    ],
)
def test_changing_one_byte_breaks_the_signature(signed: bytes, hospital: Credentials, marker: bytes) -> None:
    with pytest.raises(XmlSignatureError):
        verify(_flip_one_byte(signed, marker), hospital.cert_pem)


def test_every_byte_of_the_content_is_covered(signed: bytes, hospital: Credentials) -> None:
    # Flip bytes spread over the signed content (before the signature) and in the signature value.
    end = signed.index(b"<CHUKYDONVI>")
    for position in range(
        len(b'<?xml version="1.0" encoding="UTF-8"?>\n<GIAMDINHHS>'), end, max(1, end // 40)
    ):
        byte = signed[position : position + 1]
        if not byte.isalnum():
            continue
        changed = signed[:position] + (b"7" if byte != b"7" else b"8") + signed[position + 1 :]
        with pytest.raises(XmlSignatureError):
            verify(changed, hospital.cert_pem)


def test_signature_by_another_certificate_is_refused(
    unsigned: bytes, signed: bytes, hospital: Credentials, other_signer: Credentials
) -> None:
    with pytest.raises(XmlSignatureError):
        verify(signed, other_signer.cert_pem)
    forged = sign(unsigned, other_signer.key_pem, other_signer.cert_pem)
    with pytest.raises(XmlSignatureError):
        verify(forged, hospital.cert_pem)


def test_signature_moved_out_of_chukydonvi_is_refused(signed: bytes, hospital: Credentials) -> None:
    root = etree.fromstring(signed)
    signature = root.find(f"CHUKYDONVI/{DSIG}Signature")
    assert signature is not None
    root.append(signature)  # moves it to the end of GIAMDINHHS
    with pytest.raises(XmlSignatureError):
        verify(etree.tostring(root), hospital.cert_pem)


def test_unsigned_document_does_not_verify(unsigned: bytes, hospital: Credentials) -> None:
    with pytest.raises(XmlSignatureError):
        verify(unsigned, hospital.cert_pem)


def test_signing_twice_or_signing_garbage_is_refused(signed: bytes, hospital: Credentials) -> None:
    with pytest.raises(XmlSignatureError, match="already signed"):
        sign(signed, hospital.key_pem, hospital.cert_pem)
    with pytest.raises(XmlSignatureError):
        sign(b"<HOSO/>", hospital.key_pem, hospital.cert_pem)
    with pytest.raises(XmlSignatureError):
        verify(b"not xml", hospital.cert_pem)


def test_expired_certificate_verifies_only_at_a_time_it_was_valid(unsigned: bytes) -> None:
    issued = datetime(2023, 1, 1, tzinfo=UTC)
    expired = make_credentials("Bệnh viện Đa khoa tỉnh Thái Bình", valid_from=issued, days=365)
    archived = sign(unsigned, expired.key_pem, expired.cert_pem)
    with pytest.raises(XmlSignatureError, match="expired"):
        verify(archived, expired.cert_pem)
    verify(archived, expired.cert_pem, at=datetime(2023, 8, 2, tzinfo=UTC))
