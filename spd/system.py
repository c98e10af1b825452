"""System actions: the timezone's check (timezone and auto-upgrade are settings of System1, applied
by nixos-rebuild), the rebuild / upgrade / rollback units started through systemd, reboot through logind, versions, and
pulling the NixOS configuration repository."""

import asyncio
import logging
import os
import platform
import re
import subprocess
import zoneinfo

from .config import Config
from .errors import Busy, Failed, InvalidArgument
from .jsonfile import JsonFile
from .runtime.listeners import Listeners

log = logging.getLogger("spd.system")

DEFAULT_TIMEZONE = "Europe/Uzhgorod"  # what 1.2 servers answered when none was set

# action -> the unit that performs it (defined by the SelfPrivacy NixOS config)
ACTIONS = {
    "apply": "sp-nixos-rebuild.service",
    "upgrade": "sp-nixos-upgrade.service",
    "rollback": "sp-nixos-rollback.service",
}
RUNNING = "running"  # a job's result until systemd reports JobRemoved

PULL_TIMEOUT = 25.0  # seconds; the gateway waits 30 for any answer
MAX_ZONE = 64
ZONE_NAME = re.compile(r"[A-Za-z0-9_+-]+(/[A-Za-z0-9_+-]+)*")
NOT_ZONES = {"localtime", "posixrules", "posix", "right"}  # files in zoneinfo that are not zones

_zones: frozenset | None = None


def valid_timezone(name: str) -> bool:
    """An IANA zone name known to this system's time zone database. The name is checked by shape
    first, so nothing like a path ever reaches the database lookup."""
    global _zones
    if not name or len(name) > MAX_ZONE or not ZONE_NAME.fullmatch(name) or name in NOT_ZONES:
        return False
    if _zones is None:
        _zones = frozenset(zoneinfo.available_timezones())
    return name in _zones


async def check_timezone(name: str) -> None:
    """InvalidArgument unless `name` is an IANA zone name."""
    if _zones is None:  # the first look reads every file of the zone database: not on the loop
        await asyncio.to_thread(valid_timezone, "UTC")
    if not valid_timezone(name):
        raise InvalidArgument(f"There is no IANA time zone named {name[:MAX_ZONE]!r}")


def uname() -> str:
    """What `uname -a` prints (GNU coreutils leaves out the unknown processor and platform)."""
    u = os.uname()
    return " ".join([u.sysname, u.nodename, u.release, u.version, u.machine]
                    + (["GNU/Linux"] if u.sysname == "Linux" else []))


class System:
    def __init__(self, config: Config, userdata: JsonFile, systemd, logind):
        """systemd: `async start_unit(unit) -> job path`, `on_job_removed` (fn(unit, job, result));
        logind: `async reboot()`."""
        self.config = config
        self.userdata = userdata
        self.systemd = systemd
        self.logind = logind
        self.jobs: dict[str, tuple[str, str]] = {}  # action -> (job path, result) of the last start
        self._finished: dict[str, tuple[str, str]] = {}  # unit -> (job path, result) last removed
        self.on_jobs_changed = Listeners(log, "System's jobs")  # fn() after self.jobs changed
        self._pulling = asyncio.Lock()

    def follow_jobs(self) -> None:
        """From now on, hear of every job systemd ends (System1 starts this with itself)."""
        self.systemd.on_job_removed.subscribe(self._job_removed)

    # --- actions ----------------------------------------------------------------------------

    async def start(self, action: str) -> str:
        """Ask systemd to start the action's unit; the job's path once systemd accepted it."""
        unit = ACTIONS.get(action)
        if unit is None:
            raise InvalidArgument(f"There is no action {action[:64]!r}; known: {', '.join(ACTIONS)}")
        job = await self.systemd.start_unit(unit)
        done = self._finished.get(unit)
        self.jobs[action] = (job, done[1] if done and done[0] == job else RUNNING)
        log.info("%s: started %s, job %s", action, unit, job)
        self.on_jobs_changed.notify()
        return job

    def _job_removed(self, unit: str, job: str, result: str) -> None:
        if unit not in ACTIONS.values():
            return
        self._finished[unit] = (job, result)
        for action, (path, _) in self.jobs.items():
            if path == job and ACTIONS[action] == unit:
                self.jobs[action] = (job, result)
                log.info("%s: job %s finished: %s", action, job, result)
                self.on_jobs_changed.notify()

    async def reboot(self) -> None:
        await self.logind.reboot()
        log.info("reboot requested from logind")

    # --- information ------------------------------------------------------------------------

    @staticmethod
    def version() -> str:
        return uname()

    @staticmethod
    def python_version() -> str:
        return f"Python {platform.python_version()}"

    async def pull(self) -> tuple[int, str]:
        """`git pull` in etc/nixos: (git's exit code, its output)."""
        repo = self.config.path("etc/nixos")
        if not repo.is_dir():
            raise Failed("etc/nixos is not a directory")
        if self._pulling.locked():
            raise Busy("A pull of etc/nixos is already running")
        async with self._pulling:
            # No prompts: a question nobody can answer would hang until the timeout.
            env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "true",
                   "GIT_SSH_COMMAND": "ssh -o BatchMode=yes", "LC_ALL": "C",
                   # etc/nixos itself or nothing: never a repository above it (an etckeeper /etc)
                   "GIT_CEILING_DIRECTORIES": str(repo.parent)}
            # On a worker thread: starting a process blocks until the child has called exec.
            code, out = await asyncio.to_thread(_git_pull, repo, env)
        log.info("git pull in etc/nixos: exit %d", code)
        return code, out.decode("utf-8", errors="replace")


def _git_pull(repo, env) -> tuple[int, bytes]:
    try:
        proc = subprocess.run(["git", "pull"], cwd=repo, env=env, stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=PULL_TIMEOUT)
    except OSError as e:
        raise Failed(f"Cannot run git: {e.strerror}") from None
    except subprocess.TimeoutExpired:  # run() killed it
        raise Failed(f"git pull did not finish within {PULL_TIMEOUT:.0f} seconds") from None
    return proc.returncode, proc.stdout
