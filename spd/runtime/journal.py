"""The log lines of spd and spd-gateway. Under systemd, stderr is a stream to the journal, which
takes a leading `<N>` on a line as its syslog priority (sd-daemon(3)): without one every line is
priority 6, and `journalctl -p warning` would never show a refusal or an error. So when stderr is the
journal (systemd sets $JOURNAL_STREAM to its device:inode, systemd.exec(5)) each line of a record,
a traceback's too, starts with its priority; anywhere else (a terminal, a test's log file) the lines
are as they were."""

import asyncio
import logging
import os
import sys
import time

FORMAT = "%(name)s: %(levelname)s: %(message)s"


def priority(level: int) -> int:
    """The syslog priority of a logging level: crit 2, err 3, warning 4, info 6, debug 7."""
    if level >= logging.CRITICAL:
        return 2
    if level >= logging.ERROR:
        return 3
    if level >= logging.WARNING:
        return 4
    return 6 if level >= logging.INFO else 7


class JournalFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        prefix = f"<{priority(record.levelno)}>"
        return "\n".join(prefix + line for line in super().format(record).split("\n"))


def is_journal(stream) -> bool:
    """Whether stream is the journal stream systemd connected (as sd_journal_stream_fd's users check)."""
    device, _, inode = os.environ.get("JOURNAL_STREAM", "").partition(":")
    try:
        st = os.fstat(stream.fileno())
        return (st.st_dev, st.st_ino) == (int(device), int(inode))
    except (ValueError, OSError, AttributeError):
        return False


def handler(stream=None) -> logging.Handler:
    """A handler writing to stream (stderr), with priorities when it is the journal."""
    stream = stream or sys.stderr
    h = logging.StreamHandler(stream)
    h.setFormatter(JournalFormatter(FORMAT) if is_journal(stream) else logging.Formatter(FORMAT))
    return h


class Throttle:
    """Lines that a stranger can cause at will (refused calls, bad requests): journald drops a unit's
    lines past its rate limit (RateLimitBurst= per RateLimitIntervalSec=, per priority), audit
    entries among them. So per key (a caller's uid, say) at most `burst` lines every `every`
    seconds; the rest are counted and said in one line when the period ends."""

    def __init__(self, log: logging.Logger, what, burst: int, every: float):
        """what(key): the noun of the summary line ("calls of uid 65534")."""
        self._log, self._what, self._burst, self._every = log, what, burst, every
        self._periods: dict = {}  # key -> [its end, lines shown, lines not shown]

    def allow(self, key=None) -> bool:
        """Whether a line about `key` may be written now (else it is counted)."""
        period = self._periods.get(key)
        now = time.monotonic()
        if period is None or now >= period[0]:
            if period is not None:
                self._end(key, period)
            period = self._periods[key] = [now + self._every, 0, 0]
            try:  # the summary when the period ends (without a loop, at the next line about key)
                asyncio.get_running_loop().call_later(self._every, self._end, key, period)
            except RuntimeError:
                pass
        if period[1] < self._burst:
            period[1] += 1
            return True
        period[2] += 1
        return False

    def _end(self, key, period) -> None:
        if self._periods.get(key) is period:
            del self._periods[key]
            if period[2]:
                self._log.warning("refused %d more %s, not shown one by one", period[2], self._what(key))
