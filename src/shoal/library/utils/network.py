"""Network utilities (netUnicorn's ``netunicorn.library.tasks.utils.network``)."""

from __future__ import annotations

import socket

from shoal.model.pipeline import Task

__all__ = ["PortKnock"]


class PortKnock(Task):
    """Open a TCP connection to ``ip``:``port`` and close it at once (a knock).

    As netUnicorn's, whether the connection succeeds does not matter: the
    step always succeeds with 0. ``timeout`` (seconds, shoal's) bounds the
    attempt; without it the system's connect timeout applies.
    """

    def __init__(
        self, ip: str, port: int, name: str | None = None, *, timeout: float | None = None
    ) -> None:
        if not isinstance(ip, str) or not ip:
            raise TypeError(f"ip must be a host name or address (str), got {ip!r}")
        if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
            raise ValueError(f"port must be an int from 1 to 65535, got {port!r}")
        super().__init__(name)
        self.ip = ip
        self.port = port
        self.timeout = timeout

    def run(self) -> int:
        try:
            with socket.create_connection((self.ip, self.port), timeout=self.timeout):
                pass
        except OSError:
            pass  # a closed or filtered port is still a knock
        return 0
