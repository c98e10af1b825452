"""Live state: how soon an outside edit is seen, and what open /events streams cost.

    "$(scripts/venv)"/bin/python bench/events.py [--edits 20] [--streams 100] [--duration 5]

1. An outside edit of userdata.json (a new file renamed over it, as an editor or a rebuild writes it)
   changes the timezone; the time until `GET /system/configuration/timezone` answers the new value and
   until an /events client receives it. Prints the median and the worst of --edits edits.
2. --streams open /events streams (at most 8 per token, so 13 tokens for 100): the gateway's memory
   before and with them, and wrk's read throughput of mirrored routes without and with them, each as a
   ratio to a bare Sanic handler measured just before (bench/bare.py). Then one change reaching every
   stream: the time until the last one got it.
Targets (issue 12): an edit seen in < 1 s; 100 streams add < 10 MiB and no measurable cost to reads.
"""

import argparse
import asyncio
import json
import shutil
import statistics
import sys
import threading
import time

import httpx
from api import machine, memory
from common import bare_sanic, workspace, wrk
from stack import SECOND_TOKEN, TOKEN, Daemon, Gateway, make_root  # noqa: E402
from userdata_helpers import edit_by_rename  # noqa: E402

READS = ["/services/ssh", "/system/configuration/timezone", "/users"]
PER_TOKEN = 8


