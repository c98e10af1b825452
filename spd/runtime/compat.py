"""Where spd must reach into a library's private parts, because an upstream bug leaves no public way:
here alone (tests/test_source.py fails on a private attribute of dbus_fast or sanic anywhere else),
each with a test that fails the moment a release changes what it relies on (tests/test_bus.py).

dbus-fast ends the connection when the bus socket's buffer is full (EAGAIN: python-dbus-next #153):
`PatientBus` makes its writer wait for room instead. Both spd and the gateway connect through it
(spd.runtime.bus.message_bus).
"""

import asyncio

from dbus_fast.aio import MessageBus


class PatientBus(MessageBus):
    """dbus-fast's connection, except that a full socket buffer (EAGAIN: the bus reads slower than we
    write, e.g. a busy dbus-daemon during a burst of signals) is no longer taken for a broken
    connection (python-dbus-next #153, still so in dbus-fast 5.2): its writer treats a send that
    wrote nothing as a partial write and goes on when the socket is writable again. A bus that takes
    nothing for STALL_LIMIT seconds is given up on, as before (spd exits and systemd starts it
    again), so what waits to be written stays bounded. Relies on dbus-fast's private `_writer.sock`
    (the socket its writer sends on), `_sock`, `_negotiate_unix_fd` and `_finalize(exc)`."""

    STALL_LIMIT = 30.0

    async def connect(self) -> "PatientBus":
        await super().connect()
        assert not self._negotiate_unix_fd  # sendmsg (descriptors) is not made patient
        self._writer.sock = _Patient(self, self.STALL_LIMIT)
        return self


class _Patient:
    """The bus socket as dbus-fast's writer uses it: send() is 0 bytes written when the buffer is full,
    unless nothing could be written for `limit` seconds: then the connection is ended."""

    def __init__(self, bus: MessageBus, limit: float):
        self._bus, self._sock, self._limit = bus, bus._sock, limit
        self._stalled: asyncio.TimerHandle | None = None  # set while the buffer stays full

    def send(self, data) -> int:
        try:
            sent = self._sock.send(data)
        except BlockingIOError:
            if self._stalled is None:
                self._stalled = asyncio.get_running_loop().call_later(self._limit, self._give_up)
            return 0
        if self._stalled is not None:
            self._stalled.cancel()
            self._stalled = None
        return sent

    def sendmsg(self, *args) -> int:
        return self._sock.sendmsg(*args)

    def _give_up(self) -> None:
        self._bus._finalize(TimeoutError(f"the bus took nothing we sent for {self._limit:g} s"))
