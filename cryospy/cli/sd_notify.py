"""systemd's readiness protocol (sd_notify(3)), which ``Type=notify`` units wait for.

``cryospy serve`` sends ``READY=1`` once MinIO and the runtime answer, so ``systemctl start cryospy`` returns
(and units ordered after it start) only when the dashboard and the device API really listen, and
``STOPPING=1`` when SIGTERM arrives. Outside systemd (no ``$NOTIFY_SOCKET``) every call is a no-op. The
protocol is one datagram on a Unix socket; an abstract socket is named with a leading ``@``.
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Notifier:
    address: str   # "" when no service manager listens

    @classmethod
    def claim(cls, env: dict[str, str] | os._Environ[str] | None = None) -> Notifier:
        """Take ``$NOTIFY_SOCKET`` out of the environment (sd_notify's ``unset_environment``): child processes
        must not inherit it, since MinIO speaks this protocol too and would declare the service ready before
        the runtime listens."""
        return cls((os.environ if env is None else env).pop("NOTIFY_SOCKET", ""))

    def notify(self, state: str) -> bool:
        """Send ``state`` (e.g. ``"READY=1"``) to the service manager; False when there is none to tell."""
        if not self.address:
            return False
        address = "\0" + self.address[1:] if self.address.startswith("@") else self.address
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.connect(address)
                sock.sendall(state.encode())
        except OSError as exc:
            log.warning("could not tell the service manager %r at $NOTIFY_SOCKET: %s", state, exc)
            return False
        return True
