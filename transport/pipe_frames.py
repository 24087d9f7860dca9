"""Codec messages over a pipe: how a process slot and its child talk.

A frame is a 4-byte big-endian length, then that many bytes: one
`transport.codec` envelope. A pipe is a byte stream, so the length is what
finds the end of a message; ZeroMQ does that for the node links, a pipe cannot.

Decoding trusts nothing, as the codec does: a length over the codec's limit is
refused before a byte of the body is awaited (a corrupt header must not make
the reader wait for gigabytes that never come), and so is a message of a type
the reading side does not expect. Either is a `DecodeError`.
"""

from __future__ import annotations

import os
import struct
from typing import BinaryIO

from actors._errors import DecodeError
from actors._policy.payloads import MAX_MESSAGE_BYTES
from transport.codec import decode, encode

__all__ = ["HEADER", "FrameBuffer", "pack", "read_frame", "write_all"]

HEADER = struct.Struct(">I")
"""The length prefix of a frame."""


def pack(msg: object) -> bytes:
    """``msg`` as one frame.

    Raises:
        InvalidArgument, NotSerializable: as `transport.codec.encode`.
    """
    data = encode(msg)
    return HEADER.pack(len(data)) + data


def _check_length(length: int, header: bytes) -> None:
    if length > MAX_MESSAGE_BYTES:
        msg = f"a frame of {length} bytes, over the {MAX_MESSAGE_BYTES} a message may take"
        raise DecodeError(msg, raw=header)


def _check_type(msg: object, allowed: tuple[type, ...], body: bytes) -> object:
    if not isinstance(msg, allowed):
        reason = f"unexpected {type(msg).__name__} on this pipe"
        raise DecodeError(reason, raw=body)
    return msg


class FrameBuffer:
    """Cuts the bytes read from a non-blocking pipe into messages."""

    def __init__(self, allowed: tuple[type, ...]) -> None:
        self._allowed = allowed
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[object]:
        """Add bytes read; return the messages they complete, in order.

        Raises:
            DecodeError: a frame is too long, is no message, or carries a type
                that is not allowed. The stream cannot be trusted after that.
        """
        buffer = self._buffer
        buffer += data
        messages: list[object] = []
        while len(buffer) >= HEADER.size:
            (length,) = HEADER.unpack_from(buffer)
            _check_length(length, bytes(buffer[: HEADER.size]))
            end = HEADER.size + length
            if len(buffer) < end:
                break
            body = bytes(buffer[HEADER.size : end])
            del buffer[:end]
            messages.append(_check_type(decode(body), self._allowed, body))
        return messages


def read_frame(stream: BinaryIO, allowed: tuple[type, ...]) -> object | None:
    """Read one message from a blocking stream; None at a clean end of file.

    Raises:
        DecodeError: as `FrameBuffer.feed`, or the stream ended inside a frame.
    """
    header = _read_exactly(stream, HEADER.size)
    if not header:
        return None
    if len(header) < HEADER.size:
        raise DecodeError("the pipe ended inside a frame header", raw=header)
    (length,) = HEADER.unpack(header)
    _check_length(length, header)
    body = _read_exactly(stream, length)
    if len(body) < length:
        raise DecodeError("the pipe ended inside a frame", raw=header + body)
    return _check_type(decode(body), allowed, body)


def _read_exactly(stream: BinaryIO, size: int) -> bytes:
    parts: list[bytes] = []
    left = size
    while left:
        part = stream.read(left)
        if not part:
            break
        parts.append(part)
        left -= len(part)
    return b"".join(parts)


def write_all(fd: int, data: bytes) -> None:
    """Write every byte of ``data`` to a blocking descriptor.

    Raises:
        OSError: the pipe is closed at the other end (`BrokenPipeError`).
    """
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
