"""Failed-attempt limits for the unauthenticated redeem routes, per client address."""

import ipaddress
import time

MAX_FAILURES = 10
WINDOW = 600.0  # seconds
MAX_CLIENTS = 10_000
LOOPBACK = {"127.0.0.1", "::1", "::ffff:127.0.0.1"}


def client_address(request) -> str:
    """The client's address. Behind the server's nginx (a loopback peer) it is the address nginx
    put in X-Real-IP or appended last to X-Forwarded-For; from anyone else those headers are lies.
    A value that is not an IP address is not used: any string would be a fresh limiter key."""
    peer = request.ip
    if peer in LOOPBACK:
        for candidate in (request.headers.get("x-real-ip", ""),
                          request.headers.get("x-forwarded-for", "").split(",")[-1]):
            address = _ip(candidate.strip())
            if address:
                return address
    return peer


def _ip(text: str) -> str | None:
    """text in its canonical form when it is an IP address (one address, one key), else None."""
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


class FailureLimiter:
    """Recent failures per address, least recently touched first. An attempt counts as a failure
    from the moment it starts (`begin`) until it is known to have succeeded (`release`): attempts
    sent all at once cannot slip past the limit while their answers are pending. At most
    MAX_CLIENTS addresses are remembered; beyond that the least recently touched are forgotten, so
    many addresses cannot make the table (or the time to keep it) grow without bound."""

    def __init__(self, max_failures: int = MAX_FAILURES, window: float = WINDOW):
        self.max_failures = max_failures
        self.window = window
        self._failures: dict[str, list[float]] = {}

    def __len__(self) -> int:
        return len(self._failures)

    def begin(self, address: str) -> float | None:
        """Count an attempt as failed now; its stamp for `release`, or None when blocked."""
        recent = self._recent(address)
        if len(recent) >= self.max_failures:
            return None
        stamp = time.monotonic()
        self._store(address, recent + [stamp])
        return stamp

    def release(self, address: str, stamp: float) -> None:
        """The attempt begun at `stamp` did not fail: it no longer counts."""
        recent = self._failures.get(address)
        if recent and stamp in recent:
            recent.remove(stamp)

    def _store(self, address: str, recent: list[float]) -> None:
        self._failures.pop(address, None)  # re-inserted last: the dict's order is recency
        while len(self._failures) >= MAX_CLIENTS:
            del self._failures[next(iter(self._failures))]
        self._failures[address] = recent

    def _recent(self, address: str) -> list[float]:
        cutoff = time.monotonic() - self.window
        return [t for t in self._failures.get(address, ()) if t > cutoff]
