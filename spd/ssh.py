"""SSH: whether sshd runs, whether it takes passwords, and who may log in with which key.

userdata.json holds `ssh.enable`, `ssh.passwordAuthentication` (settings of SSH1, declared there),
root's keys in `ssh.rootKeys`, the master user's in top-level `sshKeys` and other users' in `users[].sshKeys`.
The NixOS config of 1.2 servers fails to build with an empty `rootKeys`, so removing the last root
key leaves `[""]` (and that placeholder is never listed as a key).
"""

import logging

from . import sshkeys
from .errors import Failed, InvalidArgument, NotFound, AlreadyExists
from .jsonfile import JsonFile
from .userdata import section_to_change
from .users import usernames

log = logging.getLogger("spd.ssh")

def _ssh(data, create: bool = False) -> dict:
    """The ssh block (created when asked to); Failed when it holds something other than an object."""
    if create:
        return section_to_change(data, "ssh")
    ssh = data.get("ssh")
    if ssh is not None and not isinstance(ssh, dict):
        raise Failed("In userdata.json, 'ssh' is not an object")
    return {} if ssh is None else ssh


def _key_list(data, user: str, create: bool = False) -> list:
    """The list that holds `user`'s keys (created empty when asked to); NotFound for no such user."""
    if user == "root":
        owner, field = _ssh(data, create), "rootKeys"
    elif user == data.get("username"):
        owner, field = data, "sshKeys"
    else:
        users = data.get("users")
        owner = next((u for u in (users if isinstance(users, list) else ())
                      if isinstance(u, dict) and u.get("username") == user), None)
        if owner is None:
            raise NotFound(f"User {user[:64]!r} does not exist")
        field = "sshKeys"
    keys = owner.get(field)
    if keys is None:
        keys = []
        if create:
            owner[field] = keys
    if not isinstance(keys, list):
        raise Failed(f"In userdata.json, {field!r} is not a list")
    return keys


def _listed(keys: list) -> list[str]:
    return [k for k in keys if isinstance(k, str) and k != ""]


class SSH:
    def __init__(self, userdata: JsonFile):
        self.userdata = userdata

    def all_keys(self) -> dict[str, list[str]]:
        """user -> keys: root, the master user (when there is one) and every user."""
        data = self.userdata.read()
        master = data.get("username")
        names = ["root"] + ([master] if isinstance(master, str) and master else []) + usernames(data)
        result = {}
        for user in names:
            try:
                result[user] = _listed(_key_list(data, user))
            except Failed:  # one malformed list must not hide everyone else's keys
                result[user] = []
        return result

    async def add_root_key(self, text: str) -> None:
        await self._add("root", sshkeys.parse(text))

    async def add_key(self, user: str, text: str) -> None:
        if user == "root":
            raise InvalidArgument("The keys of root are added with AddRootKey, not AddKey")
        await self._add(user, sshkeys.parse(text))

    async def _add(self, user: str, key: sshkeys.PublicKey) -> None:
        def add(data):
            keys = _key_list(data, user, create=True)
            if any(sshkeys.identity(k) == key.identity for k in keys):
                raise AlreadyExists("This key is already there")
            if user == "root":
                keys[:] = [k for k in keys if k != ""]  # drop the empty-list placeholder
            keys.append(str(key))

        await self.userdata.update_async(add)
        log.info("ssh key %s added for %s", key.type, user)

    async def remove_key(self, user: str, text: str) -> None:
        try:
            wanted = sshkeys.parse(text).identity
        except InvalidArgument:
            wanted = text  # an entry stored before keys were checked: match it exactly

        def remove(data):
            keys = _key_list(data, user)
            for i, k in enumerate(keys):
                if k != "" and sshkeys.identity(k) == wanted:
                    del keys[i]
                    break
            else:
                raise NotFound(f"User {user[:64]!r} has no such key")
            if user == "root" and not keys:
                keys.append("")

        await self.userdata.update_async(remove)
        log.info("ssh key removed for %s", user)
