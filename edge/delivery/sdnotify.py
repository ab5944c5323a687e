"""The systemd notification protocol (sd_notify), without libsystemd: one datagram per message.

Does nothing when ``$NOTIFY_SOCKET`` is unset (not started by systemd), so the daemon runs anywhere.
"""

from __future__ import annotations

import logging
import os
import socket
import time

log = logging.getLogger(__name__)


class SystemdNotifier:
    def __init__(self, environ: dict[str, str] | None = None):
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET")
        self._address = ("\0" + address[1:]) if address and address.startswith("@") else address
        usec = env.get("WATCHDOG_USEC")
        pid = env.get("WATCHDOG_PID")
        watchdog_for_us = usec is not None and (pid is None or pid == str(os.getpid()))
        self.watchdog_interval_s = int(usec) / 1e6 / 2 if watchdog_for_us and usec.isdigit() else None
        self._last_ping = 0.0
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) if self._address else None

    @property
    def enabled(self) -> bool:
        return self._sock is not None

    def notify(self, *fields: str) -> None:
        if self._sock is None:
            return
        try:
            self._sock.sendto("\n".join(fields).encode(), self._address)
        except OSError as exc:  # systemd gone or the socket unwritable: never fatal for the monitor
            log.debug("sd_notify failed: %s", exc)

    def ready(self, status: str = "") -> None:
        self.notify("READY=1", f"STATUS={status}" if status else "STATUS=running")

    def status(self, text: str) -> None:
        self.notify(f"STATUS={text}")

    def watchdog(self, now: float | None = None) -> bool:
        """Ping when half the watchdog interval has passed. Call it only from the frame loop after a frame."""
        if self.watchdog_interval_s is None:
            return False
        now = time.monotonic() if now is None else now
        if now - self._last_ping < self.watchdog_interval_s:
            return False
        self._last_ping = now
        self.notify("WATCHDOG=1")
        return True

    def reloading(self) -> None:
        self.notify("RELOADING=1")

    def stopping(self) -> None:
        self.notify("STOPPING=1")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
