"""Idle exit: a process that is started on demand (D-Bus or socket activation) may leave when nothing
has happened for a while, so an idle server spends no memory on it. Shared by spd and spd-gateway."""

import asyncio
import time
from typing import Callable


class Activity:
    """Work in progress, and when the last piece ended."""

    def __init__(self):
        self.running = 0
        self.last = time.monotonic()

    def begin(self) -> None:
        self.running += 1

    def end(self) -> None:
        self.running -= 1
        self.last = time.monotonic()

    def idle_for(self) -> float:
        return 0.0 if self.running else time.monotonic() - self.last


CALLS = Activity()  # the daemon's D-Bus calls in progress (counted by spd/dbus/base.py)


def busy(interfaces) -> bool:
    """True while any object says it has long work running. An object that runs work beyond the
    call that started it (a backup, a restore) defines `busy() -> bool` to keep its process alive."""
    return any(getattr(i, "busy", None) is not None and i.busy() for i in interfaces)


async def until_idle(timeout: float, idle_for: Callable[[], float]) -> None:
    """Return once idle_for() has reached `timeout` seconds."""
    while True:
        left = timeout - idle_for()
        if left <= 0:
            return
        await asyncio.sleep(max(left, min(timeout, 1.0) / 4))
