"""The bus connection of spd, spd-gateway and spdctl."""

from dbus_fast import BusType
from dbus_fast.aio import MessageBus

from .compat import PatientBus


def message_bus(address: str) -> MessageBus:
    """A connection to the bus named by --bus / SPD_BUS: system, session, or a D-Bus address."""
    if address == "system":
        return PatientBus(bus_type=BusType.SYSTEM)
    if address == "session":
        return PatientBus(bus_type=BusType.SESSION)
    return PatientBus(bus_address=address)
