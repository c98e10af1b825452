"""org.selfprivacy.System1: timezone, auto-upgrade, rebuild / upgrade / rollback, reboot, versions,
and pulling the NixOS configuration."""

from ..contract import SYSTEM
from ..system import DEFAULT_TIMEZONE, System, check_timezone
from .base import LiveInterface, method, prop, setting
from .rules import SYSTEM_MANAGE, SYSTEM_REBOOT, changes


class SystemInterface(LiveInterface):
    NAME = SYSTEM

    # --- settings: read-only properties, changed by their Set methods (like timedated) ---------
    Timezone = setting(SYSTEM_MANAGE, "timezone", "s", default=DEFAULT_TIMEZONE, arg="timezone",
                       check=check_timezone,
                       doc="The IANA zone name in userdata's timezone (Europe/Uzhgorod when unset).",
                       set_doc="An IANA zone name such as Europe/Berlin; InvalidArgument otherwise.")
    AutoUpgrade = setting(SYSTEM_MANAGE, "autoUpgrade.enable", "b", default=True, arg="enable",
                          doc="autoUpgrade.enable: upgrade NixOS automatically (true when unset).")
    AllowReboot = setting(SYSTEM_MANAGE, "autoUpgrade.allowReboot", "b", default=False, arg="allow",
                          doc="autoUpgrade.allowReboot: reboot after an automatic upgrade when needed "
                              "(false when unset).")

    def __init__(self, system: System):
        super().__init__()
        self.system = system
        self.userdata = system.userdata

    def start(self) -> None:
        """Jobs are published as they change; the versions once (constant), whatever userdata says."""
        self.publish({"Version": self.system.version(), "PythonVersion": self.system.python_version()})
        self._publish_jobs()
        self.system.on_jobs_changed.subscribe(self._publish_jobs)
        self.system.follow_jobs()

    def _publish_jobs(self) -> None:
        self.publish({"Jobs": {action: list(job) for action, job in self.system.jobs.items()}})

    Jobs = prop("a{s(os)}",
                doc="apply, upgrade or rollback -> (systemd job path, result) of its last start by this "
                    "daemon: the result is systemd's JobRemoved result (done, failed, canceled, timeout, "
                    'dependency, skipped) or "running" until the job ends. {} until the first start.')
    Version = prop("s", doc="What `uname -a` prints (constant).")
    PythonVersion = prop("s", doc="\"Python 3.x.y\", the daemon's interpreter (constant).")

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
