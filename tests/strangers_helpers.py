"""A local stranger on the bus (issue 16): clients run as another user (a setpriv prefix) that listen
to the daemon's signals or forge signals to the gateway or spdctl. Shared by tests/test_strangers.py (private
bus) and tests/test_container_strangers.py (booted systemd); passed with -c, so a user who cannot
read the checkout runs them too."""

import json
import subprocess
import threading
import time

from spd.contract import BUS_NAME, DBUS, PATH, PROPERTIES, SYSTEM, TOKENS, USERS

# The contract's names for the scripts below, which cannot import it (run with -c, see above).
NAMES = "".join(f"{name} = {value!r}\n" for name, value in dict(
    BUS_NAME=BUS_NAME, PATH=PATH, DBUS=DBUS, PROPERTIES=PROPERTIES, SYSTEM=SYSTEM, TOKENS=TOKENS,
    USERS=USERS).items())
# What set root's window title and cleared the screen, and how spdctl prints it (as systemd's tools do).
HOSTILE = "\x1b]0;owned\x07\x1b[2J"
ESCAPED = r"\x1b]0;owned\a\x1b[2J"
# What the stranger asks the bus for: every signal the daemon sends.
RULE = f"type='signal',sender='{BUS_NAME}'"

# argv: bus address, match rule. Prints "ready", then one JSON line per signal received, until stdin ends.
LISTEN = r"""
import asyncio, json, sys
from dbus_fast import Message, MessageType, Variant
from dbus_fast.aio import MessageBus

def plain(x):
    return x.value if isinstance(x, Variant) else repr(x)

async def main():
    bus = await MessageBus(bus_address=sys.argv[1]).connect()
    def on(msg):
        if msg.message_type == MessageType.SIGNAL:
            print(json.dumps([msg.interface, msg.member, msg.body], default=plain), flush=True)
    bus.add_message_handler(on)
    reply = await bus.call(Message(destination="org.freedesktop.DBus", path="/org/freedesktop/DBus",
                                   interface="org.freedesktop.DBus", member="AddMatch", signature="s",
                                   body=[sys.argv[2]]))
    assert reply.message_type == MessageType.METHOD_RETURN, reply.body
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)

asyncio.run(main())
"""

# argv: bus address, the gateway's unique name. Sends forged signals to it, then asks the bus a question:
# its answer means the bus has routed them all: whatever the gateway receives next comes after them.
# Prints "sent".
FORGE = NAMES + r"""
import asyncio, sys
from dbus_fast import Message, MessageType, Variant
from dbus_fast.aio import MessageBus

async def main():
    bus = await MessageBus(bus_address=sys.argv[1]).connect()
    to = sys.argv[2]

    def signal(path, interface, member, signature="", body=()):
        return Message(message_type=MessageType.SIGNAL, destination=to, path=path, interface=interface,
                       member=member, signature=signature, body=list(body))

    for _ in range(10):
        for msg in [
            signal("/org/freedesktop/DBus", DBUS, "NameOwnerChanged", "sss", [BUS_NAME, ":1.1", ""]),
            signal("/org/freedesktop/DBus", DBUS, "NameOwnerChanged", "sss", [BUS_NAME, "", bus.unique_name]),
            signal(PATH, TOKENS, "Changed"),
            signal(PATH, PROPERTIES, "PropertiesChanged", "sa{sv}as",
                   [SYSTEM, {"Timezone": Variant("s", "Forged/Zone")}, []]),
            signal(PATH, PROPERTIES, "PropertiesChanged", "sa{sv}as", [SYSTEM, {}, ["Timezone"]]),
        ]:
            await bus.send(msg)
    reply = await bus.call(Message(destination=DBUS, path="/org/freedesktop/DBus", interface=DBUS,
                                   member="GetId"))
    assert reply.message_type == MessageType.METHOD_RETURN, reply.body
    print("sent", flush=True)

asyncio.run(main())
"""


