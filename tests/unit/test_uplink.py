import pytest

from daemon.live.calls import ToolResponse
from daemon.live.uplink import UplinkBuffer
from daemon.media.types import AudioChunk, VideoFrame

pytestmark = pytest.mark.timeout(10)

CHUNK = 640  # 20 ms at 16 kHz


def chunk(n: int) -> AudioChunk:
    return AudioChunk(n.to_bytes(4, "little") * (CHUNK // 4), 16_000, 0.0)


def test_audio_in_order_and_acked_once() -> None:
    ub = UplinkBuffer(1.0, 1.0)
    for i in range(5):
        ub.push_audio(chunk(i), float(i))
    got = []
    while (item := ub.peek_audio()) is not None:
        got.append(int.from_bytes(item.chunk.pcm[:4], "little"))
        ub.mark_sent(item.seq)
        ub.confirm(item.seq)
    assert got == [0, 1, 2, 3, 4]
    assert ub.audio_seconds == 0


def test_bound_drops_oldest_and_counts() -> None:
    ub = UplinkBuffer(0.1, 1.0)  # 100 ms = 5 chunks
    dropped = sum(ub.push_audio(chunk(i), 0.0) for i in range(8))
    assert dropped == 3
    assert ub.stats.audio_dropped == 3
    first = ub.peek_audio()
    assert first is not None and int.from_bytes(first.chunk.pcm[:4], "little") == 3
    assert ub.audio_chunks == 5
    assert ub.audio_seconds == pytest.approx(0.1)


def test_ack_after_overflow_during_send_does_not_skip() -> None:
    ub = UplinkBuffer(0.1, 1.0)
    for i in range(5):
        ub.push_audio(chunk(i), 0.0)
    in_flight = ub.peek_audio()
    assert in_flight is not None
    ub.push_audio(chunk(5), 0.0)  # drops chunk 0 while it is being sent
    ub.mark_sent(in_flight.seq)
    nxt = ub.peek_audio()
    assert nxt is not None and int.from_bytes(nxt.chunk.pcm[:4], "little") == 1


def test_video_rate_and_newest_only() -> None:
    ub = UplinkBuffer(1.0, 1.0)
    assert ub.offer_video(VideoFrame(b"a", 0), 0.0)
    assert not ub.offer_video(VideoFrame(b"b", 0), 0.5)
    assert ub.offer_video(VideoFrame(b"c", 0), 1.0)
    assert ub.stats.video_rate_limited == 1
    assert ub.stats.video_superseded == 1
    frame = ub.take_video()
    assert frame is not None and frame.jpeg == b"c"
    assert ub.take_video() is None


def test_responses_fifo() -> None:
    ub = UplinkBuffer(1.0, 1.0)
    ub.push_response(ToolResponse("1", "a", {}))
    ub.push_response(ToolResponse("2", "a", {}))
    assert ub.has_work()
    r = ub.peek_response()
    assert r is not None and r.id == "1"
    ub.pop_response(r)
    assert [r.id for r in ub.drain_responses()] == ["2"]
    assert not ub.has_work()


def test_responses_are_not_bounded_by_count_but_one_per_call() -> None:
    # Every queued answer is awaited by the server: none may fall off the end.
    ub = UplinkBuffer(1.0, 1.0)
    assert all(ub.push_response(ToolResponse(str(i), "a", {})) for i in range(1000))
    assert not ub.push_response(ToolResponse("7", "a", {"second": True}))
    answers = ub.drain_responses()
    assert [r.id for r in answers] == [str(i) for i in range(1000)]
    assert answers[7].response == {}


def test_cancelled_answers_are_purged_and_a_send_in_flight_pops_only_itself() -> None:
    ub = UplinkBuffer(1.0, 1.0)
    for i in "123":
        ub.push_response(ToolResponse(i, "a", {}))
    head = ub.peek_response()
    assert head is not None and head.id == "1"  # being sent ...
    assert [r.id for r in ub.purge_responses(["1", "3", "nope"])] == ["1", "3"]
    ub.pop_response(head)  # ... the send finishes: "2" must stay
    assert [r.id for r in ub.drain_responses()] == ["2"]


def test_a_replaced_answer_keeps_its_place() -> None:
    ub = UplinkBuffer(1.0, 1.0)
    first = ToolResponse("1", "a", {"output": {1, 2}})
    ub.push_response(first)
    ub.push_response(ToolResponse("2", "a", {}))
    ub.replace_response(ToolResponse("1", "a", {"error": "x"}))
    ub.pop_response(first)  # the original is no longer queued: nothing is popped
    ub.replace_response(ToolResponse("9", "a", {}))  # not queued: not added either
    assert [(r.id, r.response) for r in ub.drain_responses()] == [("1", {"error": "x"}), ("2", {})]


def test_unconfirmed_audio_is_requeued_in_order() -> None:
    ub = UplinkBuffer(1.0, 1.0)
    for i in range(6):
        ub.push_audio(chunk(i), 0.0)
    for _ in range(4):
        item = ub.peek_audio()
        assert item is not None
        ub.mark_sent(item.seq)
    ub.confirm(2)  # a pong after chunk 1 (seq 2)
    assert ub.pending_seconds == pytest.approx(0.04)
    assert ub.requeue_unconfirmed() == (2, 0, 0)
    got = []
    while (item := ub.peek_audio()) is not None:
        got.append(int.from_bytes(item.chunk.pcm[:4], "little"))
        ub.mark_sent(item.seq)
    assert got == [2, 3, 4, 5]
    assert ub.confirm_all() == 4  # how many were taken as read without a pong
    assert ub.audio_seconds == 0
    assert ub.confirm_all() == 0


def test_audio_heard_before_a_mute_is_never_sent_again() -> None:
    """On the socket but unconfirmed when the user mutes, then the server stalls: what
    was heard before the mute is not replayed; what came after it (unmuted) is."""
    ub = UplinkBuffer(1.0, 1.0)
    for i in range(4):
        ub.push_audio(chunk(i), 0.0)
    ub.mark_sent(2)  # chunks 0 and 1 on the socket, unconfirmed; 2 and 3 wait
    assert ub.withdraw_audio() == 2
    ub.push_audio(chunk(9), 0.0)  # unmuted again
    item = ub.peek_audio()
    assert item is not None
    ub.mark_sent(item.seq)
    assert ub.requeue_unconfirmed() == (1, 0, 2)
    got = []
    while (item := ub.peek_audio()) is not None:
        got.append(int.from_bytes(item.chunk.pcm[:4], "little"))
        ub.mark_sent(item.seq)
    assert got == [9]
    assert ub.confirm_all() == 1 and ub.audio_seconds == 0


def test_video_schedule_tolerates_jitter_but_keeps_the_average() -> None:
    ub = UplinkBuffer(1.0, 1.0)
    # a camera delivering every 1.0 s +- 30 ms: every frame is taken
    times = [0.0, 0.98, 2.01, 2.97, 4.0, 4.99]
    assert all(ub.offer_video(VideoFrame(b"f", 0), t) for t in times)
    # a camera delivering twice a second: one in two is taken, on schedule
    ub = UplinkBuffer(1.0, 1.0)
    taken = [t / 2 for t in range(20) if ub.offer_video(VideoFrame(b"f", 0), t / 2)]
    assert len(taken) == 10
    assert ub.stats.video_rate_limited == 10


def test_peek_batch_takes_whole_chunks_up_to_the_size() -> None:
    ub = UplinkBuffer(1.0, 1.0)
    for i in range(5):
        ub.push_audio(chunk(i), 0.0)
    assert [p.seq for p in ub.peek_batch(0.04)] == [1, 2]
    assert [p.seq for p in ub.peek_batch(0.05)] == [1, 2, 3]
    assert [p.seq for p in ub.peek_batch(1.0)] == [1, 2, 3, 4, 5]
    assert ub.audio_chunks == 5  # peeking takes nothing


def test_a_sent_answer_is_kept_until_confirmed_and_requeued_first() -> None:
    ub = UplinkBuffer(1.0, 1.0)
    for i in "123":
        ub.push_response(ToolResponse(i, "a", {}))
    for _ in "12":
        head = ub.peek_response()
        assert head is not None
        ub.response_sent(head)
    mark = ub.last_response_seq  # a ping sent now covers "1" and "2"
    assert ub.unconfirmed_responses == 2
    assert not ub.push_response(ToolResponse("1", "a", {"again": True}))  # still one per call
    head = ub.peek_response()
    assert head is not None and head.id == "3"
    ub.response_sent(head)
    ub.confirm_responses(mark - 1)  # the pong for a ping sent after "1" only
    assert [r.id for r in ub.requeue_unconfirmed_responses()] == ["2", "3"]
    assert ub.unconfirmed_responses == 0
    ub.push_response(ToolResponse("4", "a", {}))
    assert [r.id for r in ub.drain_responses()] == ["2", "3", "4"]  # resent first, in order


def test_confirmed_or_cancelled_answers_are_never_requeued() -> None:
    ub = UplinkBuffer(1.0, 1.0)
    for i in "123":
        ub.push_response(ToolResponse(i, "a", {}))
        head = ub.peek_response()
        assert head is not None
        ub.response_sent(head)
    ub.confirm_responses(1)
    assert ub.purge_responses(["2"]) == []  # sent, so not counted as a queued drop ...
    assert [r.id for r in ub.requeue_unconfirmed_responses()] == ["3"]  # ... but not resent
    head = ub.peek_response()
    assert head is not None
    ub.purge_responses(["3"])  # cancelled while being sent again: not kept
    ub.response_sent(head)
    assert ub.unconfirmed_responses == 0 and not ub.has_work()
    assert ub.confirm_all_responses() == 0
