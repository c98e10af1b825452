"""Kill spd with SIGKILL at random moments during a stream of userdata writes over D-Bus; after each
kill userdata.json must parse and equal the state before or after the write that was in flight.

The writes go one at a time (each waits for its reply), so at any moment at most one is in flight.
A model of userdata.json predicts the state after each write; the kill is scheduled on the event
loop at a random delay, so it lands while a call is on its way or being served."""

import asyncio
import copy
import json
import random
from dataclasses import dataclass, field

from dbus_fast import Message, MessageType, Variant
from dbus_fast.aio import MessageBus

import ssh_helpers as keys
from stack import BUS_NAME, PATH, Daemon
from userdata_helpers import userdata_path

from spd.contract import SSH

# What a caller sees when the daemon dies under its call or is not there yet.
GONE = {"org.freedesktop.DBus.Error.NoReply", "org.freedesktop.DBus.Error.ServiceUnknown",
        "org.freedesktop.DBus.Error.NameHasNoOwner"}


@dataclass
class Stats:
    kills: int = 0
    writes_acked: int = 0
    found_before: int = 0  # the in-flight write had not reached the file
    found_after: int = 0  # it had, though its caller never heard back
    seed: int = 0
    delays: list = field(default_factory=list)


def _next_write(model: dict, n: int):
    """(interface, member, signature, body, state after) for write number n from state `model`."""
    after = copy.deepcopy(model)
    ssh = after["ssh"]
    user1 = after["users"][0]
    if n % 3 == 0:
        value = not ssh["passwordAuthentication"]
        ssh["passwordAuthentication"] = value
        return SSH, "SetPasswordAuthentication", "b", [value], after
    if n % 3 == 1:
        extra = [k for k in user1["sshKeys"] if k.startswith("ssh-ed25519 ")]
        if extra:
            user1["sshKeys"].remove(extra[0])
            return SSH, "RemoveKey", "ss", ["user1", extra[0]], after
        key = keys.ed25519(f"crash{n}")
        user1["sshKeys"].append(key)
        return SSH, "AddKey", "ss", ["user1", key], after
    if len(ssh["rootKeys"]) >= 3:
        key = ssh["rootKeys"].pop()
        return SSH, "RemoveKey", "ss", ["root", key], after
    key = keys.ed25519(f"root{n}")
    ssh["rootKeys"].append(key)
    return SSH, "AddRootKey", "s", [key], after


async def crash_loop(bus, root, workdir, kills: int, max_delay: float = 0.03, seed: int | None = None) -> Stats:
    stats = Stats(seed=seed if seed is not None else random.randrange(2**32))
    rng = random.Random(stats.seed)
    path = userdata_path(root)
    # One connection for the whole stream, on this loop: the kill is timed on it (call_later), so a
    # write is in flight when it lands; stack.call's connection per call would blur that moment.
    client = await MessageBus(bus_address=bus.address).connect()
    loop = asyncio.get_running_loop()
    n = 0
    try:
        for _ in range(kills):
            daemon = Daemon(bus, root, workdir)
            model = json.loads(path.read_text())  # as this life starts (the first start imports tokens)
            delay = rng.uniform(0, max_delay)
            stats.delays.append(delay)
            loop.call_later(delay, daemon.process.proc.kill)
            while True:
                interface, member, signature, body, after = _next_write(model, n)
                n += 1
                reply = await client.call(Message(destination=BUS_NAME, path=PATH, interface=interface,
                                                  member=member, signature=signature, body=body))
                if reply.message_type == MessageType.ERROR:
                    break
                model = after
                stats.writes_acked += 1
            code = daemon.process.proc.wait(10)
            daemon.stop()
            assert code == -9, f"spd exited with {code}, not by the kill:\n{daemon.process.log()[-2000:]}"
            assert reply.error_name in GONE, f"{member} failed with {reply.error_name}: {reply.body}"
            state = json.loads(path.read_text())  # must parse
            if state == model:
                stats.found_before += 1
            elif state == after:
                stats.found_after += 1
            else:
                raise AssertionError(f"kill {stats.kills} (seed {stats.seed}) during {member}: userdata.json "
                                     "is neither the state before nor after the write")
            stats.kills += 1
    finally:
        client.disconnect()
    return stats
