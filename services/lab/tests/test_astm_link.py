"""Sans-IO E1381 state machines: receiver and sender, and the two wired together."""

from __future__ import annotations

from pathlib import Path

import pytest

from hospital.lab.api.astm.codec import (
    ACK,
    ENQ,
    EOT,
    NAK,
    Control,
    Frame,
    FrameBuffer,
    build_frames,
    encode_frame,
)
from hospital.lab.api.astm.link import (
    Finished,
    MessageDiscarded,
    MessageReceived,
    Receiver,
    ReceiverAction,
    ReceiverState,
    RetryAfter,
    Send,
    Sender,
    SenderAction,
    SenderOutcome,
    SenderState,
    TransferEnded,
)
from hospital.lab.api.astm.message import parse_message
from hospital.lab.simulator import load_astm_capture

MESSAGE = [
    b"H|\\^&|||XN-550",
    b"P|1||BN0001||Nguy\xe1\xbb\x85n^Th\xe1\xbb\x8b Hoa",
    b"O|1||^^        A1^B",
    b"R|1|^^^^WBC^1|7.2|10*3/uL||N||F",
    b"L|1|N",
]
ENQ_EV, EOT_EV, ACK_EV, NAK_EV = Control(ENQ), Control(EOT), Control(ACK), Control(NAK)


def parse_frame(wire: bytes) -> Frame:
    (frame,) = FrameBuffer().feed(wire)
    assert isinstance(frame, Frame)
    return frame


def frames() -> list[Frame]:
    return [parse_frame(w) for w in build_frames(MESSAGE)]


def sent(actions: list[ReceiverAction] | list[SenderAction]) -> bytes:
    return b"".join(a.data for a in actions if isinstance(a, Send))


def open_transfer() -> Receiver:
    receiver = Receiver()
    assert sent(receiver.handle(ENQ_EV)) == bytes((ACK,))
    return receiver


def feed_all_but_last(receiver: Receiver) -> Frame:
    *body, last = frames()
    for frame in body:
        assert sent(receiver.handle(frame)) == bytes((ACK,))
    return last


def test_enq_is_acknowledged_or_refused_when_busy() -> None:
    receiver = Receiver()
    receiver.busy = True
    assert sent(receiver.handle(ENQ_EV)) == bytes((NAK,))
    assert receiver.state is ReceiverState.IDLE
    receiver.busy = False
    assert sent(receiver.handle(ENQ_EV)) == bytes((ACK,))
    assert receiver.expects_frame


def test_frames_outside_a_transfer_are_ignored() -> None:
    assert Receiver().handle(frames()[0]) == []


def test_final_ack_is_withheld_until_stored() -> None:
    receiver = open_transfer()
    last = feed_all_but_last(receiver)
    actions = receiver.handle(last)
    assert sent(actions) == b""
    (delivered,) = actions
    assert isinstance(delivered, MessageReceived)
    assert parse_message(delivered.raw).patients[0].orders[0].results[0].value == "7.2"
    assert receiver.state is ReceiverState.AWAITING_STORE and not receiver.expects_frame
    assert receiver.handle(last) == []  # an impatient retransmission changes nothing
    assert sent(receiver.stored()) == bytes((ACK,))
    assert receiver.handle(EOT_EV) == [TransferEnded()]
    assert receiver.state is ReceiverState.IDLE


def test_store_failure_naks_and_the_retransmission_is_delivered_again() -> None:
    receiver = open_transfer()
    last = feed_all_but_last(receiver)
    (first,) = receiver.handle(last)
    assert sent(receiver.store_failed()) == bytes((NAK,))
    (second,) = receiver.handle(last)
    assert isinstance(first, MessageReceived) and isinstance(second, MessageReceived)
    assert second.raw == first.raw  # the message is not duplicated by the retry
    assert sent(receiver.stored()) == bytes((ACK,))


def test_stored_without_pending_message_is_an_error() -> None:
    with pytest.raises(RuntimeError):
        open_transfer().stored()


