"""The whole-API benchmark behind bench/run.

Starts a private bus, spd on a copy of the demo server (tests/data/root), the gateway, and — when the
route table has /services/status — python-dbusmock's systemd with the units it reads. Then wrk runs
against every GET route of the route table that is a cheap read (not the ones that start a job,
reboot, pull or rescan), the write routes below that exist, and prints req/s, p50, p99 per route
(marked with ! when some answers were not 2xx), how many timezone writes really changed the value,
and the RSS of the daemon and the gateway afterwards. Numbers are only comparable on the same machine;
the ratio columns are the figures to compare. `ratio`: against a bare Sanic handler with a small answer
(bench/bare.py), measured just before each route. `same` (reads): against a bare Sanic handler that
answers the body and headers this route answered, measured just before it too: the rest of the
distance to 1.0 is the gateway's own work for the route, not the size of its answer.
"""

import argparse
import json
import httpx
import re
import shutil
import sys
from pathlib import Path

from common import SignalCounter, bare_sanic, machine, timezone_script, warn_of_tracebacks, workspace, wrk
from stack import TOKEN, Daemon, Gateway, make_root  # noqa: E402
from systemd_helpers import demo_systemd  # noqa: E402

from spd.contract import SYSTEM  # noqa: E402
from spd.rest.routes import ROUTES  # noqa: E402

# Values for path parameters, from the demo server.
PARAMS = {"username": "tester"}
# Write routes to measure when they exist: (method, path, bodies sent in turn). The timezone route
# gets a zone other than the current one with every request (common.timezone_script), so each
# request is a real write; the daemon's Timezone change signals are counted to show it.
WRITES = [
    ("PUT", "/system/configuration/timezone", None),
    ("POST", "/auth/recovery_token", [{"uses": 5}]),
]

LUA = """
local bodies = {%s}
local i = 0
wrk.headers["Content-Type"] = "application/json"
request = function()
  i = i %% #bodies + 1
  return wrk.format("%s", nil, nil, bodies[i])
end
"""


def read_routes():
    """(label, path) of every cheap GET route, with path parameters filled in."""
    out = []
    for r in ROUTES:
        if r.changes or r.stream:  # writes and GETs that act (jobs, reboot, pull); streams: bench/events.py
            continue
        names = re.findall(r"<([A-Za-z_]\w*)(?::[^>]*)?>", r.path)
        if any(n not in PARAMS for n in names):
            print(f"skipped {r.path}: no demo value for its parameter", file=sys.stderr)
            continue
        path = re.sub(r"<([A-Za-z_]\w*)(?::[^>]*)?>", lambda m: PARAMS[m.group(1)], r.path)
        out.append((f"GET {r.path}" + (" (public)" if r.public else ""), path, None))
    return out


def write_routes(work: Path):
    existing = {(r.method, r.path) for r in ROUTES}
    out = []
    for method, path, bodies in WRITES:
        if (method, path) in existing:
            script = work / f"write{len(out)}.lua"
            if bodies is None:
                timezone_script(script)
            else:
                script.write_text(LUA % (", ".join(json.dumps(json.dumps(b)) for b in bodies), method))
            out.append((f"{method} {path}", path, script))
    return out


