"""A dbus-fast connection to the test bus, on its own thread, for what busctl cannot show well:
D-Bus error names and the signals the daemon emits."""

import asyncio
import threading
import time

from dbus_fast import Message, MessageType
from dbus_fast.aio import MessageBus

from stack import BUS_NAME, PATH


class BusClient:
    def __init__(self, address: str):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.signals: list[Message] = []

        async def connect():
            return await MessageBus(bus_address=address).connect()

        self.bus = self._run(connect())
        self.bus.add_message_handler(self._on_message)

    def _run(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def _on_message(self, msg):
        if msg.message_type == MessageType.SIGNAL:
            self.signals.append(msg)
        return None

    def watch(self, rule: str) -> None:
        """Record the signals that match a D-Bus match rule."""
        self.call_raw("org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus", "AddMatch",
                      "s", [rule])

    def call_raw(self, destination, path, interface, member, signature="", body=()) -> Message:
        return self._run(self.bus.call(Message(destination=destination, path=path, interface=interface,
                                               member=member, signature=signature, body=list(body))))

    def call(self, interface: str, member: str, signature: str = "", *body) -> Message:
        """A call on the daemon; returns the reply message (check .message_type / .error_name)."""
        return self.call_raw(BUS_NAME, PATH, interface, member, signature, body)

    def wait_signals(self, count: int, timeout: float = 10) -> list[Message]:
        deadline = time.monotonic() + timeout
        while len(self.signals) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        return list(self.signals)

    def close(self):
        self.bus.disconnect()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
