"""GET /users and POST /users through the gateway, measured with wrk on a demo stack.

    /opt/spd-venv/bin/python bench/users.py [--duration 10] [--connections 16] [--threads 2]

Targets: GET >= 4000 req/s with p99 < 10 ms at 16 connections; POST >= 150 req/s (each POST runs
one mkpasswd). Numbers depend on the machine and on what else runs on it.
"""

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from stack import TOKEN, Bus, Daemon, Gateway, make_root  # noqa: E402

# Each wrk thread posts distinct usernames: b<thread>x<counter>.
POST_SCRIPT = """
local next_id = 0
function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
end
function init(args)
  counter = 0
end
function request()
  counter = counter + 1
  local body = '{"username":"b' .. id .. 'x' .. counter .. '","password":"bench password"}'
  return wrk.format("POST", "/users", {["Content-Type"] = "application/json",
                                      ["Authorization"] = "Bearer %s"}, body)
end
"""


def wrk(url: str, threads: int, connections: int, duration: int, script: Path | None = None) -> dict:
    argv = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--latency",
            "-H", f"Authorization: Bearer {TOKEN}"]
    if script:
        argv += ["-s", str(script)]
    out = subprocess.run(argv + [url], capture_output=True, text=True, check=True).stdout

    def latency(pct):
        m = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        value, unit = float(m.group(1)), m.group(2)
        return value * {"us": 0.001, "ms": 1, "s": 1000}[unit]

    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
            "requests": int(re.search(r"(\d+) requests in", out).group(1)),
            "p50": latency(50), "p99": latency(99),
            "non_2xx": int(bad.group(1)) if bad else 0, "socket_errors": errors.group(1) if errors else "none"}


def report(name: str, r: dict, target: str) -> None:
    print(f"{name:12} {r['rps']:8.0f} req/s   p50 {r['p50']:6.2f} ms   p99 {r['p99']:6.2f} ms   "
          f"({r['requests']} requests, {r['non_2xx']} non-2xx, socket errors: {r['socket_errors']})   "
          f"target {target}")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--duration", type=int, default=10)
    p.add_argument("--connections", type=int, default=16)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="spd-bench-"))
    bus = Bus(work / "bus")
    root = make_root(work / "root")
    daemon = Daemon(bus, root, work)
    gateway = Gateway(bus, work)
    try:
        get = wrk(gateway.url + "/users", a.threads, a.connections, a.duration)
        script = work / "post.lua"
        script.write_text(POST_SCRIPT % TOKEN)
        post = wrk(gateway.url + "/users", a.threads, a.connections, a.duration, script)
        users = json.loads((root / "etc/nixos/userdata/userdata.json").read_text())["users"]
    finally:
        gateway.stop()
        daemon.stop()
        bus.stop()
    print(f"wrk -t{a.threads} -c{a.connections} -d{a.duration}s through spd-gateway -> spd")
    report("GET /users", get, ">= 4000 req/s, p99 < 10 ms")
    report("POST /users", post, ">= 150 req/s")
    print(f"users in userdata.json after the POST run: {len(users)} "
          f"({len(users) - 2} created; every 201 must be one of them)")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
