"""Running restic as a child process of the daemon (started from a worker thread, then followed on the
event loop, so every other call keeps being answered).

Secrets never reach argv: the repository password goes through RESTIC_PASSWORD_FILE, a 0600 file in a
private 0700 folder that exists only while restic runs, and the Backblaze key through the child's
environment (B2_ACCOUNT_KEY), which only root can read. Whatever restic prints is scrubbed of both before
it is logged or shown to a caller. The child gets SIGINT (restic's clean exit: it removes its lock) when
the daemon stops or dies.
"""

import asyncio
import logging
import os
import re
import shutil
import signal
import stat
import subprocess
import tempfile
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

log = logging.getLogger("spd.backups")

# What went wrong, as the state machine needs to know it.
MISSING = "missing"  # no repository at the location (yet)
PASSWORD = "password"  # the password does not open the repository
LOCKED = "locked"  # another restic (or a stale lock) holds the repository
ABSENT = "absent"  # restic is not installed
KILLED = "killed"  # restic died from a signal
TIMEOUT = "timeout"
FAILED = "failed"

# Passed through from the daemon's environment; nothing else is (the child sees no stray secrets).
PASSED_ENV = ("PATH", "HOME", "TMPDIR", "LANG", "LC_ALL", "XDG_CACHE_HOME", "RESTIC_CACHE_DIR",
              "RESTIC_PROGRESS_FPS", "SSL_CERT_FILE", "SSL_CERT_DIR")
PROGRESS_FPS = "2"  # restic's JSON default is 60 status lines a second: far more than anyone watches
STOP_GRACE = 10.0  # seconds restic gets to release its lock after SIGINT
MAX_MESSAGE = 400
PASSWORD_PREFIX = "spd-restic-"  # + our pid + "-": the folder of the password file while restic runs
PASSWORD_FILE = "password"
STALE = re.compile(re.escape(PASSWORD_PREFIX) + r"([0-9]+)-[A-Za-z0-9_]+")


@dataclass(frozen=True)
class Repository:
    location: str  # RESTIC_REPOSITORY; holds no secret
    password: str = field(repr=False)
    env: dict = field(default_factory=dict, repr=False)  # e.g. the B2 credentials
    secrets: tuple = field(default=(), repr=False)  # scrubbed from everything restic prints

    def scrub(self, text: str) -> str:
        for secret in sorted(self.secrets, key=len, reverse=True):
            if secret:
                text = text.replace(secret, "***")
        return text


class ResticError(Exception):
    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind
        self.message = message


async def run(repo: Repository, args: list, on_line=None, timeout: float | None = None,
              ok: tuple = (0,)) -> str:
    """restic ARGS against `repo`; returns stdout (or "" when on_line took each line). `ok`: the exit
    codes that count as success. A stale lock is removed with `restic unlock` (which only removes locks
    whose process is gone) and the command retried once."""
    try:
        return await _run_once(repo, args, on_line, timeout, ok)
    except ResticError as e:
        if e.kind != LOCKED:
            raise
        log.warning("restic %s: the repository is locked; removing stale locks and retrying once", args[0])
    await _run_once(repo, ["unlock"], None, timeout, (0,))
    return await _run_once(repo, args, on_line, timeout, ok)


async def _run_once(repo: Repository, args: list, on_line, timeout, ok) -> str:
    exe = shutil.which("restic")
    if exe is None:
        raise ResticError(ABSENT, "restic is not installed (not found in PATH)")
    async with _password_file(repo.password) as password_file:
        env = {k: os.environ[k] for k in PASSED_ENV if k in os.environ}
        env.setdefault("RESTIC_PROGRESS_FPS", PROGRESS_FPS)
        if "CACHE_DIRECTORY" in os.environ and "RESTIC_CACHE_DIR" not in env:  # systemd's CacheDirectory=
            env["RESTIC_CACHE_DIR"] = os.environ["CACHE_DIRECTORY"].split(":")[0]
        env.update(repo.env, RESTIC_REPOSITORY=repo.location, RESTIC_PASSWORD_FILE=password_file)
        proc = await _Child.start([*_with_parent(exe), *args], env)
        try:
            out, err = await asyncio.wait_for(_communicate(proc, on_line), timeout)
        except asyncio.TimeoutError:
            await _stop(proc)
            raise ResticError(TIMEOUT, f"restic {args[0]} did not finish in {timeout:.0f} seconds") from None
        except BaseException:  # cancelled: the daemon is stopping
            await _stop(proc)
            raise
    if proc.returncode in ok:
        if proc.returncode:
            log.warning("restic %s exited with %d: %s", args[0], proc.returncode,
                        _error(repo, args[0], proc.returncode, err).message)
        return out
    raise _error(repo, "cat config" if args[:2] == ["cat", "config"] else args[0], proc.returncode, err)


