"""What a property read costs the daemon: Properties.Get of every property of every interface (and
GetAll of each), 50 in flight at a time from one root connection, on a demo stack (private bus, real
daemon, python-dbusmock's systemd). Prints each read's rate as a ratio to Users1.Users (the
cheapest read: one value from the cached userdata), measured just before it, so the figures hold
however busy the machine is; the median of --rounds rounds.

    $SPD_VENV/bin/python bench/props.py [--reads 2000] [--rounds 3]
"""

import argparse
import asyncio
import statistics
import time

from dbus_fast import Message, MessageType
from dbus_fast.aio import MessageBus

from common import machine, warn_of_tracebacks, workspace
from stack import Daemon, make_root
from systemd_helpers import demo_systemd

from spd.contract import BACKUPS, BUS_NAME, PATH, PROPERTIES, SERVICES, SSH, SYSTEM, TOKENS, USERS

REFERENCE = (USERS, "Users")
IN_FLIGHT = 50


def _read(interface: str, name: str | None) -> Message:
    """Get of one property, or GetAll of the interface when name is None."""
    if name is None:
        return Message(destination=BUS_NAME, path=PATH, interface=PROPERTIES, member="GetAll",
                       signature="s", body=[interface])
    return Message(destination=BUS_NAME, path=PATH, interface=PROPERTIES, member="Get",
                   signature="ss", body=[interface, name])


async def rate(bus, interface: str, name: str | None, reads: int) -> float:
    """Reads per second, each answered with a value (not an error)."""
    reply = await bus.call(_read(interface, name))
    assert reply.message_type == MessageType.METHOD_RETURN, (interface, name, reply.body)
    start = time.perf_counter()
    for _ in range(reads // IN_FLIGHT):
        replies = await asyncio.gather(*(bus.call(_read(interface, name)) for _ in range(IN_FLIGHT)))
        assert all(r.message_type == MessageType.METHOD_RETURN for r in replies), (interface, name)
    return reads // IN_FLIGHT * IN_FLIGHT / (time.perf_counter() - start)


async def measure(address: str, reads: int, rounds: int) -> None:
    bus = await MessageBus(bus_address=address).connect()
    targets = []
    for interface in (USERS, SSH, SERVICES, BACKUPS, SYSTEM, TOKENS):
        (values,) = (await bus.call(_read(interface, None))).body
        targets += [(interface, name) for name in sorted(values)] + [(interface, None)]
    ratios = {target: [] for target in targets}
    references = []
    for _ in range(rounds):
        for target in targets:
            reference = await rate(bus, *REFERENCE, reads)
            references.append(reference)
            ratios[target].append(await rate(bus, *target, reads) / reference)
    print(f"{'read':44} ratio to {REFERENCE[0].rsplit('.', 1)[1]}.{REFERENCE[1]}")
    for (interface, name), values in ratios.items():
        print(f"{interface.rsplit('.', 1)[1] + '.' + (name or '(GetAll)'):44} {statistics.median(values):.2f}")
    print(f"\nreference: {statistics.median(references):.0f} reads/s")
    bus.disconnect()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reads", type=int, default=2000, help="reads per measurement (default 2000)")
    p.add_argument("--rounds", type=int, default=3, help="rounds; each figure is their median (default 3)")
    a = p.parse_args()
    with workspace("spd-props-") as (work, bus, started):
        root = make_root(work / "root")
        started.append(demo_systemd(bus, work))
        daemon = Daemon(bus, root, work)
        started.append(daemon)
        print(f"machine: {machine()}")
        print(f"{a.reads} reads per figure, {IN_FLIGHT} in flight, median of {a.rounds} rounds\n")
        asyncio.run(measure(bus.address, a.reads, a.rounds))
        warn_of_tracebacks({"spd": daemon.process})


if __name__ == "__main__":
    main()
