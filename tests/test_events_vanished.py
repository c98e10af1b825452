"""A client of GET /events that vanishes without closing (a phone losing its network): no FIN, no RST,
its packets just stop. The gateway must notice (TCP_USER_TIMEOUT, SPD_EVENTS_USER_TIMEOUT) and free
the token's stream slots, or the phone locks itself out for TCP's ~16 minutes of retries.

Everything runs in a network namespace of the test's own (a thread that unshared it, and the gateway
it starts), so the packet filter that makes the phone vanish never touches the host's network."""

import ctypes
import subprocess
import threading
import time

from sse import Events
from stack import Gateway, eventually

CLONE_NEWNET = 0x40000000
PHONE = "127.0.0.2"  # the phone's address on lo: the filter drops only its packets
# What a lost network looks like: nothing from the phone arrives, nothing reaches it.
VANISH = f"""table inet vanish {{
  chain input {{ type filter hook input priority 0; ip saddr {PHONE} drop; ip daddr {PHONE} drop; }}
}}"""
USER_TIMEOUT = 2  # seconds; the gateway's keep-alives every 0.5 s are what stays unacknowledged


def in_new_netns(fn):
    """fn() in a thread with a network namespace of its own, lo up: the sockets it opens and the
    processes it starts live there. Returns fn's value, raises its exception."""
    done = {}

    def body():
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.unshare(CLONE_NEWNET) != 0:  # this thread only (os.unshare is Python 3.12)
                raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNET)")
            subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
            done["value"] = fn()
        except BaseException as e:  # noqa: B036 - handed to the test's thread
            done["error"] = e

    thread = threading.Thread(target=body)
    thread.start()
    thread.join()
    if "error" in done:
        raise done["error"]
    return done["value"]


def next_stream(gateway) -> int:
    """The status a new stream of the token gets (from 127.0.0.1: the phone on another network)."""
    with Events(gateway.url, topics="timezone") as stream:
        return stream.status


def test_a_client_that_vanishes_frees_its_stream_slots(bus, daemon, tmp_path):
    """Two gateways, the same phone on both with 8 streams each; then the phone's packets are
    dropped. With SPD_EVENTS_USER_TIMEOUT=2 the streams end and a 9th stream gets 200 again; with
    0 (the kernel's default, as before the option) it still gets 429 well after that."""

    from gateway.events import MAX_PER_TOKEN  # the 9th stream of a token gets 429

    def scenario():
        gateways = {}
        for timeout in (USER_TIMEOUT, 0):
            (tmp_path / str(timeout)).mkdir()
            gateways[timeout] = Gateway(bus, tmp_path / str(timeout), env={
                "SPD_EVENTS_USER_TIMEOUT": timeout, "SPD_EVENTS_KEEPALIVE": 0.5})
        phone = [Events(g.url, topics="timezone", local_address=PHONE)
                 for g in gateways.values() for _ in range(MAX_PER_TOKEN)]
        try:
            assert [s.next() for s in phone] == [("timezone", "Europe/Moscow")] * len(phone)
            assert [next_stream(g) for g in gateways.values()] == [429, 429]
            subprocess.run(["nft", "-f", "-"], input=VANISH, text=True, check=True)  # no FIN, no RST
            start = time.monotonic()
            assert eventually(lambda: next_stream(gateways[USER_TIMEOUT]), 200, timeout=60) == 200
            freed = time.monotonic() - start
            print(f"freed {freed:.1f} s after the phone vanished (SPD_EVENTS_USER_TIMEOUT={USER_TIMEOUT})")
            time.sleep(2 * USER_TIMEOUT)  # well past that moment, the gateway without the option...
            assert next_stream(gateways[0]) == 429  # ...still holds the phone's 8 streams
        finally:
            for s in phone:
                s.close()
            for g in gateways.values():
                g.stop()
                assert "Traceback" not in g.process.log(), g.process.log()

    in_new_netns(scenario)