def same_answers(base: str, paths: list, where: Path) -> dict:
    """Each read route's answer (its body and the headers it chose), written to `where` for
    bench/bare.py --answers; returns path -> the answer's index there (none for an answer that is
    not 2xx: bare.py would answer it with 200)."""
    answers, index = [], {}
    for path in paths:
        r = httpx.get(base + path, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
        if not r.is_success:
            continue
        headers = {k: v for k, v in r.headers.items()
                   if k not in ("content-length", "content-type", "connection")}
        index[path] = len(answers)
        answers.append({"body": r.json(), "headers": headers})
    where.write_text(json.dumps(answers))
    return index


def memory(pid: int) -> dict:
    """VmRSS (resident), VmHWM (its peak), RssAnon (private: what the process itself allocated) and
    RssFile (mapped files: the interpreter, libcrypto, extension modules; shared with other
    processes that map them), in MiB."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    return {k: int(fields[k].split()[0]) / 1024 for k in ("VmRSS", "VmHWM", "RssAnon", "RssFile")}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-d", "--duration", type=int, default=5, help="seconds per route (default 5)")
    p.add_argument("-c", "--connections", type=int, default=16, help="wrk connections (default 16)")
    p.add_argument("-t", "--threads", type=int, default=2, help="wrk threads (default 2)")
    p.add_argument("--warmup", type=int, default=1, help="seconds of warm-up per route (default 1)")
    p.add_argument("-k", "--only", help="only routes whose label contains this text")
    a = p.parse_args()
    if not shutil.which("wrk"):
        sys.exit("bench/run needs wrk (apt-get install wrk; scripts/setup installs it)")

    with workspace("spd-bench-") as (work, bus, started):
        root = make_root(work / "root")
        if any(r.path == "/services/status" for r in ROUTES):
            started.append(demo_systemd(bus, work))
        daemon = Daemon(bus, root, work)
        started.append(daemon)
        gateway = Gateway(bus, work)
        started.append(gateway)

        routes = read_routes() + write_routes(work)
        if a.only:
            routes = [r for r in routes if a.only in r[0]]
        print(f"machine: {machine()}")
        print(f"wrk -t{a.threads} -c{a.connections} -d{a.duration:g}s per route, after {a.warmup:g}s of warm-up\n")
        answers = work / "answers.json"
        same = same_answers(gateway.url, [path for _, path, script in routes if script is None], answers)
        bare, bare_url = bare_sanic(work, answers)
        started.append(bare)
        # The references (bench/bare.py), measured right before each route so that the ratios (route
        # req/s / reference req/s) hold however busy the machine is meanwhile.
        wrk(bare_url, max(a.warmup, 1), a.connections, a.threads)
        print(f"{'route':<44} {'req/s':>8} {'ratio':>6} {'same':>6} {'p50 ms':>8} {'p99 ms':>8} {'non-2xx':>8} "
              f"{'ref req/s':>10}")
        timezones = SignalCounter(bus.address, SYSTEM, "Timezone")
        started.append(timezones)
        failing = []
        for label, path, script in routes:
            reference = wrk(bare_url, a.duration, a.connections, a.threads)["rps"]
            alike = wrk(f"{bare_url}same{same[path]}", a.duration, a.connections, a.threads)["rps"] \
                if path in same and script is None else None
            url = gateway.url + path
            args = (a.threads,)  # the timezone script's share of zones per wrk thread
            if a.warmup:
                wrk(url, a.warmup, a.connections, a.threads, script, TOKEN, args)
            timezones.take()
            r = wrk(url, a.duration, a.connections, a.threads, script, TOKEN, args)
            notes = []
            if r["errors"]:
                failing.append(label)
            if r["socket"]:
                notes.append(f"socket errors: {r['socket']}")
            if path == "/system/configuration/timezone" and script is not None:
                notes.append(f"{timezones.take()} Timezone changes signalled, {r['requests']} answers counted "
                             "(wrk does not count those in flight when it stops)")
            alike = f"{r['rps'] / alike:>6.2f}" if alike else f"{'-':>6}"
            print(f"{label:<44} {r['rps']:>8.0f} {r['rps'] / reference:>6.2f} {alike} {r['p50']:>8.2f} {r['p99']:>8.2f} "
                  f"{r['errors']:>8} {reference:>10.0f}{' !' if r['errors'] else '  '}{'  '.join(notes)}",
                  flush=True)
        if failing:
            print(f"\n! non-2xx answers (their req/s count failures): {', '.join(failing)}")
        print(f"\n{'memory after the run (MiB)':<44} {'VmRSS':>8} {'peak':>8} {'anon':>8} {'file':>8}")
        total = 0.0
        for name, pid in (("spd", daemon.process.pid), ("spd-gateway", gateway.process.pid)):
            m = memory(pid)
            total += m["VmRSS"]
            print(f"{name:<44} {m['VmRSS']:>8.1f} {m['VmHWM']:>8.1f} {m['RssAnon']:>8.1f} {m['RssFile']:>8.1f}")
        print(f"{'together':<44} {total:>8.1f}")
        warn_of_tracebacks({"spd": daemon.process, "gateway": gateway.process})


if __name__ == "__main__":
    main()
