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
        assert not limiter.blocked("a")
        limiter.failed("a")
    assert limiter.blocked("a") and not limiter.blocked("b")
    clock[0] += 61
    assert not limiter.blocked("a")
