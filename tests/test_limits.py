"""Which address the failed-redeem limit counts, and the limit's window."""

from types import SimpleNamespace

from gateway.limits import FailureLimiter, client_address


def request(peer, **headers):
    return SimpleNamespace(ip=peer, headers={k.replace("_", "-"): v for k, v in headers.items()})


def test_proxy_headers_are_trusted_only_from_loopback():
    assert client_address(request("127.0.0.1", x_real_ip="203.0.113.7")) == "203.0.113.7"
    assert client_address(request("::1", x_forwarded_for="10.1.1.1, 203.0.113.8")) == "203.0.113.8"
    assert client_address(request("127.0.0.1")) == "127.0.0.1"
    assert client_address(request("198.51.100.2", x_real_ip="203.0.113.7")) == "198.51.100.2"


def test_limit_counts_failures_within_the_window(monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr("gateway.limits.time.monotonic", lambda: clock[0])
    limiter = FailureLimiter(max_failures=3, window=60)
    for _ in range(3):
        assert limiter.begin("a") is not None
        clock[0] += 1
    assert limiter.begin("a") is None and limiter.begin("b") is not None
    clock[0] += 61
    assert limiter.begin("a") is not None


def test_attempts_count_while_pending_and_successes_are_released(monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr("gateway.limits.time.monotonic", lambda: clock[0])
    limiter = FailureLimiter(max_failures=3, window=60)
    pending = []
    for _ in range(3):  # three at once, none answered yet: a fourth must wait
        pending.append(limiter.begin("a"))
        clock[0] += 0.001
    assert None not in pending and limiter.begin("a") is None
    limiter.release("a", pending[0])  # that one succeeded
    assert limiter.begin("a") is not None


def test_many_addresses_keep_the_table_bounded(monkeypatch):
    monkeypatch.setattr("gateway.limits.MAX_CLIENTS", 50)
    limiter = FailureLimiter(max_failures=2, window=600)
    for i in range(500):
        limiter.begin(f"2001:db8::{i:x}")
    assert len(limiter) <= 50
    limiter.begin("a")
    limiter.begin("a")
    assert limiter.begin("a") is None  # the latest addresses are still remembered


def test_proxy_headers_that_are_not_addresses_are_not_keys():
    """Any string would otherwise be a fresh key, each with its own failure budget."""
    assert client_address(request("127.0.0.1", x_real_ip="x" * 205)) == "127.0.0.1"
    assert client_address(request("127.0.0.1", x_real_ip="203.0.113.7 junk")) == "127.0.0.1"
    assert client_address(request("127.0.0.1", x_forwarded_for="10.1.1.1, unknown")) == "127.0.0.1"
    # a bad X-Real-IP does not hide a good X-Forwarded-For; one address is one key however written
    assert client_address(request("127.0.0.1", x_real_ip="nope", x_forwarded_for="203.0.113.8")) == "203.0.113.8"
    assert client_address(request("::1", x_real_ip="2001:DB8:0:0::1")) == "2001:db8::1"
