"""How soon a change made under the daemon becomes a signal: userdata.json edited by hand (in place)
and replaced by a rename (as a rebuild does), each --rounds times, on a demo stack (private bus, real
daemon). Prints the median and the slowest edit -> PropertiesChanged delay (the promise: < 1 s).

    $SPD_VENV/bin/python bench/live.py [--rounds 20]
"""

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import common  # noqa: F401  (puts tests/ and the repo on sys.path)
from stack import Bus, Daemon, make_root
from signals import Signals
from userdata_helpers import edit_by_rename, edit_in_place, userdata

from spd.contract import SYSTEM

ZONES = ("Europe/Berlin", "Asia/Tokyo")


def measure(root: Path, signals: Signals, edit, rounds: int) -> list[float]:
    delays = []
    for _ in range(rounds):
        zone = ZONES[userdata(root).get("timezone") == ZONES[0]]  # the other one: a change each time
        seen = len(signals.received)
        start = time.monotonic()
        edit(root, lambda data: data.update(timezone=zone))
        signals.wait_for(lambda r: any(c.get("Timezone") == zone for i, c in r[seen:] if i == SYSTEM))
        delays.append(time.monotonic() - start)
    return delays


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=20)
    a = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="spd-bench-live-"))
    (work / "spd").mkdir()
    bus = Bus(work / "bus")
    root = make_root(work / "root")
    daemon = Daemon(bus, root, work / "spd")
    signals = Signals(bus)
    try:
        print(f"{'change under the daemon':<32} {'median ms':>10} {'max ms':>8} {'rounds':>7}")
        for name, edit in (("edit in place", edit_in_place), ("new file renamed over", edit_by_rename)):
            delays = measure(root, signals, edit, a.rounds)
            print(f"{name:<32} {statistics.median(delays) * 1000:>10.0f} {max(delays) * 1000:>8.0f} "
                  f"{len(delays):>7}")
    finally:
        signals.close()
        daemon.stop()
        bus.stop()


if __name__ == "__main__":
    main()
