"""The bus connection of spd, the gateway and spdctl (spd.runtime.bus.message_bus) survives a bus that
reads slowly: a full socket buffer (EAGAIN) means "write the rest when there is room", not a lost
connection (dbus-fast ends the connection on it: python-dbus-next #153). The workaround lives in
spd/runtime/compat.py, on dbus-fast's private writer: the first test fails the moment a release changes it."""

import asyncio
import os
import signal

from dbus_fast import Message, MessageType
from dbus_fast.aio import MessageBus

import spd.runtime.compat
from spd.runtime.compat import PatientBus
from spd.runtime.bus import message_bus

BLOB = bytes(64 * 1024)


def test_dbus_fast_still_works_the_way_compat_relies_on(bus, monkeypatch):
    """What spd/runtime/compat.py's PatientBus relies on in dbus-fast's private parts: after connect() the
    writer sends every message through `_writer.sock.send` (the bus's `_sock` until we swap it), no
    descriptors are negotiated (so never sendmsg), and `_finalize(exc)` ends the connection with exc
    as the reason wait_for_disconnect() raises. A release that changes any of these fails here."""
    sent = []
    real = spd.runtime.compat._Patient.send
    monkeypatch.setattr(spd.runtime.compat._Patient, "send", lambda self, data: sent.append(len(data)) or real(self, data))

    async def run():
        plain = await MessageBus(bus_address=bus.address).connect()
        assert plain._writer.sock is plain._sock and not plain._negotiate_unix_fd
        plain.disconnect()
        client = await message_bus(bus.address).connect()
        assert isinstance(client._writer.sock, spd.runtime.compat._Patient)
        reply = await asyncio.wait_for(client.call(Message(
            destination="org.freedesktop.DBus", path="/org/freedesktop/DBus",
            interface="org.freedesktop.DBus", member="GetId")), 10)
        assert reply.message_type == MessageType.METHOD_RETURN and sent, "the writer no longer uses .sock"
        client._finalize(TimeoutError("given up"))
        try:
            await asyncio.wait_for(client.wait_for_disconnect(), 10)
        except TimeoutError as e:
            assert str(e) == "given up"
        else:
            raise AssertionError("_finalize no longer ends the connection with its reason")
        assert not client.connected

    asyncio.run(run())


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
