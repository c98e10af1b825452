"""Users of the server: `users[]` in userdata.json, next to the master user (top-level `username`).

A password is hashed by mkpasswd (SHA-512 crypt, which NixOS accepts) with the password on its
stdin, never in argv or the environment, where /proc would show it. Hashing runs as an asyncio
subprocess outside the userdata lock, so the daemon keeps serving meanwhile; the write itself is a
group commit (JsonFile.update_async), so concurrent creations share one fsync.
"""

import asyncio
import logging
import os
import re
import shutil

from .errors import AlreadyExists, Failed, InvalidArgument, NotFound, Reserved
from .jsonfile import JsonFile

log = logging.getLogger("spd.users")

USERNAME = re.compile(r"[a-z_][a-z0-9_]+")
MAX_USERNAME = 32
MAX_PASSWORD = 256  # bytes; beyond this mkpasswd and other crypt(3) tools disagree or fail
RESERVED_PREFIXES = ("systemd", "nixbld")
# System accounts of a SelfPrivacy NixOS server (the 1.2 server's list, and a few NixOS basics).
RESERVED = frozenset({
    "root", "bin", "daemon", "nobody", "nogroup", "messagebus", "polkituser", "sshd", "nscd",
    "postfix", "dovecot2", "dovenull", "opendkim", "rspamd", "virtualMail", "acme", "nginx",
    "postgres", "mysql", "redis", "memcached", "prosody", "knot-resolver", "selfprivacy-api",
    "restic", "pleroma", "ocserv", "nextcloud", "gitea", "bitwarden_rs", "vaultwarden",
})
_CRYPT = re.compile(r"\$6\$[./0-9A-Za-z]{1,16}\$[./0-9A-Za-z]{86}")
HASHERS = 2 * (os.cpu_count() or 1)  # concurrent mkpasswd processes


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


async def hash_password(password: str) -> str:
    """A SHA-512 crypt(3) string from mkpasswd; the password goes through a pipe."""
    mkpasswd = shutil.which("mkpasswd")
    if mkpasswd is None:
        raise Failed("mkpasswd is not installed")
    proc = await asyncio.create_subprocess_exec(
        mkpasswd, "-m", "sha-512", "-s",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C"},
    )
    out, err = await proc.communicate(password.encode("utf-8"))
    hashed = out.decode("ascii", "replace").strip()
    if proc.returncode != 0 or not _CRYPT.fullmatch(hashed):
        log.error("mkpasswd failed (exit %s): %s", proc.returncode, err.decode(errors="replace").strip()[:200])
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
        self._hashers = asyncio.Semaphore(HASHERS)

    def list(self) -> list[str]:
        """Every user but the master user."""
        return usernames(self.userdata.read())

    def _refuse_taken(self, data, username: str) -> None:
        if username == data.get("username") or _find(data, username) is not None:
            raise AlreadyExists(f"User {username} already exists")

    async def create(self, username: str, password: str) -> None:
        check_username(username)
        check_password(password)
        self._refuse_taken(self.userdata.read(), username)  # fail fast, before paying for a hash
        async with self._hashers:
            hashed = await hash_password(password)

        def add(data):
            self._refuse_taken(data, username)  # again: another request may have won meanwhile
            if data.get("users") is None:  # missing or null: no users yet
                data["users"] = []
            users = data["users"]
            if not isinstance(users, list):
                raise Failed("userdata.json: users is not a list")
            users.append({"username": username, "hashedPassword": hashed})

        await self.userdata.update_async(add)
        log.info("user %s created", username)

    async def delete(self, username: str) -> None:
        def remove(data):
            if username == data.get("username"):
                raise InvalidArgument("The master user cannot be deleted")
            user = _find(data, username)
            if user is None:
                raise NotFound(f"User {username} does not exist")
            data["users"].remove(user)

        await self.userdata.update_async(remove)
        log.info("user %s deleted", username)
