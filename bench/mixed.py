"""Reads while others write: does a write hold up everyone else's reads?

    bench/mixed.py [-d SECONDS] [--writes tokens,users,timezone]

Starts a private bus, spd on a copy of the demo server and the gateway (as bench/run does). For each
kind of write it runs the reads alone on 8 connections, then the same reads while 8 other connections
write, and prints reads/s alone, reads/s under writes, their ratio, the reads' p99 under writes and
writes/s. The reads take turns over GET /auth/tokens, /users, /system/configuration/timezone and
/services/ssh (both stores, a property, a GetAll). The writes:

- tokens:   POST /auth/recovery_token (each one a new mnemonic in the token store)
- users:    POST /users, a new username each time (mkpasswd, then userdata.json)
- timezone: PUT /system/configuration/timezone with a zone other than the current one each time;
            the real changes are counted from the daemon's PropertiesChanged signals and printed.

On 2 cores reads and writes share the CPU, so reads keep about half of their solo rate when nothing
holds the daemon's event loop. Targets (issue 11): ratio >= 0.45 and read p99 < 10 ms for each kind.
The reference (reads alone) is measured right before each mixed run, so a load that drifts during
the run skews no ratio. SPD_STALL_MS in the environment reaches spd and the gateway (see README).
"""

import argparse
import json
import shutil
import sys

from common import (THREAD_ID_LUA, SignalCounter, machine, timezone_script, warn_of_tracebacks, workspace, wrk,
                    wrk_result, wrk_start)
from stack import TOKEN, Daemon, Gateway, make_root  # noqa: E402
from userdata_helpers import userdata  # noqa: E402

from spd.contract import SYSTEM  # noqa: E402
from spd.runtime import stall  # noqa: E402

READS = ["/auth/tokens", "/users", "/system/configuration/timezone", "/services/ssh"]
CONNECTIONS = 8

READ_LUA = """
local paths = {%s}
local i = 0
request = function()
  i = i %% #paths + 1
  return wrk.format("GET", paths[i])
end
"""

RECOVERY_LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"uses": 5}'
"""

# Usernames <prefix><thread>x<counter>: new in every run (the prefix is the script's argument).
USERS_LUA = THREAD_ID_LUA + """
wrk.headers["Content-Type"] = "application/json"  -- wrk.headers also holds the token (-H)
function init(args)
  prefix = args[1]
  counter = 0
end
function request()
  counter = counter + 1
  local body = '{"username":"' .. prefix .. id .. 'x' .. counter .. '","password":"bench password"}'
  return wrk.format("POST", nil, nil, body)
end
"""


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-d", "--duration", type=int, default=5, help="seconds per measurement (default 5)")
    p.add_argument("--warmup", type=int, default=1, help="seconds of warm-up before each (default 1)")
    p.add_argument("--writes", default="tokens,users,timezone", help="which writes, comma-separated")
    a = p.parse_args()
    if not shutil.which("wrk"):
        sys.exit("bench/mixed.py needs wrk (scripts/setup installs it)")
    with workspace("spd-bench-") as (work, bus, started):
        root = make_root(work / "root")
        daemon = Daemon(bus, root, work)
        started.append(daemon)
        gateway = Gateway(bus, work)
        started.append(gateway)
        counter = SignalCounter(bus.address, SYSTEM, "Timezone")
        started.append(counter)
        reads = work / "reads.lua"
        reads.write_text(READ_LUA % ", ".join(json.dumps(r) for r in READS))
        (work / "recovery.lua").write_text(RECOVERY_LUA)
        (work / "users.lua").write_text(USERS_LUA)
        writes = {  # kind -> (path, script, script arguments per run)
            "tokens": ("/auth/recovery_token", work / "recovery.lua", lambda n: ()),
            "users": ("/users", work / "users.lua", lambda n: (f"b{n}t",)),
            "timezone": ("/system/configuration/timezone", timezone_script(work / "tz.lua"), lambda n: (1,)),
        }
        runs = 0

        def write(kind, seconds):
            nonlocal runs
            runs += 1
            path, script, args = writes[kind]
            return wrk_start(gateway.url + path, seconds, CONNECTIONS, 1, script, TOKEN, args(runs))

        def users_now():
            return len(userdata(root).get("users") or [])

        print(f"machine: {machine()}")
        print(f"reads: GET {', '.join(READS)} in turn on {CONNECTIONS} connections (wrk -t1); "
              f"writes on {CONNECTIONS} more; {a.duration}s each after {a.warmup}s of warm-up\n")
        print(f"{'writes':<10} {'reads/s alone':>13} {'p99 ms':>7} {'under writes':>12} {'p99 ms':>7} "
              f"{'ratio':>6} {'writes/s':>9} {'non-2xx':>8}  what the writes changed")
        for kind in a.writes.split(","):
            if a.warmup:
                wrk(gateway.url, a.warmup, CONNECTIONS, 1, reads, TOKEN)
            alone = wrk(gateway.url, a.duration, CONNECTIONS, 1, reads, TOKEN)
            if a.warmup:
                wrk_result(write(kind, a.warmup))
            counter.take()
            users_before = users_now()
            writer = write(kind, a.duration)
            mixed = wrk(gateway.url, a.duration, CONNECTIONS, 1, reads, TOKEN)
            w = wrk_result(writer)
            if kind == "timezone":
                changed = f"{counter.take()} Timezone changes signalled, {w['requests'] - w['errors']} answered 2xx"
            elif kind == "users":
                changed = f"{users_now() - users_before} users added, {w['requests'] - w['errors']} answered 201"
            else:
                changed = f"{w['requests'] - w['errors']} recovery tokens created"
            bad = alone["errors"] + mixed["errors"] + w["errors"]
            print(f"{kind:<10} {alone['rps']:>13.0f} {alone['p99']:>7.2f} {mixed['rps']:>12.0f} {mixed['p99']:>7.2f} "
                  f"{mixed['rps'] / alone['rps']:>6.2f} {w['rps']:>9.0f} {bad:>8}{' !' if bad else '  '}{changed}",
                  flush=True)
        print("\ntargets: ratio >= 0.45 and p99 under writes < 10 ms for each kind of write")
        for name, proc in (("spd", daemon.process), ("gateway", gateway.process)):
            if stall.threshold_ms():
                reports = [line for line in proc.log().splitlines() if "held the loop" in line]
                print(f"\n{name}: {len(reports)} callbacks over {stall.ENV}={stall.threshold_ms():g} ms"
                      + "".join(f"\n  {line}" for line in reports[:20]))
        warn_of_tracebacks({"spd": daemon.process, "gateway": gateway.process})


if __name__ == "__main__":
    main()
