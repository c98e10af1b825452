"""Idle exit: a process started on demand (D-Bus or socket activation) may leave when nothing has
happened for a while, so an idle server spends no memory on it."""

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


async def until_idle(timeout: float, idle_for: Callable[[], float]) -> None:
    """Return once idle_for() has reached `timeout` seconds."""
    while True:
        left = timeout - idle_for()
        if left <= 0:
            return
        await asyncio.sleep(max(left, min(timeout, 1.0) / 4))
