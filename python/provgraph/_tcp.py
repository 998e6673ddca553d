"""One helper both ends of an HTTP/1.1 connection need (the lean server, the bench's clients)."""

from __future__ import annotations

import asyncio
import socket
from typing import cast

__all__ = ["nodelay_transport"]


def nodelay_transport(transport: asyncio.BaseTransport) -> asyncio.Transport:
    """A new connection's transport with TCP_NODELAY set (each request or answer is one write)."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:  # pragma: no cover - non-TCP transports
            pass
    # uvloop's transports don't subclass asyncio.Transport, hence the cast.
    return cast(asyncio.Transport, transport)
