"""Tests for `transport.pipe_frames`: codec messages behind a length, over a pipe."""

from __future__ import annotations

import io

import pytest

from actors._errors import DecodeError
from actors._policy.payloads import MAX_MESSAGE_BYTES
from actors.messages import CancelRun, Credit, Job, Run
from transport.pipe_frames import HEADER, FrameBuffer, pack, read_frame

RUN = Run(Job("j1", "echo", {"a": [1, "two"]}, 1), 7)
CANCEL = CancelRun("j1", 1, 7, "timeout")
ALLOWED = (Run, CancelRun)


def test_frames_fed_a_byte_at_a_time_come_out_whole_and_in_order() -> None:
    data = pack(RUN) + pack(CANCEL)
    frames = FrameBuffer(ALLOWED)
    got: list[object] = []
    for i in range(len(data)):
        got += frames.feed(data[i : i + 1])
    assert got == [RUN, CANCEL]


def test_a_length_over_the_limit_is_refused_before_its_body_arrives() -> None:
    header = HEADER.pack(MAX_MESSAGE_BYTES + 1)
    with pytest.raises(DecodeError, match="over the"):
        FrameBuffer(ALLOWED).feed(header)
    with pytest.raises(DecodeError, match="over the"):
        read_frame(io.BytesIO(header), ALLOWED)


@pytest.mark.parametrize(
    "data",
    [
        HEADER.pack(3) + b"abc",  # no message
        pack(Credit(1)),  # a message, not one this side takes
    ],
)
def test_a_frame_that_is_no_message_for_this_side_is_refused(data: bytes) -> None:
    with pytest.raises(DecodeError):
        FrameBuffer(ALLOWED).feed(data)
    with pytest.raises(DecodeError):
        read_frame(io.BytesIO(data), ALLOWED)


def test_read_frame_ends_cleanly_only_between_frames() -> None:
    stream = io.BytesIO(pack(RUN))
    assert read_frame(stream, ALLOWED) == RUN
    assert read_frame(stream, ALLOWED) is None
    with pytest.raises(DecodeError, match="inside a frame header"):
        read_frame(io.BytesIO(pack(RUN)[:2]), ALLOWED)
    with pytest.raises(DecodeError, match="inside a frame"):
        read_frame(io.BytesIO(pack(RUN)[:-1]), ALLOWED)
