"""Connecting to the bus named by --bus / SPD_BUS (shared by the daemon and the gateway)."""

from dbus_fast import BusType
from dbus_fast.aio import MessageBus


def message_bus(address: str, cls=MessageBus) -> MessageBus:
    if address == "system":
        return cls(bus_type=BusType.SYSTEM)
    if address == "session":
        return cls(bus_type=BusType.SESSION)
    return cls(bus_address=address)
