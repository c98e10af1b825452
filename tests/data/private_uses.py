# What tests/test_source.py must find: private dbus-fast and Sanic uses of main a526509 (not imported
# by anything).
from dbus_fast._private.address import parse_address  # noqa: F401
from sanic.response import HTTPResponse
from sanic.server.protocols.http_protocol import HttpProtocol


class Bus:
    def __init__(self, bus):
        self.bus = bus
        self.sock = bus._sock

    def replay(self, msg):
        self.bus._process_message(msg)
        self.bus._writer.sock = self
        self.bus._finalize(None)
        return self.sock


class Answer(HTTPResponse):
    def __init__(self, body):
        super().__init__(HTTPResponse._dumps(body))

    @staticmethod
    def _sanitize_header_value(value):
        return value


class Protocol(HttpProtocol):
    def data_received(self, data):
        started = self._time
        super().data_received(data)
        self._time = started