def test_bad_checksum_is_naked_then_the_retransmission_accepted() -> None:
    receiver = open_transfer()
    wire = build_frames(MESSAGE)[0]
    corrupted = parse_frame(wire[:-4] + b"FF\r\n")
    assert sent(receiver.handle(corrupted)) == bytes((NAK,))
    assert sent(receiver.handle(parse_frame(wire))) == bytes((ACK,))


def test_wrong_frame_number_is_naked() -> None:
    receiver = open_transfer()
    assert sent(receiver.handle(parse_frame(encode_frame(2, b"H|\\^&\r")))) == bytes((NAK,))
    assert sent(receiver.handle(parse_frame(encode_frame(1, b"H|\\^&\r")))) == bytes((ACK,))
    assert sent(receiver.handle(parse_frame(encode_frame(3, b"P|1\r")))) == bytes((NAK,))


def test_retransmitted_previous_frame_is_acknowledged_once_only() -> None:
    receiver = open_transfer()
    all_frames = frames()
    assert sent(receiver.handle(all_frames[0])) == bytes((ACK,))
    assert sent(receiver.handle(all_frames[0])) == bytes((ACK,))  # our ACK was lost; same FN again
    for frame in all_frames[1:-1]:
        receiver.handle(frame)
    (delivered,) = receiver.handle(all_frames[-1])
    assert isinstance(delivered, MessageReceived)
    assert delivered.raw.count(b"H|") == 1


def test_eot_mid_message_discards_the_partial_message() -> None:
    receiver = open_transfer()
    for frame in frames()[:3]:
        receiver.handle(frame)
    discarded, ended = receiver.handle(EOT_EV)
    assert isinstance(discarded, MessageDiscarded) and discarded.raw.startswith(b"H|")
    assert ended == TransferEnded()
    receiver.handle(ENQ_EV)
    *body, last = frames()
    for frame in body:
        receiver.handle(frame)
    (delivered,) = receiver.handle(last)
    assert isinstance(delivered, MessageReceived) and delivered.raw.count(b"H|") == 1


def test_receive_timeout_abandons_the_transfer() -> None:
    receiver = open_transfer()
    receiver.handle(frames()[0])
    discarded, ended = receiver.on_timeout()
    assert isinstance(discarded, MessageDiscarded) and discarded.reason == "receive timeout"
    assert ended == TransferEnded() and receiver.state is ReceiverState.IDLE
    assert receiver.handle(frames()[1]) == []
    assert receiver.on_timeout() == []


def test_eot_while_storing_ends_the_transfer_without_ack() -> None:
    receiver = open_transfer()
    receiver.handle(feed_all_but_last(receiver))
    assert receiver.handle(EOT_EV) == []
    assert sent(receiver.handle(ENQ_EV)) == bytes((NAK,))  # still busy storing
    assert receiver.stored() == [TransferEnded()]
    assert receiver.state is ReceiverState.IDLE


def test_two_messages_in_one_transfer() -> None:
    receiver = open_transfer()
    wire = build_frames(MESSAGE + MESSAGE)
    delivered = []
    for frame in (parse_frame(w) for w in wire):
        for action in receiver.handle(frame):
            if isinstance(action, MessageReceived):
                delivered.append(action.raw)
                receiver.stored()
    assert len(delivered) == 2 and delivered[0] == delivered[1]


def test_c111_style_etb_record_frames_deliver_at_the_l_record(samples: Path) -> None:
    data = (samples / "02_roche_cobas_c111_astm_frames.txt").read_bytes()
    receiver = open_transfer()
    actions = [a for event in FrameBuffer().feed(data) for a in receiver.handle(event)]
    assert sent(actions) == bytes((ACK,)) * 6
    assert isinstance(actions[-1], MessageReceived)
    assert parse_message(actions[-1].raw).results().__next__()[2].value == "40.13"


def run_sender(sender: Sender, replies: list[Control]) -> list[SenderAction]:
    actions = sender.start()
    for reply in replies:
        actions += sender.handle(reply)
    return actions


