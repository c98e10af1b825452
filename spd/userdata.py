"""The userdata store: etc/nixos/userdata/userdata.json, the source of truth nixos-rebuild reads.

Every change goes through JsonFile.update (locked, atomic, mode kept, unknown keys kept). A missing or
corrupt file is an error (spd.errors.Failed), never a silent reset."""

from .config import Config
from .errors import Failed
from .jsonfile import JsonFile


def open_userdata(config: Config) -> JsonFile:
    userdata = JsonFile(config.userdata, mode=0o600)
    userdata.remove_stale_temps()  # what a writer killed mid-write left behind
    return userdata


def section(data: dict, name: str) -> dict:
    """data[name] to read from: {} when it is missing or not an object."""
    value = data.get(name)
    return value if isinstance(value, dict) else {}


def section_to_change(data: dict, name: str) -> dict:
    """data[name] to change, created when missing; Failed when it holds something other than an
    object (never overwritten: it may be a setting we do not understand)."""
    value = data.setdefault(name, {})
    if not isinstance(value, dict):
        raise Failed(f"In userdata.json, {name!r} is not an object; refusing to change it")
    return value


def _split(path: str) -> tuple[str | None, str]:
    """"ssh.enable" -> ("ssh", "enable"); "timezone" -> (None, "timezone")."""
    name, _, key = path.rpartition(".")
    return name or None, key


def get_setting(data: dict, path: str):
    """The value at `path` ("ssh.enable", "timezone"); None when absent or when its section is not an
    object (a read never fails on a section it does not understand; a write refuses to touch it)."""
    name, key = _split(path)
    return (data if name is None else section(data, name)).get(key)


def _same(old, new) -> bool:
    return type(old) is type(new) and old == new  # a stored 1 is not the True a caller gives


async def set_setting(userdata: JsonFile, path: str, value) -> bool:
    """Write the setting at `path` ("ssh.enable", "timezone") as the caller gave it, also where it is
    absent and its absence means the same (what it means is the NixOS configuration's choice, not
    ours). Whether the file changed: decided again under the lock (a concurrent call may have done
    it), written off the event loop (a lock held by another process stalls only this call)."""
    if _same(get_setting(userdata.read(), path), value):
        return False
    name, key = _split(path)

    def change(data):
        settings = data if name is None else section_to_change(data, name)
        if _same(settings.get(key), value):
            return False
        settings[key] = value
        return True

    return await userdata.update_async(change)
