"""The import of the 1.2 server's tokens.json killed at every system call that touches the root.

strace kills spd (SIGKILL) on entering the Nth call of one system call (`--inject`, counted per
thread); a first traced run finds which calls touch files under the root. After each kill a plain
start must finish the job: the tokens work, no plaintext token is anywhere under the root, no temp
file or half-shredded file is left, and userdata.json holds everything it held but api.token."""

import re

import pytest

from stack import (PYTHON, SECOND_TOKEN, TOKEN, Daemon, Process, call, env_for_children, files_containing,
                   make_root)
from userdata_helpers import edit_in_place, userdata

from spd.contract import TOKENS

LEGACY = "etc/nixos/userdata/tokens.json"
API_TOKEN = "legacy-api-token-from-userdata"  # in the demo userdata.json
SYSCALLS = ("write", "fsync", "rename", "unlink", "mkdir")
STRACE = ["strace", "-f", "-qq"]  # not --seccomp-bpf: strace 6.1 then injects at the first `when` only


def run_spd(bus, root, workdir, strace_args) -> int:
    """spd under strace until it leaves: -9 when strace killed it, 0 when it started and, idle for a
    moment, left by itself."""
    argv = [*STRACE, *strace_args, PYTHON, "-m", "spd", "--bus", bus.address, "--root", str(root),
            "--idle-timeout", "0.2"]
    process = Process("spd", argv, workdir / "strace-spd.log", env=env_for_children())
    code = process.proc.wait(60)
    process.stop()
    assert code in (0, -9), f"spd exited with {code}:\n{process.log()}"
    return code


def trace(bus, root, workdir) -> list:
    """(thread id, system call, its line) of every call in SYSCALLS of an import, paths decoded (-y)."""
    out = workdir / "trace"
    assert run_spd(bus, root, workdir, ["-y", "-e", "trace=" + ",".join(SYSCALLS), "-o", str(out)]) == 0
    calls = []
    for line in out.read_text().splitlines():
        m = re.match(r"(\d+)\s+(\w+)\(", line)  # not the "<... resumed>" half of an interrupted line
        if m:
            calls.append((m[1], m[2], line))
    return calls


def kill_points(calls, root) -> list:
    """(system call, N) for each call of the import that touches a file under the root: the Nth of
    its kind in the import's thread (strace counts per thread; the import runs on one of its own)."""
    touches = re.compile(r'[<"]' + re.escape(str(root)) + "/")
    importer = next(tid for tid, name, line in calls if name == "mkdir" and touches.search(line))
    seen, points = {}, []
    for tid, name, line in calls:
        if tid == importer:
            seen[name] = seen.get(name, 0) + 1
            if touches.search(line):
                points.append((name, seen[name]))
    return points


def finished(bus, root, expected_userdata) -> list:
    """What is wrong after a plain start on what a kill left ([] when nothing)."""
    wrong = []
    daemon = Daemon(bus, root, root.parent)
    try:
        for token, name in ((TOKEN, "primary_token"), (SECOND_TOKEN, "second_token")):
            if call(bus, TOKENS, "Authenticate", "s", token) != [name]:
                wrong.append(f"{name} does not work")
    finally:
        code = daemon.stop()
    log = daemon.process.log()
    if code != 0 or "Traceback" in log or "ERROR" in log:
        wrong.append(f"spd exited with {code}:\n{log}")
    for secret in (TOKEN, SECOND_TOKEN, API_TOKEN):
        if files_containing(root, secret):
            wrong.append(f"{secret[:8]}... is in {files_containing(root, secret)}")
    left = [str(p.relative_to(root)) for p in root.rglob("*") if p.name.endswith((".tmp", ".shredding"))]
    if (root / LEGACY).exists() or left:
        wrong.append(f"left behind: {left}, tokens.json exists: {(root / LEGACY).exists()}")
    if userdata(root) != expected_userdata:
        wrong.append("userdata.json changed beyond api.token")
    return wrong


def test_import_killed_at_every_write_sync_rename_unlink_and_mkdir_is_finished_next_start(bus, tmp_path):
    traced = make_root(tmp_path / "traced" / "root")
    expected = userdata(traced)
    del expected["api"]["token"]
    points = kill_points(trace(bus, traced, traced.parent), traced)
    assert {name for name, _ in points} == set(SYSCALLS), points  # the trace saw the whole import
    failures, kills = [], 0
    for name, n in points:
        root = make_root(tmp_path / f"{name}{n}" / "root")
        code = run_spd(bus, root, root.parent, ["-e", f"trace={name}", "-o", "/dev/null",
                                                 f"--inject={name}:signal=SIGKILL:when={n}"])
        kills += code == -9
        failures += [f"killed at {name} #{n}: {w}" for w in finished(bus, root, expected)]
    print(f"{len(points)} kill points, {kills} kills: {points}")
    assert failures == []
    assert kills == len(points)


@pytest.mark.parametrize("leftover", [b"", b"\0" * 374, "renamed"], ids=["empty", "zeroed", "renamed"])
def test_an_interrupted_shred_is_finished_not_refused(bus, root, tmp_path, leftover):
    """What a kill mid-shred leaves (an older spd zeroed tokens.json in place; ours renames it away
    first) is finished at the next start, never refused; api.token goes too."""
    expected = userdata(root)
    api = dict(expected["api"])
    del expected["api"]["token"]
    legacy = (root / LEGACY).read_bytes()
    (tmp_path / "first").mkdir()
    first = Daemon(bus, root, tmp_path / "first")  # the import, done: tokens in var/lib/spd
    assert call(bus, TOKENS, "Authenticate", "s", TOKEN) == ["primary_token"]
    assert first.stop() == 0
    edit_in_place(root, lambda data: data.update(api=api))  # as the shred's kill left it
    if leftover == "renamed":
        (root / LEGACY).with_name(".tokens.json.shredding").write_bytes(legacy)
    else:
        (root / LEGACY).write_bytes(leftover)
    assert finished(bus, root, expected) == []


def test_the_new_state_folder_is_synced_into_its_parent(bus, root, tmp_path):
    """var/lib/spd is created at the first start: var/lib is fsynced before the first token store
    is renamed into it, or a power loss could forget the folder with the tokens."""
    calls = [line for _, _, line in trace(bus, root, tmp_path)]
    made = next(i for i, line in enumerate(calls) if re.search(r'mkdir\(".*/var/lib/spd"', line))
    stored = next(i for i, line in enumerate(calls) if re.search(r'rename\(.*/var/lib/spd/tokens.json"', line))
    between = calls[made:stored]
    assert any(re.search(r"fsync\(\d+<\S*/var/lib>\)", line) for line in between), between
