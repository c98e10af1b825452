"""Calls from a caller the daemon does not know yet wait here for its credentials, then go through
the check again, in the order they came (or are refused when the credentials cannot be had).

dbus-fast has no public way to hand a message back to its dispatcher, so a held call is replayed with
`MessageBus._process_message`. pyproject.toml pins dbus-fast to the releases this was tested with, and
tests/test_access.py fails loudly on any other (see DBUS_FAST_TESTED): the alternative, checking the
caller inside every member as an awaited step, would make every call a task and every property read
async, for the one call per new caller that needs to wait.
"""

import asyncio
import logging

from dbus_fast import Message

log = logging.getLogger("spd.access")

DBUS_FAST_TESTED = ((5, 2), (5, 3))  # [from, to): the dbus-fast releases this module was tested with


class Held:
    def __init__(self, bus, look_up, refuse):
        """look_up(name) -> awaitable of the caller or None; refuse(msg, text) answers a call."""
        self.bus = bus
        self._look_up = look_up
        self._refuse = refuse
        self._waiting: dict[str, list[Message]] = {}  # unique name -> its calls, in order
        self._tasks: set = set()

    def __len__(self) -> int:
        return len(self._waiting)

    def hold(self, msg: Message) -> None:
        sender = msg.sender
        if sender in self._waiting:
            self._waiting[sender].append(msg)
            return
        self._waiting[sender] = [msg]
        task = asyncio.get_running_loop().create_task(self._release(sender, self._look_up(sender)))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _release(self, sender: str, lookup) -> None:
        who = await lookup
        held = self._waiting.pop(sender, [])
        if who is None:
            log.warning("refused %d call(s) from %s: its credentials are unknown", len(held), sender)
            for msg in held:
                self._refuse(msg, "The caller's credentials could not be checked")
            return
        for msg in held:  # in the order they came; the caller is known now, so each is decided at once
            self.bus._process_message(msg)
