"""Failed-attempt limits for the unauthenticated redeem routes, per client address."""

import time

MAX_FAILURES = 10
WINDOW = 600.0  # seconds
MAX_CLIENTS = 10_000
LOOPBACK = {"127.0.0.1", "::1", "::ffff:127.0.0.1"}


def client_address(request) -> str:
    """The client's address. Behind the server's nginx (a loopback peer) it is the address nginx
    put in X-Real-IP or appended last to X-Forwarded-For; from anyone else those headers are lies."""
    peer = request.ip
    if peer in LOOPBACK:
        real = request.headers.get("x-real-ip", "").strip()
        if real:
            return real
        forwarded = request.headers.get("x-forwarded-for", "")
        if forwarded.strip():
            return forwarded.split(",")[-1].strip()
    return peer


class FailureLimiter:
    def __init__(self, max_failures: int = MAX_FAILURES, window: float = WINDOW):
        self.max_failures = max_failures
        self.window = window
        self._failures: dict[str, list[float]] = {}

    def blocked(self, address: str) -> bool:
        recent = self._recent(address)
        return len(recent) >= self.max_failures

    def failed(self, address: str) -> None:
        if len(self._failures) >= MAX_CLIENTS:
            now = time.monotonic()
            self._failures = {a: t for a, t in self._failures.items() if t and t[-1] > now - self.window}
        self._failures[address] = self._recent(address) + [time.monotonic()]

    def _recent(self, address: str) -> list[float]:
        cutoff = time.monotonic() - self.window
        return [t for t in self._failures.get(address, ()) if t > cutoff]