class Streams:
    """Open /events streams, read on a thread of their own (asyncio, raw sockets: the benchmark's own
    cost stays small); `arrivals` records when each stream last saw a given timezone."""

    def __init__(self, port: int):
        self.port = port
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.writers, self.tasks = [], []
        self.seen: dict[str, list] = {}  # timezone -> arrival times

    def open(self, token: str, topics: str | None = "timezone") -> None:
        asyncio.run_coroutine_threadsafe(self._open(token, topics), self.loop).result(30)

    async def _open(self, token, topics):
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        query = f"?topics={topics}" if topics else ""
        writer.write(f"GET /events{query} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
                     "\r\n".encode())
        status = (await reader.readline()).decode()
        if " 200 " not in status:
            raise RuntimeError(f"/events answered {status.strip()}")
        self.writers.append(writer)
        self.tasks.append(self.loop.create_task(self._read(reader)))

    async def _read(self, reader):
        while line := await reader.readline():
            if line.startswith(b"data: \""):
                zone = json.loads(line[6:])
                self.seen.setdefault(zone, []).append(time.monotonic())

    def stop(self):  # a second call does nothing
        if not self.thread.is_alive():
            return
        asyncio.run_coroutine_threadsafe(self._close(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()

    async def _close(self):
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        for writer in self.writers:
            writer.close()


def new_tokens(url: str, n: int) -> list:
    """n device tokens beyond the demo's two (new-device mnemonics redeemed, as the app does)."""
    tokens = [TOKEN, SECOND_TOKEN]
    auth = {"Authorization": f"Bearer {TOKEN}"}
    while len(tokens) < n:
        mnemonic = httpx.post(url + "/auth/new_device", headers=auth).json()["token"]
        r = httpx.post(url + "/auth/new_device/authorize",
                       json={"token": mnemonic, "device": f"bench{len(tokens)}"})
        tokens.append(r.json()["token"])
    return tokens


def edits(root, gateway, streams, count):
    """Median and worst time until an outside edit is answered by GET and received over /events."""
    get_times, event_times = [], []
    with httpx.Client(headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        for i in range(count):
            zone = ("Asia/Tokyo", "Europe/Berlin")[i % 2]
            start = time.monotonic()
            edit_by_rename(root, lambda data: data.update(timezone=zone))
            seen_get = None
            while time.monotonic() - start < 5:
                if client.get(gateway.url + "/system/configuration/timezone").json() == zone:
                    seen_get = time.monotonic() - start
                    break
            while streams.writers and time.monotonic() - start < 5 \
                    and not any(t >= start for t in streams.seen.get(zone, [])):
                time.sleep(0.001)
            arrived = [t for t in streams.seen.get(zone, []) if t >= start]
            get_times.append(seen_get)
            event_times.append(min(arrived) - start if arrived else None)
            time.sleep(0.05)  # the next edit is a separate one, not part of a burst
    return get_times, event_times


def summary(times) -> str:
    seen = [t for t in times if t is not None]
    missed = len(times) - len(seen)
    if not seen:
        return f"never seen within 5 s ({missed} of {len(times)})"
    text = f"median {statistics.median(seen) * 1000:7.1f} ms, worst {max(seen) * 1000:7.1f} ms"
    return text + (f", {missed} of {len(times)} not seen within 5 s" if missed else "")


def reads(gateway, bare_url, a, label):
    for path in READS:
        reference = wrk(bare_url, a.duration, 16, 2)["rps"]
        wrk(gateway.url + path, 1, 16, 2, None, TOKEN)
        r = wrk(gateway.url + path, a.duration, 16, 2, None, TOKEN)
        print(f"  {label:<16} GET {path:<34} {r['rps']:>8.0f} req/s  ratio {r['rps'] / reference:5.2f}  "
              f"p99 {r['p99']:6.2f} ms  non-2xx {r['errors']}", flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--edits", type=int, default=20)
    p.add_argument("--streams", type=int, default=100)
    p.add_argument("-d", "--duration", type=int, default=5, help="seconds per wrk run (default 5)")
    a = p.parse_args()
    if not shutil.which("wrk"):
        sys.exit("bench/events.py needs wrk")
    with workspace("spd-bench-events-") as (work, bus, started):
        root = make_root(work / "root")
        daemon = Daemon(bus, root, work)
        started.append(daemon)
        gateway = Gateway(bus, work)
        started.append(gateway)
        bare, bare_url = bare_sanic(work)
        started.append(bare)
        print(f"machine: {machine()}\n")

        # one token more than the streams need: the edit's watcher has one of its own
        tokens = new_tokens(gateway.url, -(-a.streams // PER_TOKEN) + 1)
        # an older version (for comparison) has no /events: then only GET and reads are measured
        has_events = httpx.get(gateway.url + "/events?topics=nope",
                               headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 400
        streams = Streams(gateway.port)
        started.append(streams)
        if has_events:
            streams.open(tokens.pop())
        get_times, event_times = edits(root, gateway, streams, a.edits)
        print(f"an outside edit of userdata.json ({a.edits} edits):")
        print(f"  seen by GET     {summary(get_times)}")
        print(f"  seen by /events {summary(event_times) if has_events else 'no /events in this version'}\n")
        streams.stop()
        if not has_events:
            reads(gateway, bare_url, a, "no streams")
            return

        wrk(bare_url, 1, 16, 2)
        print(f"reads without and with {a.streams} open /events streams ({len(tokens)} tokens):")
        reads(gateway, bare_url, a, "no streams")
        before = memory(gateway.process.pid)
        streams = Streams(gateway.port)
        started.append(streams)
        for i in range(a.streams):
            streams.open(tokens[i // PER_TOKEN], None)  # every topic
        time.sleep(1)  # every stream got its full state
        opened = memory(gateway.process.pid)
        reads(gateway, bare_url, a, f"{a.streams} streams")
        print(f"\ngateway memory (MiB): VmRSS {before['VmRSS']:.1f} -> {opened['VmRSS']:.1f} "
              f"(+{opened['VmRSS'] - before['VmRSS']:.1f}), anon {before['RssAnon']:.1f} -> "
              f"{opened['RssAnon']:.1f} (+{opened['RssAnon'] - before['RssAnon']:.1f})")
        start = time.monotonic()
        httpx.put(gateway.url + "/system/configuration/timezone", json={"timezone": "America/Lima"},
                  headers={"Authorization": f"Bearer {TOKEN}"})
        while time.monotonic() - start < 10 and len(streams.seen.get("America/Lima", [])) < a.streams:
            time.sleep(0.001)
        got = streams.seen.get("America/Lima", [])
        print(f"one change reached {len(got)} of {a.streams} streams; the last after "
              f"{(max(got) - start) * 1000 if got else float('nan'):.1f} ms")
        streams.stop()


if __name__ == "__main__":
    main()
