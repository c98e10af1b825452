"""Connecting to the bus named by --bus / SPD_BUS (shared by the daemon and the gateway)."""

from dbus_fast import BusType
from dbus_fast.aio import MessageBus


def message_bus(address: str) -> MessageBus:
    if address == "system":
        return MessageBus(bus_type=BusType.SYSTEM)
    if address == "session":
        return MessageBus(bus_type=BusType.SESSION)
    return MessageBus(bus_address=address)
