"""SIGKILL during writes never leaves userdata.json torn: 200 kills (bench/crash.py runs more)."""

import asyncio
import json

from crash_helpers import crash_loop
from stack import Daemon, call, get_property


def test_sigkill_during_writes_leaves_before_or_after(bus, root, tmp_path):
    stats = asyncio.run(crash_loop(bus, root, tmp_path, kills=200))
    print(f"seed {stats.seed}: {stats.kills} kills, {stats.writes_acked} writes acknowledged, "
          f"{stats.found_before} before / {stats.found_after} after the write in flight")
    assert stats.kills == 200
    assert stats.writes_acked > 200  # the kills did land in a stream of writes
    # A last daemon starts on what the kills left, clears their temp files and serves.
    daemon = Daemon(bus, root, tmp_path)
    try:
        folder = root / "etc/nixos/userdata"
        assert [p.name for p in folder.glob(".userdata.json.*.tmp")] == []
        keys = json.loads((folder / "userdata.json").read_text())["users"][0]["sshKeys"]
        assert get_property(bus, "org.selfprivacy.SSH1", "Keys")["user1"] == keys
    finally:
        assert daemon.stop() == 0
