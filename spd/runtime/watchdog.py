"""systemd's watchdog (sd_watchdog_enabled(3)): with WatchdogSec= in its unit, a process is expected to
send WATCHDOG=1 at least that often, or systemd kills it (SIGABRT) and, with Restart=on-failure,
starts it again. The pings come from the event loop itself, so a loop that hangs stops them: a
frozen daemon or gateway is restarted instead of leaving every caller waiting."""

import asyncio
import os

import sdnotify


def interval() -> float | None:
    """Seconds between pings (half systemd's timeout), or None when no watchdog is set for us."""
    pid = os.environ.get("WATCHDOG_PID")
    if pid and pid != str(os.getpid()):
        return None  # meant for another process (a parent that exec'd us keeps it)
    try:
        usec = int(os.environ.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    return usec / 2e6 if usec > 0 else None


async def ping(every: float) -> None:
    """Send WATCHDOG=1 every `every` seconds, for as long as the loop runs."""
    notifier = sdnotify.SystemdNotifier()
    while True:
        notifier.notify("WATCHDOG=1")
        await asyncio.sleep(every)
