"""Fixtures: every test gets its own private bus, state root, daemon and gateway, as real processes."""

import httpx
import pytest

from signals import Signals
from stack import TOKEN, Bus, Daemon, Gateway, make_root

pytest_plugins = ["dbusmock.pytest_fixtures"]


@pytest.fixture
def bus(tmp_path):
    b = Bus(tmp_path / "bus")
    yield b
    b.stop()


@pytest.fixture
def root(tmp_path):
    return make_root(tmp_path / "root")


@pytest.fixture
def daemon(bus, root, tmp_path):
    d = Daemon(bus, root, tmp_path)
    yield d
    code = d.stop()
    log = d.process.log()
    assert "Traceback" not in log, log
    assert code == 0, f"spd exited with {code}:\n{log}"


@pytest.fixture
def signals(bus, daemon):
    s = Signals(bus)
    yield s
    s.close()


@pytest.fixture
def gateway(bus, daemon, tmp_path):
    g = Gateway(bus, tmp_path)
    yield g
    g.stop()
    log = g.process.log()
    assert "Traceback" not in log, log


@pytest.fixture
def api(gateway):
    """An HTTP client for the gateway that sends the demo server's device token."""
    with httpx.Client(base_url=gateway.url, headers={"Authorization": f"Bearer {TOKEN}"},
                      timeout=30) as client:
        yield client


@pytest.fixture
def anon(gateway):
    """An HTTP client without a token."""
    with httpx.Client(base_url=gateway.url, timeout=30) as client:
        yield client
