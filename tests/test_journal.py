"""Log lines in the journal carry their priority: under systemd stderr is a stream to the journal
($JOURNAL_STREAM names it), which reads a leading <N> as the line's syslog priority. Shown here with
the processes' stderr as a file that $JOURNAL_STREAM names, as systemd would set it; the booted
container's journal shows the same (tests/test_container*.py)."""

import logging
import os
import re
import types

from stack import Daemon, Gateway, get_property
from userdata_helpers import userdata_path

from spd.runtime import journal
from spd.contract import USERS


def journal_env(log):
    """$JOURNAL_STREAM naming the file a process's stderr will be (its device:inode)."""
    log.touch()
    st = os.stat(log)
    return {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}


def test_spd_lines_start_with_their_priority(bus, root, tmp_path):
    daemon = Daemon(bus, root, tmp_path, env=journal_env(tmp_path / "spd.log"))
    try:
        userdata_path(root).write_text("[]\n")  # an invalid file: a warning, the last values kept
        log = daemon.process.wait_for_log("keeps its last values")
        assert get_property(bus, USERS, "Users") == ["user1", "user2"]
    finally:
        assert daemon.stop() == 0
    log = daemon.process.log()
    assert re.search(r"^<6>spd\.tokens: INFO: imported 2 device tokens", log, re.M), log
    assert re.search(r"^<4>spd\.dbus: WARNING: .* keeps its last values", log, re.M), log
    assert all(re.match(r"<[2-7]>", line) for line in log.splitlines()), log


def test_gateway_lines_start_with_their_priority(tmp_path):
    nowhere = types.SimpleNamespace(address=f"unix:path={tmp_path}/no-bus")
    gateway = Gateway(nowhere, tmp_path, env=journal_env(tmp_path / "gateway.log"))
    try:
        log = gateway.process.wait_for_log("not reachable yet")
    finally:
        gateway.stop()
    assert re.search(r"^<3>spd-gateway: ERROR: cannot connect to the bus", log, re.M), log
    assert re.search(r"^<4>spd-gateway: WARNING: the bus is not reachable yet", log, re.M), log
    assert re.search(r"^<6>sanic\.\w+: INFO: Starting worker", log, re.M), log  # Sanic's own, too
    assert all(re.match(r"<[2-7]>", line) for line in log.splitlines()), log


def test_without_the_journal_lines_are_plain(tmp_path, monkeypatch):
    """A terminal or a file that is not the stream $JOURNAL_STREAM names: no prefix."""
    monkeypatch.setenv("JOURNAL_STREAM", "1:2")
    with open(tmp_path / "err", "w") as stream:
        assert not journal.is_journal(stream)
        assert isinstance(journal.handler(stream).formatter, logging.Formatter)
        assert not isinstance(journal.handler(stream).formatter, journal.JournalFormatter)


def test_every_line_of_a_traceback_keeps_the_priority(tmp_path, monkeypatch):
    path = tmp_path / "err"
    with open(path, "w") as stream:
        st = os.fstat(stream.fileno())
        monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino}")
        log = logging.getLogger("spd.test-journal")
        log.propagate = False
        handler = journal.handler(stream)
        log.addHandler(handler)
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("it failed")
        finally:
            log.removeHandler(handler)
    lines = path.read_text().splitlines()
    assert lines[0] == "<3>spd.test-journal: ERROR: it failed"
    assert len(lines) > 3 and all(line.startswith("<3>") for line in lines), lines
    assert lines[-1] == "<3>ValueError: boom"
    assert [journal.priority(level) for level in (50, 40, 30, 20, 10)] == [2, 3, 4, 6, 7]
