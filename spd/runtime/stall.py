"""The stall detector, for tests and benchmarks: with SPD_STALL_MS=N in its environment, spd (and
spd-gateway) logs every callback that held its event loop for N ms or longer, naming the callback.

It is asyncio's own slow-callback report (debug mode with loop.slow_callback_duration), which
measures wall-clock time. On a busy machine that also counts the time the loop's thread waited for
a CPU while other processes ran: a 1 ms callback preempted for 30 ms looks like a 31 ms stall; and
the loop waits for the GIL while the worker thread that holds it waits for a CPU. So spd reads its
threads' run-queue wait from the kernel (/proc/self/task/*/schedstat, field 2) each time the loop
wakes, and reports what a slow callback held apart from that wait: time running, or blocked in a
system call (an fsync, a lock), or waiting for the GIL while another of our threads computed:

    spd.stall: WARNING: held the loop 31.2 ms (wall 33.0 ms, 1.8 ms waiting for a CPU): <Handle ...>

Quoted values in the description of the callback (a task's result, a handle's arguments: maybe a
token or a mnemonic) are replaced by '***'.

A callback whose wall time the wait explains is logged at INFO ("... not a stall"). The gateway then
runs on asyncio's loop instead of uvloop. Debug mode makes everything slower (asyncio records where
every callback was created): never for production.
"""

import asyncio
import logging
import os
import re
import selectors
import threading
import weakref

ENV = "SPD_STALL_MS"
_EXECUTING = "Executing %s took %.3f seconds"  # asyncio's and uvloop's slow-callback warning
# Quoted values in a callback's description (a task's result, a handle's arguments) may be secrets:
# a new token, a mnemonic. They are left out of the report.
_QUOTED = re.compile(r"'(?:[^'\\]|\\.)*'" "|" r'"(?:[^"\\]|\\.)*"')


def threshold_ms() -> float:
    """SPD_STALL_MS as a number of milliseconds; 0 (off) when unset or not a positive number."""
    try:
        value = float(os.environ.get(ENV) or 0)
    except ValueError:
        return 0.0
    return value if value > 0 else 0.0


class _RunQueueWait:
    """The total time the process's threads spent runnable but not running (ns), as the kernel counts
    it. All threads, not only the loop's: the loop may be waiting for the GIL that a worker thread
    holds while that thread waits for a CPU."""

    def __init__(self):
        self._fds: dict[str, int] = {}  # thread id -> its open schedstat
        self._threads = -1  # threading.active_count() when the set was last refreshed
        self.mark = self.read()  # when the callbacks being run started (or the last report)

    def _refresh(self) -> None:
        try:
            tids = set(os.listdir("/proc/self/task"))
        except OSError:
            tids = set()
        for tid in set(self._fds) - tids:
            os.close(self._fds.pop(tid))
        for tid in tids - set(self._fds):
            try:
                self._fds[tid] = os.open(f"/proc/self/task/{tid}/schedstat", os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                pass
        self._threads = threading.active_count()

    def read(self) -> int | None:
        if threading.active_count() != self._threads:
            self._refresh()
        total = None
        for tid, fd in list(self._fds.items()):
            try:
                total = (total or 0) + int(os.pread(fd, 128, 0).split()[1])
            except (OSError, ValueError, IndexError):  # the thread ended
                os.close(self._fds.pop(tid))
        return total


class _MarkingSelector(selectors.DefaultSelector):
    """The loop's selector, noting the run-queue wait each time the loop wakes to run callbacks."""

    def __init__(self, wait: _RunQueueWait):
        super().__init__()
        self._wait = wait

    def select(self, timeout=None):
        events = super().select(timeout)
        self._wait.mark = self._wait.read()
        return events


class _Report(logging.Filter):
    """Replaces asyncio's slow-callback warning (on the `asyncio` logger) with our report."""

    def __init__(self, threshold: float, report: logging.Logger):
        super().__init__()
        self.threshold, self.report = threshold, report
        self.waits = weakref.WeakKeyDictionary()  # loop -> its thread's _RunQueueWait

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg != _EXECUTING or not isinstance(record.args, tuple) or len(record.args) != 2:
            return True
        callback, wall = _QUOTED.sub("'***'", str(record.args[0])), record.args[1] * 1000
        try:
            wait = self.waits.get(asyncio.get_running_loop())
        except RuntimeError:
            wait = None
        waited, now = 0.0, wait.read() if wait else None
        if now is not None and wait.mark is not None:
            # The wait since this batch of callbacks began (or the last report): the callback's
            # own, whatever faster callbacks before it in the batch waited, and what other threads
            # waited meanwhile (a new thread: all of its wait so far).
            waited = min(max(now - wait.mark, 0) / 1e6, wall)  # a thread that ended takes its share along
            wait.mark = now
        held = wall - waited
        stall = held >= self.threshold
        self.report.log(logging.WARNING if stall else logging.INFO,
                        "held the loop %.1f ms (wall %.1f ms, %.1f ms waiting for a CPU)%s: %s",
                        held, wall, waited, "" if stall else ", not a stall", callback)
        return False


def loop_factory(report: logging.Logger):
    """For asyncio.Runner: None (the default loop) when SPD_STALL_MS is off, else a factory for
    loops that report stalls, corrected for the time the process's threads waited for a CPU."""
    threshold = threshold_ms()
    if not threshold:
        return None
    reporter = _Report(threshold, report)
    logging.getLogger("asyncio").addFilter(reporter)
    report.info("stall detector on: callbacks that hold the event loop %g ms or longer are logged", threshold)

    def new_loop() -> asyncio.AbstractEventLoop:
        wait = _RunQueueWait()
        loop = asyncio.SelectorEventLoop(_MarkingSelector(wait))
        loop.set_debug(True)
        loop.slow_callback_duration = threshold / 1000
        if wait.mark is not None:  # else (no schedstat) wall-clock time only
            reporter.waits[loop] = wait
        return loop

    return new_loop


def use_for_new_loops(report: logging.Logger) -> bool:
    """For a server that makes its own loop (Sanic): when SPD_STALL_MS is on, every loop asyncio
    makes from now on is ours. True when on (the caller must then not ask for uvloop)."""
    factory = loop_factory(report)
    if factory is None:
        return False

    class Policy(asyncio.DefaultEventLoopPolicy):
        def new_event_loop(self):
            return factory()

    asyncio.set_event_loop_policy(Policy())
    return True
