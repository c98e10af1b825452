"""GET /users and POST /users through the gateway, measured with wrk on a demo stack.

    "$(scripts/venv)"/bin/python bench/users.py [--duration 10] [--connections 16] [--threads 2]

Targets: GET >= 4000 req/s with p99 < 10 ms at 16 connections; POST >= 150 req/s (each POST runs
one mkpasswd). Numbers depend on the machine and on what else runs on it.
"""

import argparse

from common import THREAD_ID_LUA, workspace, wrk
from stack import TOKEN, Daemon, Gateway, make_root  # noqa: E402
from userdata_helpers import userdata  # noqa: E402

# Each wrk thread posts distinct usernames: b<thread>x<counter>.
POST_SCRIPT = THREAD_ID_LUA + """
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


def report(name: str, r: dict, target: str) -> None:
    print(f"{name:12} {r['rps']:8.0f} req/s   p50 {r['p50']:6.2f} ms   p99 {r['p99']:6.2f} ms   "
          f"({r['requests']} requests, {r['errors']} non-2xx, socket errors: {r['socket'] or 'none'})   "
          f"target {target}")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--duration", type=int, default=10)
    p.add_argument("--connections", type=int, default=16)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    with workspace("spd-bench-") as (work, bus, started):
        root = make_root(work / "root")
        started.append(Daemon(bus, root, work))
        gateway = Gateway(bus, work)
        started.append(gateway)
        get = wrk(gateway.url + "/users", a.duration, a.connections, a.threads, token=TOKEN)
        script = work / "post.lua"
        script.write_text(POST_SCRIPT % TOKEN)
        post = wrk(gateway.url + "/users", a.duration, a.connections, a.threads, script)
        users = userdata(root)["users"]
    print(f"wrk -t{a.threads} -c{a.connections} -d{a.duration}s through spd-gateway -> spd")
    report("GET /users", get, ">= 4000 req/s, p99 < 10 ms")
    report("POST /users", post, ">= 150 req/s")
    print(f"users in userdata.json after the POST run: {len(users)} "
          f"({len(users) - 2} created; every 201 must be one of them)")


if __name__ == "__main__":
    main()
