"""Payment callbacks: signatures are recomputed here by hand (hmac/hashlib), never by the code under test."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime, timedelta

import pytest

from hospital.billing.domain.callbacks import (
    AmbiguousInvoiceCode,
    InvalidSignature,
    InvoiceCodePattern,
    MalformedCallback,
    Provider,
    StaleCallback,
    VnpRspCode,
    find_invoice_code,
    verify_casso_webhook,
    verify_momo_ipn,
    verify_sepay_auth,
    verify_sepay_webhook,
    verify_vnpay_ipn,
    vnpay_ipn_reply,
    vnpay_rsp_code,
)
from hospital.billing.domain.vietnam import VIETNAM_TZ

# ------------------------------------------------------------------ VNPay

VNP_SECRET = "SECRETKEYVNPAYSANDBOX0123456789"


def _vnp_params() -> dict[str, str]:
    return {
        "vnp_Amount": "15000000",
        "vnp_BankCode": "NCB",
        "vnp_BankTranNo": "VNP14422574",
        "vnp_CardType": "ATM",
        "vnp_OrderInfo": "Thanh toan vien phi HD000123",
        "vnp_PayDate": "20240802101530",
        "vnp_ResponseCode": "00",
        "vnp_TmnCode": "BVDKTINH",
        "vnp_TransactionNo": "14422574",
        "vnp_TransactionStatus": "00",
        "vnp_TxnRef": "HD000123-1",
    }


# What VNPay signs for _vnp_params(), written out by hand: keys sorted, values
# form-encoded (spaces as "+").
VNP_SIGNED_STRING = (
    "vnp_Amount=15000000&vnp_BankCode=NCB&vnp_BankTranNo=VNP14422574&vnp_CardType=ATM"
    "&vnp_OrderInfo=Thanh+toan+vien+phi+HD000123&vnp_PayDate=20240802101530&vnp_ResponseCode=00"
    "&vnp_TmnCode=BVDKTINH&vnp_TransactionNo=14422574&vnp_TransactionStatus=00&vnp_TxnRef=HD000123-1"
)


def _vnp_signed(params: dict[str, str], signed_string: str, secret: str = VNP_SECRET) -> dict[str, str]:
    digest = hmac.new(secret.encode(), signed_string.encode(), hashlib.sha512).hexdigest()
    return {**params, "vnp_SecureHashType": "HmacSHA512", "vnp_SecureHash": digest}


def test_vnpay_valid_ipn() -> None:
    payment = verify_vnpay_ipn(_vnp_signed(_vnp_params(), VNP_SIGNED_STRING), VNP_SECRET)
    assert payment.provider is Provider.VNPAY
    assert payment.amount_vnd == 150_000
    assert payment.paid is True
    assert payment.order_id == "HD000123-1"
    assert payment.provider_txn_id == "14422574"
    assert payment.description == "Thanh toan vien phi HD000123"
    assert payment.paid_at == datetime(2024, 8, 2, 10, 15, 30, tzinfo=VIETNAM_TZ)
    assert payment.paid_at.astimezone(UTC).hour == 3


def test_vnpay_uppercase_hash_and_foreign_parameters_are_accepted() -> None:
    params = _vnp_signed(_vnp_params(), VNP_SIGNED_STRING)
    params["vnp_SecureHash"] = params["vnp_SecureHash"].upper()
    params["utm_source"] = "zalo"  # not a vnp_ parameter: not signed, ignored
    assert verify_vnpay_ipn(params, VNP_SECRET).paid is True


def test_vnpay_special_characters_are_form_encoded() -> None:
    params = {**_vnp_params(), "vnp_OrderInfo": "Vien phi: HD000123 & thuoc/VTYT"}
    signed_string = VNP_SIGNED_STRING.replace(
        "vnp_OrderInfo=Thanh+toan+vien+phi+HD000123", "vnp_OrderInfo=Vien+phi%3A+HD000123+%26+thuoc%2FVTYT"
    )
    assert verify_vnpay_ipn(_vnp_signed(params, signed_string), VNP_SECRET).description.endswith("thuoc/VTYT")


@pytest.mark.parametrize(
    ("name", "value"),
    [("vnp_Amount", "150000000"), ("vnp_ResponseCode", "24"), ("vnp_TxnRef", "HD000124-1")],
)
def test_vnpay_tampered_parameter_is_rejected(name: str, value: str) -> None:
    params = _vnp_signed(_vnp_params(), VNP_SIGNED_STRING)
    params[name] = value
    with pytest.raises(InvalidSignature):
        verify_vnpay_ipn(params, VNP_SECRET)


def test_vnpay_forged_with_another_secret_is_rejected() -> None:
    forged = _vnp_signed(_vnp_params(), VNP_SIGNED_STRING, secret="ATTACKER")
    with pytest.raises(InvalidSignature):
        verify_vnpay_ipn(forged, VNP_SECRET)


def test_vnpay_missing_hash_is_rejected() -> None:
    with pytest.raises(InvalidSignature):
        verify_vnpay_ipn(_vnp_params(), VNP_SECRET)


def test_vnpay_not_paid_unless_both_codes_are_00() -> None:
    params = {**_vnp_params(), "vnp_TransactionStatus": "02"}
    signed_string = VNP_SIGNED_STRING.replace("vnp_TransactionStatus=00", "vnp_TransactionStatus=02")
    payment = verify_vnpay_ipn(_vnp_signed(params, signed_string), VNP_SECRET)
    assert payment.paid is False
    assert payment.status_code == "00/02"


def test_vnpay_amount_not_in_hundredths_is_malformed() -> None:
    params = {**_vnp_params(), "vnp_Amount": "15000050"}
    signed_string = VNP_SIGNED_STRING.replace("vnp_Amount=15000000", "vnp_Amount=15000050")
    with pytest.raises(MalformedCallback) as info:
        verify_vnpay_ipn(_vnp_signed(params, signed_string), VNP_SECRET)
    assert info.value.field == "vnp_Amount"


def test_vnpay_reply_codes() -> None:
    payment = verify_vnpay_ipn(_vnp_signed(_vnp_params(), VNP_SIGNED_STRING), VNP_SECRET)
    assert (
        vnpay_rsp_code(payment, order_amount_vnd=None, order_already_settled=False)
        is VnpRspCode.ORDER_NOT_FOUND
    )
    assert vnpay_rsp_code(payment, order_amount_vnd=140_000, order_already_settled=False) == "04"
    assert vnpay_rsp_code(payment, order_amount_vnd=150_000, order_already_settled=True) == "02"
    assert vnpay_rsp_code(payment, order_amount_vnd=150_000, order_already_settled=False) == "00"
    assert [code.value for code in VnpRspCode] == ["00", "01", "02", "04", "97", "99"]
    assert vnpay_ipn_reply(VnpRspCode.INVALID_SIGNATURE) == {"RspCode": "97", "Message": "Invalid signature"}


# ------------------------------------------------------------------ MoMo

MOMO_ACCESS_KEY = "F8BBA842ECF85"
MOMO_SECRET = "K951B6PE1waDMi640xX08PD3vg6EkVlz"


def _momo_body() -> dict[str, object]:
    return {
        "partnerCode": "MOMOBVDK2024",
        "orderId": "HD000123-2",
        "requestId": "HD000123-2-r1",
        "amount": 150000,
        "orderInfo": "Thanh toán viện phí HD000123",
        "orderType": "momo_wallet",
        "transId": 4088878653,
        "resultCode": 0,
        "message": "Thành công.",
        "payType": "qr",
        "responseTime": 1722568530000,
        "extraData": "",
    }


MOMO_SIGNED_STRING = (
    "accessKey=F8BBA842ECF85&amount=150000&extraData=&message=Thành công.&orderId=HD000123-2"
    "&orderInfo=Thanh toán viện phí HD000123&orderType=momo_wallet&partnerCode=MOMOBVDK2024&payType=qr"
    "&requestId=HD000123-2-r1&responseTime=1722568530000&resultCode=0&transId=4088878653"
)


def _momo_signed(body: dict[str, object], signed_string: str, secret: str = MOMO_SECRET) -> dict[str, object]:
    digest = hmac.new(secret.encode("utf-8"), signed_string.encode("utf-8"), hashlib.sha256).hexdigest()
    return {**body, "signature": digest}


def test_momo_valid_ipn() -> None:
    payment = verify_momo_ipn(
        _momo_signed(_momo_body(), MOMO_SIGNED_STRING), access_key=MOMO_ACCESS_KEY, secret_key=MOMO_SECRET
    )
    assert payment.provider is Provider.MOMO
    assert (payment.amount_vnd, payment.paid, payment.order_id) == (150_000, True, "HD000123-2")
    assert payment.provider_txn_id == "4088878653"
    assert payment.paid_at == datetime(2024, 8, 2, 3, 15, 30, tzinfo=UTC)


def test_momo_failed_payment_is_not_paid() -> None:
    body = {**_momo_body(), "resultCode": 1006, "message": "Giao dịch bị từ chối bởi người dùng."}
    signed_string = MOMO_SIGNED_STRING.replace("resultCode=0", "resultCode=1006").replace(
        "message=Thành công.", "message=Giao dịch bị từ chối bởi người dùng."
    )
    payment = verify_momo_ipn(
        _momo_signed(body, signed_string), access_key=MOMO_ACCESS_KEY, secret_key=MOMO_SECRET
    )
    assert payment.paid is False and payment.status_code == "1006"


@pytest.mark.parametrize(
    ("name", "value"), [("amount", 15000), ("resultCode", 0.0), ("orderId", "HD000999-1")]
)
def test_momo_tampered_body_is_rejected(name: str, value: object) -> None:
    body = _momo_signed(_momo_body(), MOMO_SIGNED_STRING)
    body[name] = value
    with pytest.raises(InvalidSignature):
        verify_momo_ipn(body, access_key=MOMO_ACCESS_KEY, secret_key=MOMO_SECRET)


def test_momo_forged_or_unsigned_is_rejected() -> None:
    with pytest.raises(InvalidSignature):
        verify_momo_ipn(
            _momo_signed(_momo_body(), MOMO_SIGNED_STRING, secret="guess"),
            access_key=MOMO_ACCESS_KEY,
            secret_key=MOMO_SECRET,
        )
    with pytest.raises(InvalidSignature):
        verify_momo_ipn(_momo_body(), access_key=MOMO_ACCESS_KEY, secret_key=MOMO_SECRET)


# ------------------------------------------------------------------ Casso

CASSO_KEY = "casso-webhook-checksum-key-0001"
NOW = datetime(2024, 8, 2, 3, 16, 0, tzinfo=UTC)
NOW_MS = int(NOW.timestamp() * 1000)


def _casso_body(amount: int = 150000) -> dict[str, object]:
    return {
        "error": 0,
        "data": {
            "id": 9134567,
            "reference": "FT24215123456789",
            "description": "MBVCB.1234.NGUYEN VAN AN chuyen tien HD000123.CT tu 0123",
            "amount": amount,
            "runningBalance": 25150000,
            "transactionDateTime": "2024-08-02 10:15:00",
            "accountNumber": "113366668888",
            "bankName": "Ngân hàng Công Thương",
            "bankAbbreviation": "ICB",
            "virtualAccountNumber": "",
            "counterAccountName": "NGUYEN VAN AN",
        },
    }


def _casso_canonical(amount: int = 150000) -> str:
    # Compact JSON of _casso_body(), keys sorted at both levels, non-ASCII kept: written by hand.
    return (
        '{"data":{"accountNumber":"113366668888","amount":' + str(amount) + ',"bankAbbreviation":"ICB",'
        '"bankName":"Ngân hàng Công Thương","counterAccountName":"NGUYEN VAN AN",'
        '"description":"MBVCB.1234.NGUYEN VAN AN chuyen tien HD000123.CT tu 0123","id":9134567,'
        '"reference":"FT24215123456789","runningBalance":25150000,'
        '"transactionDateTime":"2024-08-02 10:15:00","virtualAccountNumber":""},"error":0}'
    )


def _casso_header(timestamp_ms: int, canonical: str, key: str = CASSO_KEY) -> str:
    message = f"{timestamp_ms}.{canonical}".encode()
    return f"t={timestamp_ms},v1={hmac.new(key.encode(), message, hashlib.sha512).hexdigest()}"


def test_casso_valid_webhook() -> None:
    transfer = verify_casso_webhook(
        _casso_body(), _casso_header(NOW_MS - 2000, _casso_canonical()), CASSO_KEY, now=NOW
    )
    assert transfer.provider is Provider.CASSO
    assert (transfer.provider_txn_id, transfer.amount_vnd, transfer.incoming) == ("9134567", 150_000, True)
    assert transfer.account_number == "113366668888"
    assert transfer.bank_reference == "FT24215123456789"
    assert transfer.occurred_at == datetime(2024, 8, 2, 10, 15, tzinfo=VIETNAM_TZ)
    assert find_invoice_code(transfer.description) == "HD000123"


def test_casso_outgoing_transfer() -> None:
    header = _casso_header(NOW_MS, _casso_canonical(amount=-20000))
    transfer = verify_casso_webhook(_casso_body(amount=-20000), header, CASSO_KEY, now=NOW)
    assert (transfer.amount_vnd, transfer.incoming) == (20_000, False)


def test_casso_tampered_body_is_rejected() -> None:
    header = _casso_header(NOW_MS, _casso_canonical())
    with pytest.raises(InvalidSignature):
        verify_casso_webhook(_casso_body(amount=1_500_000), header, CASSO_KEY, now=NOW)


def test_casso_wrong_key_or_timestamp_is_rejected() -> None:
    with pytest.raises(InvalidSignature):
        verify_casso_webhook(
            _casso_body(), _casso_header(NOW_MS, _casso_canonical(), key="x"), CASSO_KEY, now=NOW
        )
    # a valid v1 moved to another t no longer matches: t is signed
    digest = _casso_header(NOW_MS, _casso_canonical()).split("v1=")[1]
    with pytest.raises(InvalidSignature):
        verify_casso_webhook(_casso_body(), f"t={NOW_MS + 1},v1={digest}", CASSO_KEY, now=NOW)


def test_casso_old_callback_is_rejected_even_when_signed() -> None:
    old = NOW_MS - int(timedelta(minutes=6).total_seconds() * 1000)
    with pytest.raises(StaleCallback):
        verify_casso_webhook(_casso_body(), _casso_header(old, _casso_canonical()), CASSO_KEY, now=NOW)
    future = NOW_MS + int(timedelta(minutes=6).total_seconds() * 1000)
    with pytest.raises(StaleCallback):
        verify_casso_webhook(_casso_body(), _casso_header(future, _casso_canonical()), CASSO_KEY, now=NOW)
    # the window is a parameter
    transfer = verify_casso_webhook(
        _casso_body(),
        _casso_header(old, _casso_canonical()),
        CASSO_KEY,
        now=NOW,
        tolerance=timedelta(minutes=10),
    )
    assert transfer.amount_vnd == 150_000


@pytest.mark.parametrize("header", [None, "", "v1=abc", "t=abc,v1=" + "0" * 128, f"t={NOW_MS},v1=zz"])
def test_casso_malformed_header_is_rejected(header: str | None) -> None:
    with pytest.raises(InvalidSignature):
        verify_casso_webhook(_casso_body(), header, CASSO_KEY, now=NOW)


# ------------------------------------------------------------------ SePay

SEPAY_KEY = "SEPAY-API-KEY-7f3a9c"


def _sepay_body() -> dict[str, object]:
    return {
        "id": 92704,
        "gateway": "Vietcombank",
        "transactionDate": "2024-08-02 10:15:00",
        "accountNumber": "0011001234567",
        "code": "HD000123",
        "content": "TRAN THI BICH NGOC chuyen tien HD000123",
        "transferType": "in",
        "transferAmount": 150000,
        "accumulated": 19077000,
        "subAccount": None,
        "referenceCode": "MBVCB.3278907687",
        "description": "",
    }


def test_sepay_valid_webhook() -> None:
    transfer = verify_sepay_webhook(_sepay_body(), f"Apikey {SEPAY_KEY}", SEPAY_KEY)
    assert transfer.provider is Provider.SEPAY
    assert (transfer.provider_txn_id, transfer.amount_vnd, transfer.incoming) == ("92704", 150_000, True)
    assert transfer.bank_reference == "MBVCB.3278907687"
    assert transfer.occurred_at == datetime(2024, 8, 2, 10, 15, tzinfo=VIETNAM_TZ)
    assert find_invoice_code(transfer.description) == "HD000123"


@pytest.mark.parametrize(
    "header", [None, "", "Apikey", f"Bearer {SEPAY_KEY}", "Apikey wrong-key", f"Apikey {SEPAY_KEY}x"]
)
def test_sepay_bad_api_key_is_rejected(header: str | None) -> None:
    with pytest.raises(InvalidSignature):
        verify_sepay_auth(header, SEPAY_KEY)
    with pytest.raises(InvalidSignature):
        verify_sepay_webhook(_sepay_body(), header, SEPAY_KEY)


def test_sepay_scheme_is_case_insensitive() -> None:
    verify_sepay_auth(f"APIKEY {SEPAY_KEY}", SEPAY_KEY)


@pytest.mark.parametrize(
    ("name", "value"),
    [("id", None), ("transferAmount", "15.0"), ("transferType", "sideways"), ("transferAmount", 0)],
)
def test_sepay_malformed_field_is_named(name: str, value: object) -> None:
    body = {**_sepay_body(), name: value}
    with pytest.raises(MalformedCallback) as info:
        verify_sepay_webhook(body, f"Apikey {SEPAY_KEY}", SEPAY_KEY)
    assert info.value.field == name


# ------------------------------------------------------------------ invoice codes


@pytest.mark.parametrize(
    ("description", "code"),
    [
        ("MBVCB.1234.NGUYEN VAN AN chuyen tien HD000123.CT tu 0123", "HD000123"),
        ("IBFT TRAN THI BICH NGOC CHUYEN KHOAN HD000123", "HD000123"),
        ("CKHD000123", "HD000123"),
        ("hd000123 thanh toan vien phi", "HD000123"),
        ("VP 24001234 HD000123-Ma GD ACSP/ 123456", "HD000123"),
        ("020097042208021523452024VP24001234HD000123", "HD000123"),
        ("REM Tfr Ac:1133666688 HD000123CT", "HD000123"),
        ("TT HD 000123", "HD000123"),
        ("TT HD-000123 LE VIET HUNG", "HD000123"),
        ("Thanh toán HĐ000123 cho bệnh nhân Trần Thị Bích Ngọc", "HD000123"),
        ("HD000123 HD000123 (bank repeated the content)", "HD000123"),
        ("chuyen tien vien phi", None),
        ("HD0001234", None),  # seven digits: another code, not HD000123
        ("HD00012 thieu so", None),
        ("", None),
    ],
)
def test_find_invoice_code(description: str, code: str | None) -> None:
    assert find_invoice_code(description) == code


def test_two_different_invoices_are_ambiguous() -> None:
    with pytest.raises(AmbiguousInvoiceCode) as info:
        find_invoice_code("NGUYEN VAN AN tra HD000123 va HD000124")
    assert info.value.codes == ["HD000123", "HD000124"]


def test_custom_invoice_pattern() -> None:
    assert (
        find_invoice_code("VP 24001234 HD000123", InvoiceCodePattern(prefix="VP", digits=8)) == "VP24001234"
    )
    with pytest.raises(ValueError):
        InvoiceCodePattern(prefix="H.", digits=6)
