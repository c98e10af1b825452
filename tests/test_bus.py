"""The bus connection of spd, the gateway and spdctl (spd.dbus.names.message_bus) survives a bus that
reads slowly: a full socket buffer (EAGAIN) means "write the rest when there is room", not a lost
connection (dbus-fast ends the connection on it: python-dbus-next #153)."""

import asyncio
import os
import signal

from dbus_fast import Message, MessageType

from spd.dbus.names import PatientBus, message_bus

BLOB = bytes(64 * 1024)


def test_a_full_socket_buffer_does_not_end_the_connection(bus):
    async def run():
        client = await message_bus(bus.address).connect()
        try:
            os.kill(bus.process.pid, signal.SIGSTOP)  # the bus reads nothing: the buffer fills up
            try:
                sent = [client.send(Message.new_signal("/org/selfprivacy/Test", "org.selfprivacy.Test",
                                                       "Blob", "ay", [BLOB])) for _ in range(64)]
                await asyncio.sleep(0.5)
                assert client.connected
            finally:
                os.kill(bus.process.pid, signal.SIGCONT)
            await asyncio.wait_for(asyncio.gather(*sent), 20)  # all 4 MiB written once it reads again
            reply = await asyncio.wait_for(client.call(Message(
                destination="org.freedesktop.DBus", path="/org/freedesktop/DBus",
                interface="org.freedesktop.DBus", member="GetId")), 10)
            assert reply.message_type == MessageType.METHOD_RETURN and client.connected
        finally:
            client.disconnect()

    asyncio.run(run())


def test_a_bus_that_takes_nothing_for_long_is_given_up(bus, monkeypatch):
    """What waits to be written stays bounded: after STALL_LIMIT seconds of a full buffer the
    connection ends, as a lost one does (spd then exits and systemd starts it again)."""
    monkeypatch.setattr(PatientBus, "STALL_LIMIT", 0.5)

    async def run():
        client = await message_bus(bus.address).connect()
        os.kill(bus.process.pid, signal.SIGSTOP)
        try:
            for _ in range(64):
                client.send(Message.new_signal("/org/selfprivacy/Test", "org.selfprivacy.Test", "Blob", "ay",
                                               [BLOB]))
            await asyncio.sleep(0.2)
            assert client.connected  # not yet
            try:
                await asyncio.wait_for(client.wait_for_disconnect(), 10)
            except TimeoutError as e:
                assert "took nothing we sent" in str(e)
            else:
                raise AssertionError("ended without the stall's error")
            assert not client.connected
        finally:
            os.kill(bus.process.pid, signal.SIGCONT)

    asyncio.run(run())
