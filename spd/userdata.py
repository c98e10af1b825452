"""The userdata store: etc/nixos/userdata/userdata.json, the source of truth nixos-rebuild reads.

Every change goes through JsonFile.update (locked, atomic, mode kept, unknown keys kept). A missing or
corrupt file is an error (spd.errors.Failed), never a silent reset."""

from .config import Config
from .jsonfile import JsonFile


def open_userdata(config: Config) -> JsonFile:
    userdata = JsonFile(config.userdata, mode=0o600)
    userdata.remove_stale_temps()  # what a writer killed mid-write left behind
    return userdata
