"""Memory of spd and spd-gateway before the first request, and where the gateway's comes from.

    bench/memory.py

Starts a private bus, spd on a copy of the demo server and the gateway, waits until spd is ready
and the gateway accepts connections (no request is sent), and prints VmRSS, RssAnon (what the
process allocated) and RssFile (mapped files: the interpreter, libcrypto, extension modules, shared
with other processes). Then, in a fresh interpreter, it imports what the gateway imports step by
step and prints what each step adds to VmRSS. Figures vary a little between runs and machines.
"""

import socket
import subprocess
import sys
import time
from pathlib import Path

from common import REPO, workspace
from stack import PYTHON, Daemon, Process, env_for_children, free_port, make_root  # noqa: E402

# What the gateway imports, in the order that separates the big parts.
STEPS = [
    ("Python itself", ""),
    ("asyncio with ssl", "import asyncio, ssl"),
    ("Sanic with uvloop, httptools and its error pages", "import sanic, uvloop, httptools, sanic.errorpages"),
    ("dbus-fast", "import dbus_fast, dbus_fast.aio"),
    ("the gateway's own modules", "import gateway.app, gateway.main"),
]

STEP_SCRIPT = """
import sys
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
for code in sys.argv[1:]:
    exec(code)
    print(rss(), flush=True)
"""


def memory(pid: int) -> dict:
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    return {k: int(fields[k].split()[0]) / 1024 for k in ("VmRSS", "RssAnon", "RssFile")}


def main():
    with workspace("spd-bench-") as (work, bus, started):
        daemon = Daemon(bus, make_root(work / "root"), work)
        started.append(daemon)
        port = free_port()
        gateway = Process("spd-gateway", [PYTHON, "-m", "gateway", "--bus", bus.address, "--port", str(port)],
                          work / "gateway.log", env=env_for_children())
        started.append(gateway)
        deadline = time.monotonic() + 30
        while True:  # listening: accept a connection, send nothing
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or not gateway.alive():
                    sys.exit(f"the gateway did not start:\n{gateway.log()}")
                time.sleep(0.05)
        time.sleep(0.5)  # whatever it does right after it listens
        print(f"{'before the first request (MiB)':<50} {'VmRSS':>7} {'anon':>7} {'file':>7}")
        total = 0.0
        for name, pid in (("spd", daemon.process.pid), ("spd-gateway", gateway.pid)):
            m = memory(pid)
            total += m["VmRSS"]
            print(f"{name:<50} {m['VmRSS']:>7.1f} {m['RssAnon']:>7.1f} {m['RssFile']:>7.1f}")
        print(f"{'together':<50} {total:>7.1f}")

    out = subprocess.run([PYTHON, "-c", STEP_SCRIPT, *(code for _, code in STEPS)], capture_output=True,
                         text=True, check=True, cwd=REPO, env=env_for_children()).stdout.split()
    print(f"\n{'the gateway imports, step by step (MiB of VmRSS)':<50} {'adds':>7} {'total':>7}")
    before = 0.0
    for (label, _), value in zip(STEPS, map(float, out)):
        print(f"{label:<50} {value - before:>7.1f} {value:>7.1f}")
        before = value


if __name__ == "__main__":
    main()
