"""SIGKILL the daemon at random moments during a stream of userdata writes, many times, and check
after each kill that userdata.json is the state before or after the write in flight.

    "$(scripts/venv)"/bin/python bench/crash.py [--kills 1000] [--max-delay 0.03] [--seed N]
"""

import argparse
import asyncio
import statistics
import time

from common import workspace
from crash_helpers import crash_loop
from stack import make_root


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kills", type=int, default=1000)
    p.add_argument("--max-delay", type=float, default=0.03, help="seconds; each kill after uniform(0, this)")
    p.add_argument("--seed", type=int)
    a = p.parse_args()
    with workspace("spd-crash-") as (work, bus, _):
        root = make_root(work / "root")
        start = time.monotonic()
        stats = asyncio.run(crash_loop(bus, root, work, a.kills, a.max_delay, a.seed))
        took = time.monotonic() - start
    print(f"kills:                 {stats.kills} (seed {stats.seed}), all left userdata.json before or after "
          "the write in flight")
    print(f"  found before write:  {stats.found_before}")
    print(f"  found after write:   {stats.found_after} (written, but the caller never got the reply)")
    print(f"writes acknowledged:   {stats.writes_acked}")
    print(f"median kill delay:     {statistics.median(stats.delays) * 1000:.1f} ms after READY")
    print(f"time:                  {took:.1f} s ({took / stats.kills * 1000:.0f} ms per kill)")


if __name__ == "__main__":
    main()
