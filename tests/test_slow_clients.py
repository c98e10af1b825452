"""Slow clients cannot starve the gateway: a request's header has an absolute deadline however its
bytes trickle in, and the unit's file limit leaves room for many held connections."""

import os
import re
import resource
import select
import socket
import statistics
import time

import httpx

from gateway.protocol import HEADER_DEADLINE
from stack import REPO, TOKEN, Gateway

UNIT = REPO / "data" / "systemd" / "spd-gateway.service"
SLOW = 1100


def unit_nofile() -> tuple[int, int]:
    """The unit's LimitNOFILE= (soft, hard); without one, systemd's default 1024:524288."""
    m = re.search(r"^LimitNOFILE=(\d+)(?::(\d+))?\s*$", UNIT.read_text(), re.M)
    if not m:
        return 1024, 524288
    return int(m.group(1)), int(m.group(2) or m.group(1))


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=10)


def test_a_trickling_header_is_cut_at_the_deadline(gateway):
    """One header byte every 0.25 s: Sanic's own timer restarted at each byte and never fired."""
    s = connect(gateway.port)
    try:
        s.sendall(b"GET /api/version HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        start, answer, sent = time.monotonic(), b"", 0
        cut = False
        while not cut and time.monotonic() - start < 4 * HEADER_DEADLINE:  # far past it: never cut
            try:
                if select.select([s], [], [], 0.25)[0]:
                    chunk = s.recv(4096)
                    answer += chunk
                    cut = not chunk
                else:
                    s.sendall(b"a")
                    sent += 1
            except ConnectionError:  # a byte sent as the gateway closed: reset, its answer lost
                cut = True
        took = time.monotonic() - start
    finally:
        s.close()
    print(f"cut after {took:.1f} s and {sent} trickled bytes (deadline {HEADER_DEADLINE:g} s)")
    assert cut, "a trickling header was never cut"
    assert answer == b"" or answer.startswith(b"HTTP/1.1 408"), answer


def test_normal_requests_work_while_many_slow_sockets_are_held(daemon, bus, tmp_path):
    """SLOW connections held open (half silent, half inside an unfinished header), the gateway run
    with the file limit its unit gives it: every normal request is answered."""
    soft, hard = unit_nofile()
    own = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(own[0], min(own[1], 4 * SLOW)), own[1]))
    hard = min(hard, own[1])  # a container may cap what even root can raise; the soft limit is what counts
    assert soft <= hard, f"the unit's LimitNOFILE={soft} is more than this machine allows ({own[1]})"
    gateway = Gateway(bus, tmp_path, prefix=("prlimit", f"--nofile={soft}:{hard}", "--"))
    held = []
    try:
        for _ in range(SLOW):
            held.append(connect(gateway.port))
        fds = f"/proc/{gateway.process.pid}/fd"
        deadline = time.monotonic() + 10
        while len(os.listdir(fds)) < SLOW and time.monotonic() < deadline:
            time.sleep(0.1)
        accepted = len(os.listdir(fds))
        for s in held[::2]:  # their header deadline starts now
            s.sendall(b"GET /auth/tokens HTTP/1.1\r\nHost: x\r\n")
        took, failed = [], []
        with httpx.Client(base_url=gateway.url, headers={"Authorization": f"Bearer {TOKEN}"},
                          timeout=HEADER_DEADLINE / 2) as client:  # shorter than any slow socket's hold
            for _ in range(30):
                t = time.monotonic()
                try:
                    r = client.get("/auth/tokens")
                    if r.status_code != 200:
                        failed.append(r.status_code)
                except httpx.TransportError as e:
                    failed.append(repr(e))
                took.append(time.monotonic() - t)
        print(f"LimitNOFILE={soft}:{hard}; gateway fds with {SLOW} slow sockets: {accepted}; "
              f"30 GET /auth/tokens: median {statistics.median(took) * 1000:.1f} ms, "
              f"max {max(took) * 1000:.1f} ms, failed {len(failed)}")
        assert accepted >= SLOW, f"the gateway could accept only {accepted} connections"
        assert failed == [], failed
    finally:
        for s in held:
            s.close()
        gateway.stop()
        resource.setrlimit(resource.RLIMIT_NOFILE, own)
    assert "Traceback" not in gateway.process.log(), gateway.process.log()