# argv: bus address, spdctl's unique name, the daemon's, the upgrade job's path. Sent as nobody to
# `spdctl upgrade --wait`: every form of "the job is done" that does not come from the daemon. The
# bus hands a signal with a destination to that connection whatever its match rules; a broadcast
# reaches those whose rules do not name the sender. Then a call: the bus has passed all of them on.
FORGER = NAMES + """
import asyncio, sys
from dbus_fast import Message, MessageType, Variant
from dbus_fast.aio import MessageBus

address, target, owner, job = sys.argv[1:]

async def main():
    bus = await MessageBus(bus_address=address).connect()
    done = [SYSTEM, {"Jobs": Variant("a{s(os)}", {"upgrade": [job, "done"]})}, []]
    invalidated = [SYSTEM, {}, ["Jobs"]]

    def signal(destination, body, path=PATH, interface=PROPERTIES,
               member="PropertiesChanged", signature="sa{sv}as"):
        return Message(message_type=MessageType.SIGNAL, destination=destination, path=path,
                       interface=interface, member=member, signature=signature, body=body)

    for message in (signal(target, done), signal(None, done), signal(target, invalidated),
                    signal(None, invalidated),
                    # "the daemon is now me", then the job's end from "the daemon"
                    signal(target, [BUS_NAME, owner, bus.unique_name],
                           "/org/freedesktop/DBus", DBUS, "NameOwnerChanged", "sss"),
                    signal(target, done)):
        await bus.send(message)
    reply = await bus.call(Message(destination=DBUS, path="/org/freedesktop/DBus", interface=DBUS,
                                   member="GetId"))
    assert reply.message_type is MessageType.METHOD_RETURN, reply.body
    bus.disconnect()

asyncio.run(main())
"""


def received(lines: list) -> list:
    """The listener's output after "ready": [interface, member, body] per signal."""
    return [json.loads(line) for line in lines if line.strip() and line.strip() != "ready"]


def leaks(signals: list) -> list:
    """Signals of the daemon that carry anything: a PropertiesChanged with values, an InterfacesAdded
    with a property's value, any other with a body (the bus's own, NameOwnerChanged, name no value)."""
    def carries(s) -> bool:
        if s[1] == "PropertiesChanged":
            return bool(s[2][1])
        if s[1] == "InterfacesAdded":
            return any(s[2][1].values())
        return s[0] != DBUS and bool(s[2])
    return [s for s in signals if carries(s)]


def invalidated(signals: list) -> set:
    return {(s[2][0], name) for s in signals if s[1] == "PropertiesChanged" for name in s[2][2]}


class Listener:
    """LISTEN run as a stranger (prefix: setpriv, and nsenter for a container); its lines collected
    by a thread. Not tests/signals.py's recorder: what matters is what another user's connection
    receives, so it runs as that user, in a process of its own."""

    def __init__(self, prefix: list, python: str, address: str, env: dict, rule: str = RULE):
        self.proc = subprocess.Popen([*prefix, python, "-c", LISTEN, address, rule], cwd="/", env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.lines = []  # (the bus's NameAcquired may come before "ready": it needs no match rule)
        while (line := self.proc.stdout.readline()).strip() != "ready":
            assert line, "the listener did not start"
            self.lines.append(line)
        self._thread = threading.Thread(target=lambda: self.lines.extend(self.proc.stdout), daemon=True)
        self._thread.start()

    def wait_for(self, interface, name, timeout=30):
        """Until a signal of that property came (with its value or without)."""
        deadline = time.monotonic() + timeout
        while True:
            got = received(list(self.lines))
            named = invalidated(got) | {(s[2][0], n) for s in got if s[1] == "PropertiesChanged" for n in s[2][1]}
            if (interface, name) in named or time.monotonic() > deadline:
                return got
            time.sleep(0.05)

    def stop(self):
        self.proc.stdin.close()
        self.proc.wait(10)
        self._thread.join(10)
