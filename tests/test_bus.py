"""The bus connection of spd, the gateway and spdctl (spd.dbus.names.message_bus) survives a bus that
reads slowly: a full socket buffer (EAGAIN) means "write the rest when there is room", not a lost
connection (dbus-fast ends the connection on it: python-dbus-next #153)."""

import asyncio
import os
import signal

from dbus_fast import Message, MessageType

from spd.dbus.names import message_bus

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
