"""org.selfprivacy.System1: timezone, auto-upgrade, rebuild / upgrade / rollback, reboot, versions,
and pulling the NixOS configuration."""

from ..system import System
from .base import LiveInterface, method, prop
from .names import SYSTEM
from .rules import SYSTEM_MANAGE, SYSTEM_REBOOT, changes


class SystemInterface(LiveInterface):
    NAME = SYSTEM

    def __init__(self, system: System):
        super().__init__()
        self.system = system
        system.listeners.append(lambda: self.publish({"Jobs": self._jobs()}))

    def source(self):
        return self.system.userdata.read()

    def current(self) -> dict:
        auto = self.system.auto_upgrade()
        return {"Timezone": self.system.timezone(), "AutoUpgrade": auto["enable"],
                "AllowReboot": auto["allowReboot"]}

    # --- settings: read-only properties, changed by the Set methods (like timedated) ---------

    @prop()
    def Timezone(self) -> "s":
        """The IANA zone name in userdata's timezone (Europe/Uzhgorod when unset)."""
        return self.value("Timezone")

    @prop()
    def AutoUpgrade(self) -> "b":
        """autoUpgrade.enable: upgrade NixOS automatically (true when unset)."""
        return self.value("AutoUpgrade")

    @prop()
    def AllowReboot(self) -> "b":
        """autoUpgrade.allowReboot: reboot after an automatic upgrade when needed (false when unset)."""
        return self.value("AllowReboot")

    @prop()
    def Jobs(self) -> "a{s(os)}":
        """apply, upgrade or rollback -> (systemd job path, result) of its last start by this
        daemon: the result is systemd's JobRemoved result (done, failed, canceled, timeout,
        dependency, skipped) or "running" until the job ends. {} until the first start."""
        return self._jobs()

    def _jobs(self):
        return {action: list(job) for action, job in self.system.jobs.items()}

    @prop()
    def Version(self) -> "s":
        """What `uname -a` prints (constant)."""
        return self.system.version()

    @prop()
    def PythonVersion(self) -> "s":
        """"Python 3.x.y", the daemon's interpreter (constant)."""
        return self.system.python_version()

    @method(changes(SYSTEM_MANAGE))
    async def SetTimezone(self, timezone: "s"):
        """An IANA zone name such as Europe/Berlin; InvalidArgument otherwise."""
        await self.system.set_timezone(timezone)

    @method(changes(SYSTEM_MANAGE))
    async def SetAutoUpgrade(self, enable: "b"):
        """Write autoUpgrade.enable as given."""
        await self.system.set_auto_upgrade("enable", enable)

    @method(changes(SYSTEM_MANAGE))
    async def SetAllowReboot(self, allow: "b"):
        """Write autoUpgrade.allowReboot as given."""
        await self.system.set_auto_upgrade("allowReboot", allow)

    # --- actions -----------------------------------------------------------------------------

    @method(changes(SYSTEM_MANAGE))
    async def Apply(self) -> "o":
        """Start sp-nixos-rebuild.service; the systemd job (see Jobs)."""
        return await self.system.start("apply")

    @method(changes(SYSTEM_MANAGE))
    async def Upgrade(self) -> "o":
        """Start sp-nixos-upgrade.service; the systemd job (see Jobs)."""
        return await self.system.start("upgrade")

    @method(changes(SYSTEM_MANAGE))
    async def Rollback(self) -> "o":
        """Start sp-nixos-rollback.service; the systemd job (see Jobs)."""
        return await self.system.start("rollback")

    @method(changes(SYSTEM_REBOOT))
    async def Reboot(self):
        """Ask logind to reboot now."""
        await self.system.reboot()

    @method(changes(SYSTEM_MANAGE))
    async def Pull(self) -> "is":
        """`git pull` in the NixOS configuration: git's exit code and output."""
        return list(await self.system.pull())
