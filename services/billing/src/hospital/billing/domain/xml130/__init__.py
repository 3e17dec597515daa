"""Decision 130/QĐ-BYT insurance claim export: tables XML1..XML5, the GIAMDINHHS wrapper,
XSD validation and the facility's XML-DSig signature."""

from hospital.billing.domain.xml130.build import (
    build_giamdinhhs,
    build_hoso_files,
    build_xml1,
    build_xml2,
    build_xml3,
    build_xml4,
    build_xml5,
)
from hospital.billing.domain.xml130.models import (
    ChiTietCls,
    ChiTietDienBienBenh,
    ChiTietDvkt,
    ChiTietThuoc,
    HoSo,
    TongHop,
    TotalsMismatch,
    Xml130Error,
    compute_totals,
)
from hospital.billing.domain.xml130.signing import XmlSignatureError, sign, verify
from hospital.billing.domain.xml130.validate import Xml130ValidationError, load_schema, validate

__all__ = [
    "ChiTietCls",
    "ChiTietDienBienBenh",
    "ChiTietDvkt",
    "ChiTietThuoc",
    "HoSo",
    "TongHop",
    "TotalsMismatch",
    "Xml130Error",
    "Xml130ValidationError",
    "XmlSignatureError",
    "build_giamdinhhs",
    "build_hoso_files",
    "build_xml1",
    "build_xml2",
    "build_xml3",
    "build_xml4",
    "build_xml5",
    "compute_totals",
    "load_schema",
    "sign",
    "validate",
    "verify",
]
