"""Moving postroom messages between processes and into storage.

`encode` turns any message of `actors.messages` into compact, versioned msgpack
bytes; `decode` turns such bytes back into an equal message, or raises
`DecodeError` for anything else. The ZeroMQ links and the journal use nothing
but these two functions; `transport.protocol` adds the node protocol's rules on
top (which side may send which message, and its version). `Node` is a worker
node: it runs the jobs a scheduler in another process lends it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from actors._errors import DecodeError
from transport.codec import VERSION, decode, encode

if TYPE_CHECKING:
    from transport.node import Node, NodeStats

__all__ = ["VERSION", "DecodeError", "Node", "NodeStats", "decode", "encode"]


def __getattr__(name: str) -> Any:
    # Imported on first use: the journal imports this package for its codec,
    # and needs neither ZeroMQ nor the node's threads.
    if name in ("Node", "NodeStats"):
        from transport import node

        return getattr(node, name)
    raise AttributeError(f"module 'transport' has no attribute {name!r}")
