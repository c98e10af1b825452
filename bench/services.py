"""GET /services/status and GET /system/configuration/timezone through the gateway, with wrk, against
python-dbusmock's systemd on a private bus. Prints req/s, p50 and p99 per route.

    /opt/spd-venv/bin/python bench/services.py [--duration 10] [--connections 16]

Target: /services/status at least 1,000 req/s (the 1.2 server spawned eight systemctl per request).
"""

import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from stack import TOKEN, Bus, Daemon, Gateway, make_root  # noqa: E402
from systemd_helpers import STATUS_UNITS, SystemdMock  # noqa: E402

ROUTES = ["/services/status", "/system/configuration/timezone"]


def wrk(url: str, duration: int, connections: int) -> dict:
    out = subprocess.run(["wrk", "-t2", f"-c{connections}", f"-d{duration}s", "--latency",
                          "-H", f"Authorization: Bearer {TOKEN}", url],
                         capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p50 = re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1)
    p99 = re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1)
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors:.*", out)
    return {"rps": rps, "p50": p50, "p99": p99, "non2xx": int(bad.group(1)) if bad else 0,
            "socket_errors": errors.group(0) if errors else ""}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--duration", type=int, default=10, help="seconds per route")
    p.add_argument("--connections", type=int, default=16)
    a = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="spd-bench-"))
    bus = Bus(work / "bus")
    systemd = SystemdMock(bus, work)
    for i, unit in enumerate(STATUS_UNITS):
        systemd.add_unit(unit, "active" if i % 2 == 0 else "inactive")
    daemon = Daemon(bus, make_root(work / "root"), work)
    gateway = Gateway(bus, work)
    try:
        print(f"wrk -t2 -c{a.connections} -d{a.duration}s; systemd is python-dbusmock on a private bus")
        for route in ROUTES:
            subprocess.run(["curl", "-sf", "-o", "/dev/null", "-H", f"Authorization: Bearer {TOKEN}",
                            gateway.url + route], check=True)  # warm up (and fail early)
            r = wrk(gateway.url + route, a.duration, a.connections)
            print(f"GET {route:34} {r['rps']:9.1f} req/s   p50 {r['p50']:>8}   p99 {r['p99']:>8}"
                  + (f"   non-2xx {r['non2xx']}" if r["non2xx"] else "")
                  + (f"   {r['socket_errors']}" if r["socket_errors"] else ""), flush=True)
    finally:
        gateway.stop()
        daemon.stop()
        systemd.stop()
        bus.stop()


if __name__ == "__main__":
    main()
