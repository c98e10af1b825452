"""org.selfprivacy.System1: timezone, auto-upgrade, rebuild / upgrade / rollback, reboot, versions,
and pulling the NixOS configuration."""

from dbus_fast.constants import PropertyAccess
from dbus_fast.service import ServiceInterface, dbus_property

from ..system import System
from .base import errors_mapped, method
from .names import SYSTEM


class SystemInterface(ServiceInterface):
    def __init__(self, system: System):
        super().__init__(SYSTEM)
        self.system = system
        system.listeners.append(lambda: self.emit_properties_changed({"Jobs": self._jobs()}))

    # --- settings: read-only properties, changed by the Set methods (like timedated) ---------

    @dbus_property(access=PropertyAccess.READ)
    @errors_mapped
    def Timezone(self) -> "s":
        return self.system.timezone()

    @dbus_property(access=PropertyAccess.READ)
    @errors_mapped
    def AutoUpgrade(self) -> "b":
        return self.system.auto_upgrade()["enable"]

    @dbus_property(access=PropertyAccess.READ)
    @errors_mapped
    def AllowReboot(self) -> "b":
        return self.system.auto_upgrade()["allowReboot"]

    @dbus_property(access=PropertyAccess.READ)
    def Jobs(self) -> "a{s(os)}":
        """action (apply, upgrade, rollback) -> (systemd job, result) of its last start; the result
        is systemd's (done, failed, canceled, ...) or "pending" until the job finished."""
        return self._jobs()

    def _jobs(self):
        return {action: list(job) for action, job in self.system.jobs.items()}

    @method()
    async def SetTimezone(self, timezone: "s"):
        """An IANA zone name such as Europe/Berlin; InvalidArgument otherwise."""
        if await self.system.set_timezone(timezone):
            self.emit_properties_changed({"Timezone": timezone})

    @method()
    async def SetAutoUpgrade(self, settings: "a{sb}"):
        """Set any of "enable" and "allowReboot"; the others keep their value."""
        changed = await self.system.set_auto_upgrade(settings)
        names = {"enable": "AutoUpgrade", "allowReboot": "AllowReboot"}
        if changed:
            self.emit_properties_changed({names[k]: v for k, v in changed.items()})

    # --- actions -----------------------------------------------------------------------------

    @method()
    async def Apply(self) -> "o":
        """Start sp-nixos-rebuild.service; the systemd job (see Jobs)."""
        return await self.system.start("apply")

    @method()
    async def Upgrade(self) -> "o":
        """Start sp-nixos-upgrade.service; the systemd job (see Jobs)."""
        return await self.system.start("upgrade")

    @method()
    async def Rollback(self) -> "o":
        """Start sp-nixos-rollback.service; the systemd job (see Jobs)."""
        return await self.system.start("rollback")

    @method()
    async def Reboot(self):
        """Ask logind to reboot now."""
        await self.system.reboot()

    @method()
    async def Pull(self) -> "is":
        """`git pull` in the NixOS configuration: git's exit code and output."""
        return list(await self.system.pull())

    # --- information -------------------------------------------------------------------------

    @method()
    def GetVersion(self) -> "s":
        """What `uname -a` prints."""
        return self.system.version()

    @method()
    def GetPythonVersion(self) -> "s":
        return self.system.python_version()
