"""Readiness for systemd's `Type=notify` units: the sd_notify datagram protocol.

systemd passes `NOTIFY_SOCKET` (a path, or `@name` in the abstract namespace); the daemon
sends `READY=1` once it serves and `STOPPING=1` when a shutdown begins. Without the variable
nothing is sent, so the same binary runs under any supervisor. A send that fails is logged,
never fatal: readiness must not be what takes a serving daemon down.
"""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger("flowplan.daemon")


def notify(message: str) -> bool:
    """Send `message` (e.g. "READY=1\\nSTATUS=...") to `$NOTIFY_SOCKET`; True if sent."""
    address = os.environ.get("NOTIFY_SOCKET", "")
    if not address:
        return False
    if address.startswith("@"):  # abstract namespace: a leading NUL instead of the @
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(message.encode())
    except OSError as exc:
        log.warning("could not tell the service manager %r through NOTIFY_SOCKET=%s: %s",
                    message.split("\n", 1)[0], os.environ.get("NOTIFY_SOCKET"), exc)
        return False
    return True