def test_sender_happy_path() -> None:
    wire = build_frames(MESSAGE)
    sender = Sender(wire, yields_on_contention=True)
    actions = run_sender(sender, [ACK_EV] * (len(wire) + 1))
    assert sent(actions) == bytes((ENQ,)) + b"".join(wire) + bytes((EOT,))
    assert actions[-1] == Finished(SenderOutcome.COMPLETED)
    assert (sender.frames_acked, sender.acks_received, sender.naks) == (len(wire), len(wire) + 1, 0)


def test_sender_retransmits_on_nak_and_gives_up_after_six() -> None:
    wire = build_frames(MESSAGE)
    sender = Sender(wire, yields_on_contention=False)
    actions = run_sender(sender, [ACK_EV, NAK_EV, ACK_EV])
    assert sent(actions) == bytes((ENQ,)) + wire[0] + wire[0] + wire[1]
    failing = Sender(wire, yields_on_contention=False)
    actions = run_sender(failing, [ACK_EV] + [NAK_EV] * 6)
    assert sent(actions) == bytes((ENQ,)) + wire[0] * 6 + bytes((EOT,))
    assert failing.outcome is SenderOutcome.ABORTED and failing.naks == 6


def test_sender_retries_enq_after_busy_nak() -> None:
    sender = Sender(build_frames(MESSAGE), yields_on_contention=True, busy_retry_delay=10.0)
    assert run_sender(sender, [NAK_EV])[-1] == RetryAfter(10.0)
    assert sender.state is SenderState.BACKING_OFF and not sender.awaiting_reply
    assert sent(sender.retry()) == bytes((ENQ,))


def test_sender_times_out_with_eot() -> None:
    sender = Sender(build_frames(MESSAGE), yields_on_contention=True)
    sender.start()
    assert sender.awaiting_reply
    actions = sender.on_timeout()
    assert sent(actions) == bytes((EOT,)) and sender.outcome is SenderOutcome.ABORTED


def test_contention_lis_yields_instrument_retries() -> None:
    lis = Sender(build_frames(MESSAGE), yields_on_contention=True)
    (finished,) = run_sender(lis, [ENQ_EV])[1:]
    assert finished == Finished(SenderOutcome.YIELDED, "contention: the analyzer sends first")
    assert not finished.answer_enq  # the analyzer re-sends its ENQ after a pause
    instrument = Sender(build_frames(MESSAGE), yields_on_contention=False, contention_retry_delay=1.0)
    assert run_sender(instrument, [ENQ_EV])[-1] == RetryAfter(1.0)


def test_lis_backing_off_yields_to_a_new_bid_and_answers_it() -> None:
    lis = Sender(build_frames(MESSAGE), yields_on_contention=True)
    (finished,) = run_sender(lis, [NAK_EV, ENQ_EV])[2:]
    assert (
        isinstance(finished, Finished) and finished.outcome is SenderOutcome.YIELDED and finished.answer_enq
    )


def test_sender_and_receiver_transfer_a_capture_with_noise(samples: Path) -> None:
    capture = load_astm_capture(samples / "05_horiba_yumizen_h500_astm_frames_with_histograms.txt")
    sender = Sender(capture.messages[0].wire_frames(), yields_on_contention=False)
    receiver = Receiver()
    delivered: list[bytes] = []
    outbox = sender.start()
    corrupt_frame = 3
    while sender.outcome is None:
        assert outbox, "sender stalled"
        wire = b"".join(a.data for a in outbox if isinstance(a, Send))
        if sender.frames_sent == corrupt_frame and wire.startswith(b"\x02"):
            wire, corrupt_frame = wire[:5] + b"#" + wire[6:], -1  # one frame damaged on the line
        replies: list[ReceiverAction] = [
            r for event in FrameBuffer().feed(wire) for r in receiver.handle(event)
        ]
        for reply in list(replies):
            if isinstance(reply, MessageReceived):
                delivered.append(reply.raw)
                replies += receiver.stored()
        outbox = [a for event in FrameBuffer().feed(sent(replies)) for a in sender.handle(event)]
    assert sender.outcome is SenderOutcome.COMPLETED and sender.naks == 1
    assert delivered == [capture.messages[0].text]
