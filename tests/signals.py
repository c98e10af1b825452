"""The one recorder of the daemon's signals in the tests."""

import asyncio
import threading

from dbus_fast import Message, MessageType
from dbus_fast.aio import MessageBus

from spd.contract import DBUS, PATH, PROPERTIES


class Signals:
    """Records the daemon's property changes, from a D-Bus connection of its own (a thread with its
    own event loop): a PropertiesChanged names what changed (spd never sends a value in a signal), so
    each name is read with Properties.Get, sent from the message handler at once (its reply is the
    value just after that signal, however fast the next ones come) and recorded in the order the
    signals came (a value that cannot be read now is left out). The match rule is in place when the
    constructor returns."""

    def __init__(self, bus):
        self.received = []  # (interface, {property: value as read after its signal})
        self.raw = []  # (interface, changed values, invalidated names): the signals as they came
        self._cond = threading.Condition()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._connect(bus.address), self._loop).result(10)

    async def _connect(self, address):
        self._bus = await MessageBus(bus_address=address).connect()
        self._queue = asyncio.Queue()
        self._reader = asyncio.ensure_future(self._read())
        self._bus.add_message_handler(self._on_message)
        rule = f"type='signal',path='{PATH}',interface='{PROPERTIES}',member='PropertiesChanged'"
        reply = await self._bus.call(Message(destination=DBUS, path="/org/freedesktop/DBus", interface=DBUS,
                                             member="AddMatch", signature="s", body=[rule]))
        assert reply.message_type == MessageType.METHOD_RETURN, reply.body

    def _on_message(self, msg):
        if msg.message_type == MessageType.SIGNAL and msg.member == "PropertiesChanged":
            interface, changed, invalidated = msg.body
            self.raw.append((interface, changed, invalidated))
            gets = {name: asyncio.ensure_future(self._bus.call(Message(
                destination=msg.sender, path=PATH, interface=PROPERTIES, member="Get", signature="ss",
                body=[interface, name]))) for name in invalidated}
            self._queue.put_nowait((interface, gets))

    async def _read(self):
        while True:
            interface, gets = await self._queue.get()
            values = {}
            for name, get in gets.items():
                reply = await get
                if reply.message_type == MessageType.METHOD_RETURN:
                    values[name] = reply.body[0].value
            with self._cond:
                self.received.append((interface, values))
                self._cond.notify_all()

    def changes(self, interface: str, name: str) -> list:
        """Each value `interface.name` was read with after a signal that named it."""
        return [c[name] for i, c in self.received if i == interface and name in c]

    def wait(self, count: int, timeout: float = 10) -> list:
        """The first `count` signals, waiting for them to arrive."""
        return self.wait_for(lambda received: len(received) >= count, timeout)

    def wait_for(self, predicate, timeout: float = 10) -> list:
        """All signals so far, once predicate(signals) holds."""
        with self._cond:
            assert self._cond.wait_for(lambda: predicate(self.received), timeout), self.received
            return list(self.received)

    def close(self):
        async def stop():
            self._reader.cancel()
            self._bus.disconnect()
        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
