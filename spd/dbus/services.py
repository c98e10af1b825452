"""org.selfprivacy.Services1: enable or disable the server's services, their running state, DKIM."""

import asyncio

from dbus_fast.constants import PropertyAccess
from dbus_fast.service import ServiceInterface, dbus_property

from ..errors import SpdError
from ..services import Services
from .base import errors_mapped, method
from .names import SERVICES

SETTLE = 0.1  # seconds: a burst of unit signals from systemd costs one look at the units


class ServicesInterface(ServiceInterface):
    def __init__(self, services: Services):
        super().__init__(SERVICES)
        self.services = services
        self._status = None  # the running state last read: Status signals changes from there on
        self._refresh = None
        services.on_units_changed(self._units_changed)

    @dbus_property(access=PropertyAccess.READ)
    @errors_mapped
    def Enabled(self) -> "a{sb}":
        """service -> enabled in userdata (applied by the next rebuild); changes are signalled."""
        return self.services.enabled()

    @method()
    async def Enable(self, service: "s"):
        await self._set(service, True)

    @method()
    async def Disable(self, service: "s"):
        await self._set(service, False)

    async def _set(self, service: str, enable: bool) -> None:
        if await self.services.set_enabled(service, enable):
            self.emit_properties_changed({"Enabled": self.services.enabled()})

    @dbus_property(access=PropertyAccess.READ)
    def Status(self) -> "a{si}":
        """The running state as GetStatus last read it (empty before the first GetStatus), then kept
        current by systemd's signals, with change signals. Not read here: dbus-fast reads every
        property when the daemon starts, and systemd need not be up by then."""
        return self._status or {}

    @method()
    async def GetStatus(self) -> "a{si}":
        """imap, smtp, http, bitwarden, gitea, nextcloud, ocserv, pleroma -> 0 running,
        3 not running, 4 no such unit (the exit codes of `systemctl status`)."""
        return await self._read_status()

    async def _read_status(self) -> dict:
        self._status = await self.services.status()
        return self._status

    def _units_changed(self) -> None:
        if self._status is not None and (self._refresh is None or self._refresh.done()):
            self._refresh = asyncio.ensure_future(self._signal_status())

    async def _signal_status(self) -> None:
        await asyncio.sleep(SETTLE)
        before = self._status
        try:
            now = await self.services.status()
        except SpdError:  # systemd went away: the next read says so
            return
        self._status = now
        if now != before:
            self.emit_properties_changed({"Status": now})

    @method()
    async def GetDkim(self) -> "s":
        """Base64 of the mail server's DKIM record file; NotFound when there is none."""
        return await self.services.dkim()
