"""Cold start: gateway and daemon both stopped, one request through the gateway's socket, time to the
first answer. The gateway is started by systemd-socket-activate on the first connection (as
spd-gateway.socket does), the daemon by D-Bus activation on the gateway's first call (as the shipped
activation file does). The request is GET /auth/tokens with a token, so it needs the daemon twice
(Authenticate, then List). Target here: under 1.5 s.

    "$(scripts/venv)"/bin/python bench/coldstart.py [--runs N]
"""

import argparse
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from deploy_helpers import SYSTEM_POLICY, activation_file, policy_copy  # noqa: E402
from stack import (BUS_NAME, PYTHON, REPO, TOKEN, Bus, Process, busctl, free_port,  # noqa: E402
                   make_root)


def request(port: int) -> tuple[float, bytes]:
    started = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(f"GET /auth/tokens HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
                  "Connection: close\r\n\r\n".encode())
        first = s.recv(65536)
        elapsed = time.perf_counter() - started
        while s.recv(65536):
            pass
    return elapsed, first


def daemon_pid(bus) -> int | None:
    out = busctl(bus, "call", "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus",
                 "GetConnectionUnixProcessID", "s", BUS_NAME, check=False)
    return out["data"][0] if out else None


def one_run(work: Path) -> float:
    work.mkdir()
    root = make_root(work / "root")
    bus = Bus(work / "bus", policy=SYSTEM_POLICY, includedir=policy_copy(work / "system.d"),
              servicedir=work / "services")
    activation_file(work / "services", root)
    port = free_port()
    gateway = Process("systemd-socket-activate",
                      ["systemd-socket-activate", f"--listen=127.0.0.1:{port}", "-E", f"SPD_BUS={bus.address}",
                       "-E", f"PYTHONPATH={REPO}", PYTHON, "-m", "gateway"], work / "gateway.log")
    try:
        deadline = time.monotonic() + 10
        while "Listening on" not in gateway.log():
            if time.monotonic() > deadline:
                raise RuntimeError(gateway.log())
            time.sleep(0.02)
        elapsed, first = request(port)
        if not first.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(f"unexpected answer {first[:200]!r}\n{gateway.log()}\n{bus.process.log()}")
        return elapsed
    finally:
        gateway.stop()
        pid = daemon_pid(bus)
        if pid:
            subprocess.run(["kill", "-TERM", str(pid)])
            time.sleep(0.3)
        bus.stop()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=5)
    a = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="spd-coldstart-"))
    times = []
    for i in range(a.runs):
        times.append(one_run(work / f"run{i}"))
        print(f"run {i + 1}: {times[-1] * 1000:.0f} ms to the first answer", flush=True)
    print(f"cold start (socket activation + D-Bus activation, GET /auth/tokens): "
          f"median {statistics.median(times) * 1000:.0f} ms, best {min(times) * 1000:.0f} ms, "
          f"worst {max(times) * 1000:.0f} ms over {a.runs} runs (target < 1500 ms)")


if __name__ == "__main__":
    main()
