"""org.selfprivacy.Services1: enable or disable the server's services, their running state, DKIM."""

from dbus_fast.constants import PropertyAccess
from dbus_fast.service import ServiceInterface, dbus_property

from ..services import Services
from .base import method
from .names import SERVICES


class ServicesInterface(ServiceInterface):
    def __init__(self, services: Services):
        super().__init__(SERVICES)
        self.services = services

    @dbus_property(access=PropertyAccess.READ)
    def Enabled(self) -> "a{sb}":
        """service -> enabled in userdata (applied by the next rebuild); changes are signalled."""
        return self.services.enabled()

    @method()
    def Enable(self, service: "s"):
        self._set(service, True)

    @method()
    def Disable(self, service: "s"):
        self._set(service, False)

    def _set(self, service: str, enable: bool) -> None:
        if self.services.set_enabled(service, enable):
            self.emit_properties_changed({"Enabled": self.services.enabled()})

    @method()
    async def GetStatus(self) -> "a{si}":
        """imap, smtp, http, bitwarden, gitea, nextcloud, ocserv, pleroma -> 0 running,
        3 not running, 4 no such unit (the exit codes of `systemctl status`)."""
        return await self.services.status()

    @method()
    def GetDkim(self) -> "s":
        """Base64 of the mail server's DKIM record file; NotFound when there is none."""
        return self.services.dkim()
