"""Users of the server: `users[]` in userdata.json, next to the master user (top-level `username`).

A password is hashed by mkpasswd (SHA-512 crypt, which NixOS accepts) with the password on its
stdin, never in argv or the environment, where /proc would show it. Hashing runs on a worker thread
outside the userdata lock, so the daemon keeps serving meanwhile; the write itself is a group commit
(JsonFile.update_async), so concurrent creations share one fsync.
"""

import asyncio
import logging
import os
import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor

from .errors import AlreadyExists, Failed, InvalidArgument, NotFound, Reserved
from .jsonfile import JsonFile
from .reserved import RESERVED, RESERVED_PREFIXES

log = logging.getLogger("spd.users")

USERNAME = re.compile(r"[a-z_][a-z0-9_]+")
MAX_USERNAME = 32
MAX_PASSWORD = 256  # bytes; beyond this mkpasswd and other crypt(3) tools disagree or fail
_CRYPT = re.compile(r"\$6\$[./0-9A-Za-z]{1,16}\$[./0-9A-Za-z]{86}")
HASHERS = 2 * (os.cpu_count() or 1)  # concurrent mkpasswd processes
HASH_NICE = 10
MKPASSWD_TIMEOUT = 20.0  # seconds; the gateway waits 30 for any answer


def check_username(name: str) -> None:
    if name in RESERVED or name.startswith(RESERVED_PREFIXES):
        raise Reserved(f"The username {name!r} is reserved for the system")
    if len(name) > MAX_USERNAME:
        raise InvalidArgument(f"The username must be at most {MAX_USERNAME} characters")
    if not USERNAME.fullmatch(name):
        raise InvalidArgument("The username must match ^[a-z_][a-z0-9_]+$")


def check_password(password: str) -> None:
    if not password:
        raise InvalidArgument("The password must not be empty")
    if any(c in password for c in "\r\n\0"):
        raise InvalidArgument("The password must not contain line breaks or NUL characters")
    if len(password.encode("utf-8")) > MAX_PASSWORD:
        raise InvalidArgument(f"The password must be at most {MAX_PASSWORD} bytes")


def _lower_priority() -> None:
    # On Linux the nice value is per thread, and a child inherits its thread's.
    os.setpriority(os.PRIO_PROCESS, 0, HASH_NICE)


# Hashing is background work: its own threads (at most HASHERS at a time), whose mkpasswd runs at a
# lower priority, so that on a busy CPU answering every other call comes first.
_hashers = ThreadPoolExecutor(HASHERS, thread_name_prefix="mkpasswd", initializer=_lower_priority)


async def hash_password(password: str) -> str:
    """A SHA-512 crypt(3) string from mkpasswd; the password goes through a pipe. Run from a worker
    thread: starting a process blocks the caller until the child has called exec, which on a busy
    machine can take long enough to stall every other call if done on the event loop."""
    return await asyncio.get_running_loop().run_in_executor(_hashers, _mkpasswd, password)


def _mkpasswd(password: str) -> str:
    mkpasswd = shutil.which("mkpasswd")
    if mkpasswd is None:
        raise Failed("mkpasswd is not installed")
    try:
        proc = subprocess.run([mkpasswd, "-m", "sha-512", "-s"], input=password.encode("utf-8"),
                              capture_output=True, timeout=MKPASSWD_TIMEOUT,
                              env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C"})
    except (OSError, subprocess.TimeoutExpired) as e:
        log.error("mkpasswd failed: %s", e.strerror if isinstance(e, OSError) else "timed out")
        raise Failed("Could not hash the password") from None
    hashed = proc.stdout.decode("ascii", "replace").strip()
    if proc.returncode != 0 or not _CRYPT.fullmatch(hashed):
        log.error("mkpasswd failed (exit %s): %s", proc.returncode, proc.stderr.decode(errors="replace").strip()[:200])
        raise Failed("Could not hash the password")
    return hashed


def _users(data) -> list:
    users = data.get("users")
    return users if isinstance(users, list) else []


def usernames(data) -> list[str]:
    """users[].username in file order (the master user is not one of them)."""
    return [u["username"] for u in _users(data) if isinstance(u, dict) and isinstance(u.get("username"), str)]


def _find(data, username: str):
    for user in _users(data):
        if isinstance(user, dict) and user.get("username") == username:
            return user
    return None


class Users:
    def __init__(self, userdata: JsonFile):
        self.userdata = userdata

    def list(self) -> list[str]:
        """Every user but the master user."""
        return usernames(self.userdata.read())

    def _refuse_taken(self, data, username: str) -> None:
        if username == data.get("username") or _find(data, username) is not None:
            raise AlreadyExists(f"User {username!r} already exists")

    async def create(self, username: str, password: str) -> None:
        check_username(username)
        check_password(password)
        self._refuse_taken(self.userdata.read(), username)  # fail fast, before paying for a hash
        hashed = await hash_password(password)

        def add(data):
            self._refuse_taken(data, username)  # again: another request may have won meanwhile
            if data.get("users") is None:  # missing or null: no users yet
                data["users"] = []
            users = data["users"]
            if not isinstance(users, list):
                raise Failed("In userdata.json, 'users' is not a list")
            users.append({"username": username, "hashedPassword": hashed})

        await self.userdata.update_async(add)
        log.info("user %s created", username)

    async def delete(self, username: str) -> None:
        def remove(data):
            if username == data.get("username"):
                raise InvalidArgument("The master user cannot be deleted")
            user = _find(data, username)
            if user is None:
                raise NotFound(f"User {username[:64]!r} does not exist")
            data["users"].remove(user)

        await self.userdata.update_async(remove)
        log.info("user %s deleted", username)
