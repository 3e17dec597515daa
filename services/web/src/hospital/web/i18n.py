"""The message catalogue: Vietnamese first, English as the switch. key -> (vi, en).

Back-end error codes (``<code>`` of a refused call) have entries ``err.<code>``; a code without one shows
the service's own message.
"""

from __future__ import annotations

from typing import Literal

Lang = Literal["vi", "en"]
LANGS: tuple[Lang, ...] = ("vi", "en")

MESSAGES: dict[str, tuple[str, str]] = {
    "app.name": ("Hệ thống thông tin bệnh viện", "Hospital information system"),
    "app.hospital": ("Bệnh viện Đa khoa tỉnh", "Provincial General Hospital"),
    "lang.switch": ("English", "Tiếng Việt"),
    "lang.switch_label": ("Chuyển sang tiếng Anh", "Switch to Vietnamese"),
    "skip": ("Bỏ qua, tới nội dung chính", "Skip to main content"),
    # sign-in
    "signin.title": ("Đăng nhập", "Sign in"),
    "signin.intro": (
        "Đăng nhập bằng tài khoản do quản trị viên cấp.",
        "Sign in with the account your administrator gave you.",
    ),
    "signin.username": ("Tên đăng nhập", "Username"),
    "signin.password": ("Mật khẩu", "Password"),
    "signin.submit": ("Đăng nhập", "Sign in"),
    "signin.invalid": ("Sai tên đăng nhập hoặc mật khẩu.", "Wrong username or password."),
    "signin.locked": (
        "Tài khoản tạm khoá do nhập sai mật khẩu nhiều lần. "
        "Thử lại sau {minutes} phút hoặc liên hệ quản trị viên.",
        "The account is locked after repeated wrong passwords. "
        "Try again in {minutes} minutes or call the administrator.",
    ),
    "signin.required": ("Vui lòng nhập {field}.", "Please enter the {field}."),
    "signin.expired": (
        "Phiên làm việc đã kết thúc. Vui lòng đăng nhập lại.",
        "Your session ended. Please sign in again.",
    ),
    "signout": ("Đăng xuất", "Sign out"),
    "signout.done": ("Bạn đã đăng xuất.", "You are signed out."),
    # errors
    "csrf.title": ("Yêu cầu bị từ chối", "Request refused"),
    "csrf.body": (
        "Biểu mẫu đã hết hạn hoặc không được gửi từ trang này. Hãy tải lại trang và thử lại.",
        "The form expired or was not sent from this page. Reload the page and try again.",
    ),
    "forbidden.title": ("Không có quyền truy cập", "Access denied"),
    "forbidden.body": (
        "Vai trò {role} không được dùng màn hình này.",
        "The {role} role may not use this screen.",
    ),
    "notfound.title": ("Không tìm thấy trang", "Page not found"),
    "back_home": ("Về trang chính", "Back to the start page"),
    "unavailable": (
        "Dịch vụ {service} hiện không phản hồi. "
        "Phần này tạm thời không dùng được; các phần khác vẫn hoạt động.",
        "The {service} service is not answering. "
        "This part is unavailable for now; the rest of the page works.",
    ),
    "retry": ("Thử lại", "Retry"),
    "form.fix": ("Vui lòng sửa các trường được đánh dấu.", "Please correct the marked fields."),
    "busy": ("Đang xử lý…", "Working…"),
    # services
    "svc.admissions": ("Tiếp đón (admissions)", "Admissions"),
    "svc.lab": ("Xét nghiệm (lab)", "Laboratory"),
    "svc.billing": ("Viện phí (billing)", "Billing"),
    "svc.imaging": ("Chẩn đoán hình ảnh (imaging)", "Imaging"),
    "svc.emr": ("Bệnh án (emr)", "Medical record (EMR)"),
    # roles
    "role.receptionist": ("Lễ tân", "Receptionist"),
    "role.nurse": ("Điều dưỡng", "Nurse"),
    "role.doctor": ("Bác sĩ", "Doctor"),
    "role.lab_technician": ("Kỹ thuật viên xét nghiệm", "Lab technician"),
    "role.radiographer": ("Kỹ thuật viên CĐHA", "Radiographer"),
    "role.radiologist": ("Bác sĩ CĐHA", "Radiologist"),
    "role.cashier": ("Thu ngân", "Cashier"),
    "role.admin": ("Quản trị hệ thống", "Administrator"),
    "role.auditor": ("Kiểm tra, giám sát", "Auditor"),
    # navigation
    "nav.home": ("Trang chính", "Start"),
    "nav.reception": ("Tiếp đón", "Reception"),
    "nav.display": ("Màn hình phòng chờ", "Waiting-room display"),
    "nav.users": ("Người dùng", "Users"),
    "nav.main": ("Chức năng", "Screens"),
    "home.title": ("Xin chào, {name}", "Hello, {name}"),
    "home.none": (
        "Vai trò của bạn chưa có màn hình nào trên giao diện web.",
        "Your role has no web screen yet.",
    ),
    "home.shortcuts": ("Phím tắt: Alt+số mở màn hình tương ứng.", "Shortcuts: Alt+number opens a screen."),
    # reception
    "rec.title": ("Tiếp đón bệnh nhân", "Patient reception"),
    "rec.scan": ("Quét CCCD / thẻ BHYT", "Scan CCCD / BHYT card"),
    "rec.scan_hint": (
        "Đặt con trỏ ở ô này (F2) rồi quét mã QR; máy quét tự gửi khi xong.",
        "Keep the cursor in this field (F2) and scan the QR code; the reader submits it.",
    ),
    "rec.scan_submit": ("Đọc mã", "Read code"),
    "rec.search": ("Tìm bệnh nhân", "Find a patient"),
    "rec.search_hint": (
        "Họ tên (có hoặc không dấu), CCCD, số thẻ BHYT, số điện thoại, mã BN (F3)",
        "Name (with or without diacritics), CCCD, BHYT number, phone, patient code (F3)",
    ),
    "rec.search_none": ("Không tìm thấy bệnh nhân phù hợp.", "No matching patient."),
    "rec.card": ("Thông tin trên thẻ", "Card details"),
    "rec.kind.cccd": ("Căn cước công dân", "Citizen ID (CCCD)"),
    "rec.kind.bhyt": ("Thẻ bảo hiểm y tế", "Health insurance card (BHYT)"),
    "rec.conflicts": ("Cần kiểm tra", "To check"),
    "rec.candidates": ("Hồ sơ có thể trùng", "Possible matches"),
    "rec.no_candidates": (
        "Chưa có hồ sơ: sẽ tạo hồ sơ mới từ thẻ.",
        "No record yet: a new one is created from the card.",
    ),
    "rec.create_new": ("Tạo hồ sơ mới từ thẻ", "Create a new record from the card"),
    "rec.match.cccd": ("trùng số CCCD", "same CCCD"),
    "rec.match.bhyt_number": ("trùng số thẻ BHYT", "same BHYT number"),
    "rec.match.name_birth_sex": ("trùng họ tên, năm sinh, giới", "same name, birth year, sex"),
    "rec.patient": ("Bệnh nhân", "Patient"),
    "rec.choose": ("Chọn hồ sơ", "Choose the record"),
    "rec.room": ("Phòng khám", "Clinic room"),
    "rec.kind": ("Đối tượng", "Visit type"),
    "rec.kind.insured": ("Bảo hiểm y tế", "Insured (BHYT)"),
    "rec.kind.fee_paying": ("Thu phí", "Fee-paying"),
    "rec.kind.emergency": ("Cấp cứu", "Emergency"),
    "rec.confirm_conflicts": ("Tôi đã kiểm tra các điểm cần lưu ý ở trên", "I have checked the points above"),
    "rec.open_visit": ("Mở lượt khám và in số", "Open the visit and print the ticket"),
    "rec.ticket": ("Số thứ tự", "Queue number"),
    "rec.ticket_for": ("Lượt khám {code}", "Visit {code}"),
    "rec.print": ("In phiếu (Ctrl+P)", "Print ticket (Ctrl+P)"),
    "rec.next_patient": ("Bệnh nhân tiếp theo (Esc)", "Next patient (Esc)"),
    "rec.birth": ("Ngày sinh", "Date of birth"),
    "rec.sex": ("Giới", "Sex"),
    "sex.male": ("Nam", "Male"),
    "sex.female": ("Nữ", "Female"),
    "rec.address": ("Địa chỉ", "Address"),
    "rec.code": ("Mã BN", "Patient code"),
    "rec.bhyt_valid": ("Hạn thẻ", "Card valid"),
    "rec.open_for": ("Mở lượt khám", "Open a visit"),
    "rec.err.choose": ("Hãy chọn một hồ sơ hoặc tạo hồ sơ mới.", "Choose a record or create a new one."),
    "rec.err.confirm": (
        "Hãy xác nhận đã kiểm tra trước khi mở lượt khám.",
        "Confirm you have checked before opening the visit.",
    ),
    "rec.err.room": ("Hãy chọn phòng khám.", "Choose a clinic room."),
    "rec.err.scan_again": (
        "Mã đã quét không còn hợp lệ, hãy quét lại.",
        "The scanned code is no longer valid; scan again.",
    ),
    # display
    "disp.title": ("Màn hình phòng chờ", "Waiting-room display"),
    "disp.choose": ("Chọn phòng để hiển thị", "Choose the room to show"),
    "disp.now": ("Đang khám", "Now serving"),
    "disp.waiting": ("Đang chờ", "Waiting"),
    "disp.none": ("—", "—"),
    "disp.invite": ("Mời số {n} vào phòng khám", "Number {n}, please come in"),
    "disp.make_link": ("Tạo liên kết cho TV", "Link for a TV"),
    "disp.link_label": (
        "Liên kết cho màn hình TV (hết hạn {date}), mở trên TV không cần đăng nhập:",
        "Link for the TV (valid until {date}), opens without signing in:",
    ),
    "disp.link_open": ("Mở thử", "Open it"),
    "disp.link_missing": (
        "Liên kết màn hình thiếu chữ ký. Hãy tạo liên kết mới tại quầy tiếp đón.",
        "The display link is not signed. Ask the reception for a new one.",
    ),
    "disp.link_invalid": (
        "Liên kết màn hình không hợp lệ cho phòng này. Hãy tạo liên kết mới tại quầy tiếp đón.",
        "The display link is not valid for this room. Ask the reception for a new one.",
    ),
    "disp.link_expired": (
        "Liên kết màn hình đã hết hạn. Hãy tạo liên kết mới tại quầy tiếp đón.",
        "The display link has expired. Ask the reception for a new one.",
    ),
    "disp.room_unknown": ("Không có phòng khám này.", "No such clinic room."),
    "disp.empty": ("Không còn ai đang chờ", "Nobody is waiting"),
    "disp.open": ("Mở màn hình", "Open display"),
    "disp.reconnecting": ("Đang kết nối lại…", "Reconnecting…"),
    # lab bench
    "nav.lab": ("Xét nghiệm", "Lab bench"),
    "lab.title": ("Bàn xét nghiệm", "Lab bench"),
    "lab.receive": ("Nhận mẫu", "Receive specimens"),
    "lab.barcode": ("Mã vạch ống mẫu", "Tube barcode"),
    "lab.receive_hint": (
        "Quét mã vạch trên ống (F2); mỗi lần quét nhận một mẫu.",
        "Scan the tube's barcode (F2); each scan receives one specimen.",
    ),
    "lab.receive_submit": ("Nhận", "Receive"),
    "lab.received": ("Đã nhận mẫu {barcode}", "Specimen {barcode} received"),
    "lab.worklist": ("Kết quả chờ duyệt", "Results to verify"),
    "lab.worklist_empty": ("Không có kết quả nào chờ duyệt.", "No result is waiting for verification."),
    "lab.verify": ("Duyệt kết quả đã chọn", "Verify selected results"),
    "lab.select_all": ("Chọn tất cả", "Select all"),
    "lab.select": ("Chọn {test} của {patient}", "Select {test} of {patient}"),
    "lab.verified": ("Đã duyệt {n} kết quả.", "{n} result(s) verified."),
    "lab.patient": ("Bệnh nhân", "Patient"),
    "lab.test": ("Xét nghiệm", "Test"),
    "lab.value": ("Kết quả", "Result"),
    "lab.range": ("Khoảng tham chiếu", "Reference range"),
    "lab.flag": ("Cờ", "Flag"),
    "lab.instrument": ("Máy", "Instrument"),
    "lab.order": ("Phiếu", "Order"),
    "lab.tube": ("Ống", "Tube"),
    "lab.tests": ("Xét nghiệm", "Tests"),
    "lab.critical": ("Nguy kịch", "Critical"),
    "lab.criticals": ("Giá trị nguy kịch chưa báo", "Critical values to call"),
    "lab.criticals_empty": (
        "Không có giá trị nguy kịch nào chờ báo.",
        "No critical value is waiting to be called.",
    ),
    "lab.notified_person": ("Người nhận tin", "Person told"),
    "lab.notified_role": ("Chức danh", "Their role"),
    "lab.read_back": ("Người nhận đã đọc lại kết quả", "They read the result back"),
    "lab.note": ("Ghi chú", "Note"),
    "lab.log_call": ("Ghi nhận cuộc gọi", "Log the call"),
    "lab.called": ("Đã ghi nhận cuộc gọi báo giá trị nguy kịch.", "The critical-value call is logged."),
    "lab.ordering_doctor": ("Bác sĩ chỉ định", "Ordering doctor"),
    "lab.err.barcode": ("Hãy quét mã vạch ống mẫu.", "Scan the tube's barcode."),
    "lab.err.select": ("Hãy chọn ít nhất một kết quả.", "Select at least one result."),
    "lab.err.person": ("Hãy nhập tên người nhận tin.", "Enter who was told."),
    "lab.err.role": ("Hãy nhập chức danh người nhận tin.", "Enter their role."),
    "lab.err.read_back": (
        "Chỉ ghi nhận khi người nhận đã đọc lại kết quả.",
        "Log the call only after the read-back.",
    ),
    "err.specimen.not_found": ("Không tìm thấy mẫu có mã vạch này.", "No specimen has this barcode."),
    "flag.H": ("Cao", "High"),
    "flag.L": ("Thấp", "Low"),
    "flag.HH": ("Rất cao", "Critically high"),
    "flag.LL": ("Rất thấp", "Critically low"),
    "flag.A": ("Bất thường", "Abnormal"),
    "flag.N": ("Bình thường", "Normal"),
    # cashier
    "nav.cashier": ("Thu ngân", "Cashier"),
    "cash.title": ("Thu ngân", "Cashier"),
    "cash.find": ("Mở hoá đơn", "Open an invoice"),
    "cash.number": ("Số hoá đơn", "Invoice number"),
    "cash.open": ("Mở", "Open"),
    "cash.find_hint": (
        "Gõ hoặc quét số hoá đơn (HD…), hoặc chọn trong danh sách chưa thanh toán.",
        "Type or scan the invoice number (HD…), or pick one of the unpaid invoices.",
    ),
    "cash.shift": ("Ca thu ngân", "Cashier shift"),
    "cash.shift_open": ("Ca đang mở", "Shift open"),
    "cash.shift_closed": (
        "Chưa mở ca: cần mở ca trước khi thu tiền mặt.",
        "No open shift: open one before taking cash.",
    ),
    "cash.float": ("Tiền đầu ca", "Opening float"),
    "cash.open_shift": ("Mở ca", "Open shift"),
    "cash.unpaid": ("Hoá đơn chưa thanh toán", "Unpaid invoices"),
    "cash.none_unpaid": ("Không có hoá đơn nào chưa thanh toán.", "No unpaid invoice."),
    "cash.choose": ("Chọn hoặc quét một hoá đơn để xem chi tiết.", "Pick or scan an invoice to see it."),
    "cash.invoice": ("Hoá đơn", "Invoice"),
    "cash.visit": ("lượt khám", "visit"),
    "cash.fee_paying": ("Người bệnh thu phí (không BHYT)", "Fee-paying (no BHYT)"),
    "cash.item": ("Dịch vụ", "Item"),
    "cash.qty": ("SL", "Qty"),
    "cash.amount": ("Thành tiền", "Amount"),
    "cash.insurance_pays": ("BHYT chi trả", "BHYT pays"),
    "cash.patient_pays": ("Người bệnh trả", "Patient pays"),
    "cash.not_covered": ("ngoài danh mục BHYT", "not covered"),
    "cash.total": ("Tổng cộng", "Total"),
    "cash.paid": ("Đã thanh toán", "Paid"),
    "cash.balance": ("Còn phải thu", "Balance due"),
    "cash.show_qr": ("Hiện mã VietQR", "Show the VietQR"),
    "cash.qr_alt": (
        "Mã VietQR chuyển khoản {amount} cho hoá đơn {number}",
        "VietQR for {amount}, invoice {number}",
    ),
    "cash.qr_content": ("Nội dung chuyển khoản", "Transfer content"),
    "cash.qr_account": ("Tài khoản", "Account"),
    "cash.qr_hint": (
        "Người bệnh quét bằng ứng dụng ngân hàng; trạng thái tự cập nhật khi tiền về.",
        "The patient scans it with a banking app; the status updates by itself when the money arrives.",
    ),
    "cash.cash_amount": ("Tiền mặt nhận (₫)", "Cash received (₫)"),
    "cash.take_cash": ("Thu tiền mặt", "Take cash"),
    "cash.received": ("Đã thu {amount} tiền mặt.", "{amount} in cash received."),
    "cash.err.amount": ("Nhập số tiền bằng số, ví dụ 50000.", "Enter the amount in digits, e.g. 50000."),
    "cash.err.number": ("Số hoá đơn không hợp lệ.", "Not an invoice number."),
    "err.shift.not_open": (
        "Chưa mở ca thu ngân: hãy mở ca trước khi thu tiền.",
        "Open your cashier shift first.",
    ),
    "err.shift.already_open": ("Bạn đang có ca mở.", "You already have an open shift."),
    "err.invoice.not_found": ("Không tìm thấy hoá đơn.", "No such invoice."),
    "err.payment.amount": ("Số tiền phải lớn hơn 0.", "The amount must be above zero."),
    "err.payment.overpaid": ("Số tiền lớn hơn số còn phải thu.", "More than the balance due."),
    "inv.status.open": ("Chưa thanh toán", "Unpaid"),
    "inv.status.issued": ("Đã phát hành", "Issued"),
    "inv.status.partly_paid": ("Thanh toán một phần", "Partly paid"),
    "inv.status.paid": ("Đã thanh toán đủ", "Paid in full"),
    "inv.status.refunded": ("Đã hoàn tiền", "Refunded"),
    "inv.status.void": ("Đã huỷ", "Void"),
    # users
    "users.title": ("Quản lý người dùng", "Users"),
    "users.create": ("Thêm người dùng", "Add a user"),
    "users.username": ("Tên đăng nhập", "Username"),
    "users.display_name": ("Họ tên hiển thị", "Name shown"),
    "users.role": ("Vai trò", "Role"),
    "users.password": ("Mật khẩu ban đầu", "Initial password"),
    "users.new_password": ("Mật khẩu mới", "New password"),
    "users.reset": ("Đặt lại mật khẩu", "Reset password"),
    "users.status": ("Trạng thái", "Status"),
    "users.active": ("Đang dùng", "Active"),
    "users.locked": ("Đang khoá", "Locked"),
    "users.inactive": ("Ngừng dùng", "Inactive"),
    "users.last_login": ("Đăng nhập gần nhất", "Last sign-in"),
    "users.created": ("Đã tạo tài khoản {username}.", "Account {username} created."),
    "users.reset_done": (
        "Đã đặt lại mật khẩu cho {username}; các phiên đang mở đã kết thúc.",
        "Password of {username} reset; their open sessions ended.",
    ),
    "users.submit": ("Tạo tài khoản", "Create account"),
    "users.actions": ("Thao tác", "Actions"),
    "users.never": ("Chưa", "Never"),
    # field errors (codes from the domain)
    "err.user.username": (
        "Từ 3-64 ký tự: chữ thường không dấu, số, dấu chấm, gạch dưới hoặc gạch ngang; bắt đầu bằng chữ.",
        "3-64 characters: lower-case letters, digits, '.', '_' or '-', starting with a letter.",
    ),
    "err.user.exists": ("Tên đăng nhập này đã có người dùng.", "This username is taken."),
    "err.user.role": ("Hãy chọn một vai trò.", "Choose a role."),
    "err.user.display_name": ("Hãy nhập họ tên hiển thị.", "Enter the name shown on screens."),
    "err.password.too_short": (
        "Mật khẩu cần ít nhất {min} ký tự.",
        "The password needs at least {min} characters.",
    ),
    "err.password.too_long": ("Mật khẩu tối đa 256 ký tự.", "At most 256 characters."),
    "err.password.is_username": (
        "Mật khẩu không được trùng tên đăng nhập.",
        "The password must not be the username.",
    ),
    "err.qr.empty": ("Chưa có dữ liệu quét.", "Nothing was scanned."),
    "err.qr.unknown_format": (
        "Không nhận ra mã: không phải QR của CCCD hoặc thẻ BHYT.",
        "Not a CCCD or BHYT card QR code.",
    ),
    "err.qr.truncated": ("Mã bị thiếu, hãy quét lại.", "The code is incomplete; scan again."),
    "err.cccd.bad_id": (
        "Số CCCD trên mã không hợp lệ (cần 12 chữ số).",
        "The CCCD number in the code is invalid (12 digits).",
    ),
    "err.cccd.missing_name": ("Mã CCCD thiếu họ tên.", "The CCCD code has no name."),
    "err.cccd.bad_date": ("Ngày trên mã CCCD không hợp lệ.", "A date in the CCCD code is invalid."),
    "err.cccd.bad_sex": ("Giới tính trên mã CCCD không hợp lệ.", "The sex in the CCCD code is invalid."),
    "err.bhyt.bad_card_number": ("Số thẻ BHYT không hợp lệ.", "The BHYT card number is invalid."),
    "err.bhyt.bad_date": ("Ngày trên thẻ BHYT không hợp lệ.", "A date on the BHYT card is invalid."),
    "err.bhyt.missing_terminator": (
        "Mã thẻ BHYT bị thiếu phần cuối, hãy quét lại.",
        "The BHYT code is incomplete; scan again.",
    ),
    "err.visit.room": ("Phòng khám không tồn tại hoặc đã đóng.", "No such open clinic room."),
    "err.visit.already_open": (
        "Bệnh nhân đã có lượt khám đang mở.",
        "The patient already has an open visit.",
    ),
    "err.patient.name": ("Họ tên không hợp lệ.", "The name is invalid."),
}


def translate(key: str, lang: Lang, **values: object) -> str:
    pair = MESSAGES.get(key)
    if pair is None:
        return key
    text = pair[0] if lang == "vi" else pair[1]
    return text.format(**values) if values else text


def has(key: str) -> bool:
    return key in MESSAGES