class _Child:
    """restic as a child process. It is started from a worker thread: starting a process blocks until
    the child has called exec, which on a busy machine can take long enough to stall the event loop.
    Its output is read, and its exit awaited (through a pidfd), on the loop."""

    @classmethod
    async def start(cls, argv: list, env: dict) -> "_Child":
        self = cls()
        self.popen = await asyncio.to_thread(subprocess.Popen, argv, stdin=subprocess.DEVNULL,
                                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        loop = asyncio.get_running_loop()
        self.stdout, self.stderr = await _reader(loop, self.popen.stdout), await _reader(loop, self.popen.stderr)
        self._exited = loop.create_future()
        self._pidfd = os.pidfd_open(self.popen.pid)  # readable once the child has exited
        loop.add_reader(self._pidfd, self._on_exit, loop)
        return self

    def _on_exit(self, loop) -> None:
        loop.remove_reader(self._pidfd)
        os.close(self._pidfd)
        self.popen.poll()  # reaps it at once: it has exited
        self._exited.set_result(None)

    @property
    def returncode(self) -> int | None:
        return self.popen.returncode

    async def wait(self) -> int:
        await asyncio.shield(self._exited)
        return self.popen.returncode

    def send_signal(self, sig) -> None:
        self.popen.send_signal(sig)

    def kill(self) -> None:
        self.popen.kill()


async def _reader(loop, pipe) -> asyncio.StreamReader:
    reader = asyncio.StreamReader(limit=1 << 20)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), pipe)
    return reader


async def _communicate(proc, on_line):
    async def stdout():
        if on_line is None:
            return (await proc.stdout.read()).decode(errors="replace")
        async for line in proc.stdout:
            on_line(line.decode(errors="replace"))
        return ""

    out, err = await asyncio.gather(stdout(), proc.stderr.read())
    await proc.wait()
    return out, err[-65536:].decode(errors="replace")


async def _stop(proc) -> None:
    if proc.returncode is not None:
        return
    try:
        proc.send_signal(signal.SIGINT)
        await asyncio.wait_for(asyncio.shield(proc.wait()), STOP_GRACE)
    except (asyncio.TimeoutError, asyncio.CancelledError):
        proc.kill()
        await proc.wait()
    except ProcessLookupError:
        pass


def _error(repo: Repository, command: str, code: int, stderr: str) -> ResticError:
    text = repo.scrub(stderr)
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return ResticError(KILLED, f"restic {command} was stopped by {name}")
    if "wrong password or no key found" in text:
        return ResticError(PASSWORD, "The restic password does not open the repository")
    if "Is there a repository at the following location" in text or "unable to open config file" in text:
        return ResticError(MISSING, f"There is no restic repository at {repo.scrub(repo.location)}")
    if "repository is already locked" in text:
        return ResticError(LOCKED, "The restic repository is locked by another process")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    fatal = [line for line in lines if line.startswith("Fatal:")]
    detail = (fatal[-1] if fatal else " ".join(lines[-3:])) or f"exit code {code}"
    if len(detail) > MAX_MESSAGE:
        detail = detail[:MAX_MESSAGE] + "..."
    return ResticError(FAILED, f"restic {command} failed: {detail}")


def _password_parent() -> str:
    """systemd's RuntimeDirectory= (a tmpfs under /run, emptied when the daemon stops) when there is
    one, else the temp folder (/tmp)."""
    return os.environ.get("RUNTIME_DIRECTORY") or tempfile.gettempdir()


def _write_password(password: str) -> str:
    """A new 0700 folder, named for our pid, holding the 0600 file `password`; the folder."""
    folder = tempfile.mkdtemp(prefix=f"{PASSWORD_PREFIX}{os.getpid()}-", dir=_password_parent())
    try:
        fd = os.open(os.path.join(folder, PASSWORD_FILE),
                     os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(password)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return folder


@asynccontextmanager
async def _password_file(password: str):
    folder = await asyncio.to_thread(_write_password, password)  # disk work: off the event loop
    try:
        yield os.path.join(folder, PASSWORD_FILE)
    finally:
        # Shielded: a cancelled caller (the daemon stopping) does not stop the thread that removes it.
        await asyncio.shield(asyncio.to_thread(shutil.rmtree, folder, True))


def remove_stale_password_folders() -> None:
    """Remove the password folders a daemon killed while restic ran left behind (in /tmp they
    outlive it). Only what is recognisably ours goes: a real folder (never a link) named
    spd-restic-<pid>-*, owned by us, whose pid is no running process, holding nothing but a
    regular file `password`. Everything is reached through descriptors, never through a link."""
    parent = _password_parent()
    try:
        parent_fd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        for name in os.listdir(parent_fd):
            m = STALE.fullmatch(name)
            if m is None or int(m.group(1)) == os.getpid() or _running(int(m.group(1))):
                continue
            try:
                fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent_fd)
            except OSError:  # a link, a file, or gone
                continue
            try:
                st = os.fstat(fd)
                if st.st_uid != os.geteuid() or st.st_mode & 0o777 != 0o700:
                    continue
                if os.listdir(fd) == [PASSWORD_FILE]:
                    if stat.S_ISREG(os.stat(PASSWORD_FILE, dir_fd=fd, follow_symlinks=False).st_mode):
                        os.unlink(PASSWORD_FILE, dir_fd=fd)
                if not os.listdir(fd):
                    os.rmdir(name, dir_fd=parent_fd)
                    log.info("removed %s, left behind by a stopped daemon", os.path.join(parent, name))
            except OSError as e:
                log.warning("cannot remove %s: %s", os.path.join(parent, name), e.strerror or e)
            finally:
                os.close(fd)
    finally:
        os.close(parent_fd)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _with_parent(exe: str) -> list:
    """restic, set to get SIGINT when the daemon dies (even by SIGKILL), so that no restic outlives
    the daemon that would report on it. setpriv (util-linux) sets that and execs restic; a preexec_fn
    would do the same but is unsafe in a process with threads."""
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "INT", "--", exe] if setpriv else [exe]
