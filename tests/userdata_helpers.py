"""userdata.json under a test's state root, and the edits a test makes to it by hand (not through
spd): in place, as a shell redirection or an editor without backup files writes, or by rename, as an
editor that saves a new file, nixos-rebuild's tools and spd itself do. The daemon must see both."""

import json
import os
from pathlib import Path

RELATIVE = "etc/nixos/userdata/userdata.json"  # under the state root (--root; / on a real server)


def userdata_path(root) -> Path:
    return Path(root) / RELATIVE


def userdata(root) -> dict:
    return json.loads(userdata_path(root).read_text())


def write_in_place(root, data: dict) -> None:
    """data written into the same file (its inode stays)."""
    userdata_path(root).write_text(json.dumps(data, indent=4))


def edit_in_place(root, change) -> dict:
    """change(data) written back into the same file; returns the new data."""
    data = userdata(root)
    change(data)
    write_in_place(root, data)
    return data


def edit_by_rename(root, change) -> dict:
    """change(data) written to a new file renamed over the old one (atomic); returns the new data."""
    data = userdata(root)
    change(data)
    path = userdata_path(root)
    tmp = path.with_name("edit.tmp")
    tmp.write_text(json.dumps(data, indent=4))
    os.replace(tmp, path)
    return data
