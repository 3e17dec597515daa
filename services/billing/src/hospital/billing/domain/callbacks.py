"""Payment callbacks: signature checks and normalisation for VNPay, MoMo, Casso and SePay.

Every ``verify_*`` function checks authenticity first and only then reads the
body, so a forged callback never reaches field parsing. They return a
:class:`GatewayPayment` (a payment gateway settling one of our orders) or a
:class:`BankTransfer` (a transfer seen on the hospital's bank account, to be
matched to a bill with :func:`find_invoice_code`).

The caller still owns what needs state: deduplicate on
``(provider, provider_txn_id)`` and treat a replay as success, settle in one
database transaction, and compare the amount with the bill before marking it paid.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any
from urllib.parse import quote_plus

from hospital.billing.domain.vietnam import VIETNAM_TZ, strip_diacritics


class CallbackError(Exception):
    """Base class of every callback rejection."""


class InvalidSignature(CallbackError):
    """The signature or API key is missing or wrong: the callback is not from the provider."""


class StaleCallback(CallbackError):
    """The signed timestamp is outside the accepted window (a replayed or delayed callback)."""


class MalformedCallback(CallbackError):
    """An authentic callback lacks a field or carries a value we cannot interpret."""

    def __init__(self, field_name: str, reason: str) -> None:
        super().__init__(f"{field_name}: {reason}")
        self.field = field_name
        self.reason = reason


class AmbiguousInvoiceCode(ValueError):
    """A transfer description names several different invoices; route it to manual matching."""

    def __init__(self, codes: list[str]) -> None:
        super().__init__(f"description names several invoices: {', '.join(codes)}")
        self.codes = codes


class Provider(StrEnum):
    VNPAY = "vnpay"
    MOMO = "momo"
    CASSO = "casso"
    SEPAY = "sepay"


@dataclass(frozen=True)
class GatewayPayment:
    """A payment gateway's report on one of our orders (VNPay, MoMo)."""

    provider: Provider
    provider_txn_id: str
    order_id: str
    amount_vnd: int
    paid: bool
    status_code: str
    description: str
    paid_at: datetime | None
    raw: Mapping[str, Any] = field(repr=False, compare=False)


@dataclass(frozen=True)
class BankTransfer:
    """A movement on the hospital's bank account reported by a bank-feed service (Casso, SePay)."""

    provider: Provider
    provider_txn_id: str
    amount_vnd: int
    incoming: bool
    description: str
    account_number: str
    bank_reference: str
    occurred_at: datetime | None
    raw: Mapping[str, Any] = field(repr=False, compare=False)


def _same_hex(expected: str, given: str) -> bool:
    """Constant-time comparison of two hex digests, ignoring letter case."""
    return hmac.compare_digest(
        expected.lower().encode("ascii"), given.strip().lower().encode("ascii", "replace")
    )


def _required(body: Mapping[str, Any], name: str) -> Any:
    value = body.get(name)
    if value is None or value == "":
        raise MalformedCallback(name, "missing")
    return value


