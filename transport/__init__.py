"""Moving postroom messages between processes and into storage.

`encode` turns any message of `actors.messages` into compact, versioned msgpack
bytes; `decode` turns such bytes back into an equal message, or raises
`DecodeError` for anything else. The ZeroMQ links and the journal use nothing
but these two functions; `transport.protocol` adds the node protocol's rules on
top (which side may send which message, and its version).
"""

from __future__ import annotations

from actors._errors import DecodeError
from transport.codec import VERSION, decode, encode

__all__ = ["VERSION", "DecodeError", "decode", "encode"]