def _integer(value: Any, name: str) -> int:
    """An integer given as a JSON number or a decimal string (no floats, no booleans)."""
    if isinstance(value, bool):
        raise MalformedCallback(name, f"not an integer: {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(r"-?[0-9]+", value.strip()):
        return int(value)
    raise MalformedCallback(name, f"not an integer: {value!r}")


def _local_time(value: Any, name: str, fmt: str) -> datetime:
    try:
        return datetime.strptime(str(value), fmt).replace(tzinfo=VIETNAM_TZ)
    except ValueError:
        raise MalformedCallback(name, f"not a time in format {fmt}: {value!r}") from None


# --------------------------------------------------------------------------- VNPay


class VnpRspCode(StrEnum):
    """The ``RspCode`` values VNPay accepts in the IPN reply.

    Map :class:`InvalidSignature` to ``INVALID_SIGNATURE`` and
    :class:`MalformedCallback` to ``UNKNOWN_ERROR``; the order-dependent codes
    come from :func:`vnpay_rsp_code`.
    """

    CONFIRMED = "00"
    ORDER_NOT_FOUND = "01"
    ALREADY_CONFIRMED = "02"
    INVALID_AMOUNT = "04"
    INVALID_SIGNATURE = "97"
    UNKNOWN_ERROR = "99"


_VNP_MESSAGES = {
    VnpRspCode.CONFIRMED: "Confirm Success",
    VnpRspCode.ORDER_NOT_FOUND: "Order not found",
    VnpRspCode.ALREADY_CONFIRMED: "Order already confirmed",
    VnpRspCode.INVALID_AMOUNT: "Invalid amount",
    VnpRspCode.INVALID_SIGNATURE: "Invalid signature",
    VnpRspCode.UNKNOWN_ERROR: "Unknown error",
}


def vnpay_ipn_reply(code: VnpRspCode) -> dict[str, str]:
    """The JSON body VNPay expects in answer to an IPN call."""
    return {"RspCode": code.value, "Message": _VNP_MESSAGES[code]}


def vnpay_hash_data(params: Mapping[str, str]) -> str:
    """The string VNPay v2.1.0 signs.

    Keep the ``vnp_*`` parameters except ``vnp_SecureHash``/``vnp_SecureHashType``,
    sort them by key and join ``quote_plus(key)=quote_plus(value)`` with ``&``
    (space as ``+``), as VNPay's reference IPN code does.
    """
    kept = sorted(
        (key, str(value))
        for key, value in params.items()
        if key.startswith("vnp_") and key not in ("vnp_SecureHash", "vnp_SecureHashType")
    )
    return "&".join(f"{quote_plus(key)}={quote_plus(value)}" for key, value in kept)


def vnpay_signature(params: Mapping[str, str], secret: str) -> str:
    """HMAC-SHA512 hex of :func:`vnpay_hash_data` with the merchant's hash secret."""
    return hmac.new(
        secret.encode("utf-8"), vnpay_hash_data(params).encode("utf-8"), hashlib.sha512
    ).hexdigest()


def verify_vnpay_ipn(params: Mapping[str, str], secret: str) -> GatewayPayment:
    """Check a VNPay IPN (the query parameters of its GET) and normalise it.

    ``vnp_Amount`` is VND x 100. The payment succeeded only when both
    ``vnp_ResponseCode`` and ``vnp_TransactionStatus`` are ``00``.
    """
    given = params.get("vnp_SecureHash")
    if not given:
        raise InvalidSignature("vnp_SecureHash is missing")
    if not _same_hex(vnpay_signature(params, secret), given):
        raise InvalidSignature("vnp_SecureHash does not match the parameters")
    amount_x100 = _integer(_required(params, "vnp_Amount"), "vnp_Amount")
    if amount_x100 <= 0 or amount_x100 % 100:
        raise MalformedCallback(
            "vnp_Amount", f"must be a positive whole number of VND x 100, got {amount_x100}"
        )
    response_code = str(_required(params, "vnp_ResponseCode"))
    status = str(_required(params, "vnp_TransactionStatus"))
    pay_date = params.get("vnp_PayDate")
    return GatewayPayment(
        provider=Provider.VNPAY,
        provider_txn_id=str(_required(params, "vnp_TransactionNo")),
        order_id=str(_required(params, "vnp_TxnRef")),
        amount_vnd=amount_x100 // 100,
        paid=response_code == "00" and status == "00",
        status_code=f"{response_code}/{status}",
        description=str(params.get("vnp_OrderInfo", "")),
        paid_at=_local_time(pay_date, "vnp_PayDate", "%Y%m%d%H%M%S") if pay_date else None,
        raw=dict(params),
    )


def vnpay_rsp_code(
    payment: GatewayPayment,
    *,
    order_amount_vnd: int | None,
    order_already_settled: bool,
) -> VnpRspCode:
    """The reply for an authentic IPN, in VNPay's order of checks.

    ``order_amount_vnd`` is the amount of the order ``payment.order_id`` (``None``
    when no such order exists). A replay of a settled order answers ``02``, which
    VNPay treats as handled. ``00`` means: record the result (paid or failed).
    """
    if order_amount_vnd is None:
        return VnpRspCode.ORDER_NOT_FOUND
    if payment.amount_vnd != order_amount_vnd:
        return VnpRspCode.INVALID_AMOUNT
    if order_already_settled:
        return VnpRspCode.ALREADY_CONFIRMED
    return VnpRspCode.CONFIRMED


# --------------------------------------------------------------------------- MoMo

#: Fields of MoMo's IPN signature string, in the documented (alphabetical) order.
MOMO_IPN_SIGNED_FIELDS = (
    "accessKey",
    "amount",
    "extraData",
    "message",
    "orderId",
    "orderInfo",
    "orderType",
    "partnerCode",
    "payType",
    "requestId",
    "responseTime",
    "resultCode",
    "transId",
)


def _momo_text(value: Any, name: str) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return str(_integer(value, name))


def momo_raw_signature(body: Mapping[str, Any], access_key: str) -> str:
    """``accessKey=..&amount=..&...&transId=..``: the string MoMo signs for an IPN."""
    values = {"accessKey": access_key, **{k: body.get(k) for k in MOMO_IPN_SIGNED_FIELDS if k != "accessKey"}}
    return "&".join(f"{name}={_momo_text(values[name], name)}" for name in MOMO_IPN_SIGNED_FIELDS)


def momo_signature(body: Mapping[str, Any], access_key: str, secret_key: str) -> str:
    """HMAC-SHA256 hex of :func:`momo_raw_signature` with the partner's secret key."""
    raw = momo_raw_signature(body, access_key)
    return hmac.new(secret_key.encode("utf-8"), raw.encode("utf-8"), hashlib.sha256).hexdigest()


def verify_momo_ipn(body: Mapping[str, Any], *, access_key: str, secret_key: str) -> GatewayPayment:
    """Check a MoMo IPN (JSON body) and normalise it; ``resultCode`` 0 means paid.

    MoMo expects HTTP 204 within 15 seconds whatever the outcome.
    """
    given = body.get("signature")
    if not isinstance(given, str) or not given:
        raise InvalidSignature("signature is missing")
    try:
        expected = momo_signature(body, access_key, secret_key)
    except MalformedCallback as exc:
        raise InvalidSignature(f"cannot rebuild the signed string ({exc})") from exc
    if not _same_hex(expected, given):
        raise InvalidSignature("signature does not match the body")
    amount = _integer(_required(body, "amount"), "amount")
    if amount <= 0:
        raise MalformedCallback("amount", f"must be positive, got {amount}")
    result_code = _integer(_required(body, "resultCode"), "resultCode")
    response_ms = body.get("responseTime")
    return GatewayPayment(
        provider=Provider.MOMO,
        provider_txn_id=str(_integer(_required(body, "transId"), "transId")),
        order_id=str(_required(body, "orderId")),
        amount_vnd=amount,
        paid=result_code == 0,
        status_code=str(result_code),
        description=str(body.get("orderInfo") or ""),
        paid_at=(
            datetime.fromtimestamp(_integer(response_ms, "responseTime") / 1000, VIETNAM_TZ)
            if response_ms is not None
            else None
        ),
        raw=dict(body),
    )


# --------------------------------------------------------------------------- Casso

CASSO_SIGNATURE_HEADER = "X-Casso-Signature"
#: How far a Casso signature timestamp may be from our clock before the call is refused.
CASSO_DEFAULT_TOLERANCE = timedelta(minutes=5)


def casso_canonical_body(body: Mapping[str, Any]) -> str:
    """Compact JSON with object keys sorted at every depth, non-ASCII kept as is (like JS
    ``JSON.stringify``)."""
    return json.dumps(dict(body), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def casso_signature(body: Mapping[str, Any], key: str, timestamp_ms: int) -> str:
    """Casso webhook v2 ``v1``: HMAC-SHA512 hex of ``"<t>.<canonical JSON>"`` with the webhook key."""
    message = f"{timestamp_ms}.{casso_canonical_body(body)}"
    return hmac.new(key.encode("utf-8"), message.encode("utf-8"), hashlib.sha512).hexdigest()


def parse_casso_signature_header(header: str | None) -> tuple[int, str]:
    """Split ``t=<ms>,v1=<hex>`` into ``(t, v1)``; raise :class:`InvalidSignature` if it is not that."""
    if not header:
        raise InvalidSignature(f"{CASSO_SIGNATURE_HEADER} is missing")
    parts: dict[str, str] = {}
    for item in header.split(","):
        name, sep, value = item.strip().partition("=")
        if sep:
            parts[name.strip()] = value.strip()
    timestamp, digest = parts.get("t", ""), parts.get("v1", "")
    if not timestamp.isdigit() or not re.fullmatch(r"[0-9a-fA-F]{128}", digest):
        raise InvalidSignature(f"{CASSO_SIGNATURE_HEADER} must look like t=<ms>,v1=<128 hex digits>")
    return int(timestamp), digest


def verify_casso_webhook(
    body: Mapping[str, Any],
    signature_header: str | None,
    key: str,
    *,
    now: datetime | None = None,
    tolerance: timedelta = CASSO_DEFAULT_TOLERANCE,
) -> BankTransfer:
    """Check a Casso webhook v2 call (parsed JSON body plus its signature header) and normalise it.

    The signature covers the timestamp, so a captured call replayed later is
    refused with :class:`StaleCallback` once it is older than ``tolerance``
    (timestamps that far in the future are refused too).
    """
    timestamp_ms, given = parse_casso_signature_header(signature_header)
    if not _same_hex(casso_signature(body, key, timestamp_ms), given):
        raise InvalidSignature(f"{CASSO_SIGNATURE_HEADER} does not match the body")
    current = now or datetime.now(UTC)
    signed_at = datetime.fromtimestamp(timestamp_ms / 1000, UTC)
    if abs(current - signed_at) > tolerance:
        raise StaleCallback(
            f"signed at {signed_at.isoformat()}, now {current.isoformat()}, tolerance {tolerance}"
        )
    data = body.get("data")
    if not isinstance(data, Mapping):
        raise MalformedCallback("data", "must be an object (Casso webhook v2)")
    amount = _integer(_required(data, "amount"), "data.amount")
    when = data.get("transactionDateTime")
    return BankTransfer(
        provider=Provider.CASSO,
        provider_txn_id=str(_required(data, "id")),
        amount_vnd=abs(amount),
        incoming=amount > 0,
        description=str(data.get("description") or ""),
        account_number=str(data.get("accountNumber") or ""),
        bank_reference=str(data.get("reference") or ""),
        occurred_at=_local_time(when, "data.transactionDateTime", "%Y-%m-%d %H:%M:%S") if when else None,
        raw=dict(body),
    )


# --------------------------------------------------------------------------- SePay


def verify_sepay_auth(authorization_header: str | None, api_key: str) -> None:
    """Check ``Authorization: Apikey <key>`` in constant time; raise :class:`InvalidSignature` if wrong."""
    scheme, _, given = (authorization_header or "").strip().partition(" ")
    if scheme.lower() != "apikey" or not given.strip():
        raise InvalidSignature("Authorization must be 'Apikey <key>'")
    if not hmac.compare_digest(given.strip().encode("utf-8"), api_key.encode("utf-8")):
        raise InvalidSignature("API key does not match")


def verify_sepay_webhook(
    body: Mapping[str, Any], authorization_header: str | None, api_key: str
) -> BankTransfer:
    """Check a SePay webhook's API key and normalise its body.

    SePay retries up to 7 times over about 33 minutes until it gets
    ``{"success": true}`` with HTTP 200/201.
    """
    verify_sepay_auth(authorization_header, api_key)
    transfer_type = str(_required(body, "transferType")).lower()
    if transfer_type not in ("in", "out"):
        raise MalformedCallback("transferType", f"must be 'in' or 'out', got {transfer_type!r}")
    amount = _integer(_required(body, "transferAmount"), "transferAmount")
    if amount <= 0:
        raise MalformedCallback("transferAmount", f"must be positive, got {amount}")
    when = body.get("transactionDate")
    return BankTransfer(
        provider=Provider.SEPAY,
        provider_txn_id=str(_required(body, "id")),
        amount_vnd=amount,
        incoming=transfer_type == "in",
        description=str(body.get("content") or ""),
        account_number=str(body.get("accountNumber") or ""),
        bank_reference=str(body.get("referenceCode") or ""),
        occurred_at=_local_time(when, "transactionDate", "%Y-%m-%d %H:%M:%S") if when else None,
        raw=dict(body),
    )


# --------------------------------------------------------------------------- matching


@dataclass(frozen=True)
class InvoiceCodePattern:
    """Invoice codes made of a letter prefix and a fixed number of digits, e.g. ``HD000123``."""

    prefix: str = "HD"
    digits: int = 6

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[A-Za-z]+", self.prefix) or self.digits < 1:
            raise ValueError("prefix must be letters and digits must be >= 1")

    def regex(self) -> re.Pattern[str]:
        """Prefix, at most one separator a bank may insert, the digits, and no further digit."""
        return re.compile(
            rf"{re.escape(self.prefix)}[ ._\-]?([0-9]{{{self.digits}}})(?![0-9])", re.IGNORECASE
        )


INVOICE_CODE = InvoiceCodePattern()


def find_invoice_code(text: str, pattern: InvoiceCodePattern = INVOICE_CODE) -> str | None:
    """Find the invoice code in a free-text transfer description, in canonical form.

    Banks rewrite descriptions: they add prefixes and suffixes
    ("MBVCB.1234.<name> chuyen tien HD000123.CT tu 0123"), drop spaces
    ("CKHD000123"), change case, or keep diacritics ("HĐ000123"). Letters may
    touch the code on either side; a digit right after it may not (``HD0001234``
    is not ``HD000123``). The same code repeated is one match; two different
    codes raise :class:`AmbiguousInvoiceCode`.
    """
    found = [
        f"{pattern.prefix.upper()}{match.group(1)}"
        for match in pattern.regex().finditer(strip_diacritics(text))
    ]
    unique = list(dict.fromkeys(found))
    if len(unique) > 1:
        raise AmbiguousInvoiceCode(unique)
    return unique[0] if unique else None
