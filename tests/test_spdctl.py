"""spdctl against the real stack: a private bus, spd, the gateway, python-dbusmock's systemd and logind,
real restic and git. Every command is run as a process; --json must be the REST body."""

import fcntl
import json
import os
import pty
import select
import signal
import subprocess
import termios
import time

import pytest

from stack import PYTHON, REPO, Daemon, env_for_children
from systemd_helpers import LogindMock, demo_systemd
from test_backups import PASSWORD, daemon_env, private_tmp, repo  # noqa: F401  (fixtures)
from test_system import upstream, git  # noqa: F401  (fixture)
from userdata_helpers import userdata

SSH_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGq8e1s9PpN0NnVbNw0Kf3xQq7eS1n4Yk5y6Ahq3Zr0b spdctl@test"


@pytest.fixture
def daemon(bus, root, tmp_path, daemon_env):  # noqa: F811  (the conftest one, with a restic repository)
    d = Daemon(bus, root, tmp_path, env=daemon_env)
    yield d
    code = d.stop()
    assert "Traceback" not in d.process.log(), d.process.log()
    assert code == 0, d.process.log()


@pytest.fixture
def mocks(bus, tmp_path):
    systemd, logind = demo_systemd(bus, tmp_path), LogindMock(bus, tmp_path)
    yield systemd, logind
    systemd.stop()
    logind.stop()


@pytest.fixture
def ctl(bus, daemon, mocks):
    def run(*args, input=None, check=None):
        try:
            r = subprocess.run([PYTHON, "-m", "spdctl", *args], input=input, capture_output=True, text=True,
                               timeout=120, env=env_for_children(SPD_BUS=bus.address))
        except subprocess.TimeoutExpired as e:  # where spd waits (SIGUSR1), with what spdctl printed
            os.kill(daemon.process.pid, signal.SIGUSR1)
            time.sleep(1)
            raise AssertionError(f"spdctl {args} did not finish: {e.stdout!r}\nspd:\n"
                                 f"{daemon.process.log()[-6000:]}") from None
        if check is not None:
            assert r.returncode == check, (args, r.returncode, r.stdout, r.stderr)
        return r
    run.bus = bus
    return run


def as_json(ctl, *args):
    r = ctl("--json", *args, check=0)
    return json.loads(r.stdout)


# --- reads: the same body as the REST route -------------------------------------------------------

READS = [
    (("users",), "/users"),
    (("ssh",), "/services/ssh"),
    (("ssh", "keys"), "/services/ssh/keys/root"),
    (("ssh", "keys", "user1"), "/services/ssh/keys/user1"),
    (("services",), "/services/status"),
    (("dkim",), "/services/mailserver/dkim"),
    (("timezone",), "/system/configuration/timezone"),
    (("auto-upgrade",), "/system/configuration/autoUpgrade"),
    (("recovery-key",), "/auth/recovery_token"),
    (("backups",), "/services/restic/backup/list"),
]


def test_json_is_the_rest_body(ctl, api, root):
    for args, path in READS:
        assert as_json(ctl, *args) == api.get(path).json(), args
    # The token list marks the caller's own token; spdctl has none.
    listed = api.get("/auth/tokens").json()
    assert as_json(ctl, "devices") == [{**t, "is_caller": False} for t in listed]
    status = as_json(ctl, "status")
    assert status["domain"] == (root / "var/domain").read_text().strip()
    assert status["timezone"] == api.get("/system/configuration/timezone").json()
    assert status["services"] == api.get("/services/status").json()
    assert status["version"] == api.get("/system/version").json()


def test_human_output_is_aligned_and_tabled(ctl):
    out = ctl("status", check=0).stdout.splitlines()
    colons = {line.index(":") for line in out}
    assert len(colons) == 1, out  # aligned on the colon, like timedatectl
    keys = [line.split(":")[0].strip() for line in out]
    assert keys == ["Domain", "Timezone", "Auto-upgrade", "SSH", "Services", "Backup", "Users", "Devices", "System"]
    assert "\033[" not in ctl("status", check=0).stdout  # no colour off a terminal
    services = ctl("services", check=0).stdout.splitlines()
    assert services[0].split() == ["SERVICE", "ENABLED", "STATE"]
    assert any(line.split()[0] == "nextcloud" and line.split()[-1] == "running" for line in services)
    assert any(line.split()[0] == "gitea" and line.split()[-1] == "stopped" for line in services)
    assert ctl("timezone", check=0).stdout == "Europe/Moscow\n"
    assert "selector._domainkey" in ctl("dkim", check=0).stdout  # the record, not its base64
    assert ctl("users", check=0).stdout.split() == ["USER", "user1", "user2"]


# --- changes -----------------------------------------------------------------------------------------

def test_users_add_and_remove(ctl, api):
    r = ctl("users", "add", "carol", "--password-stdin", input="s3cret words\n", check=0)
    assert r.stdout == ""  # quiet on success, like systemd's setters
    assert "carol" in api.get("/users").json()
    assert "s3cret" not in json.dumps(ctl("--json", "users", check=0).stdout)
    r = ctl("users", "add", "carol", "--password-stdin", input="again\n", check=1)
    assert r.stderr.startswith("spdctl: ") and "carol" in r.stderr
    assert as_json(ctl, "users", "remove", "carol") == {"result": 0, "username": "carol"}
    assert "carol" not in api.get("/users").json()


def test_users_add_asks_twice_on_a_terminal(ctl, api, bus):
    out, code = on_terminal(bus, ["users", "add", "dave"], ["pw one\n", "pw one\n"])
    assert code == 0, out
    assert out.count("assword") == 2 and "pw one" not in out  # asked twice, not echoed
    assert "dave" in api.get("/users").json()
    out, code = on_terminal(bus, ["users", "add", "erin"], ["pw one\n", "pw two\n"])
    assert code == 1 and "spdctl: the passwords do not match" in out
    assert "erin" not in api.get("/users").json()


def test_users_add_without_a_terminal_or_stdin_is_usage(ctl):
    r = ctl("users", "add", "frank", input="", check=2)
    assert "--password-stdin" in r.stderr


def test_ssh(ctl, api):
    ctl("ssh", "disable", check=0)
    assert api.get("/services/ssh").json()["enable"] is False
    ctl("ssh", "enable", check=0)
    ctl("ssh", "password-auth", "no", check=0)
    assert api.get("/services/ssh").json() == {"enable": True, "passwordAuthentication": False}
    ctl("ssh", "add-key", "user1", SSH_KEY, check=0)
    assert SSH_KEY in api.get("/services/ssh/keys/user1").json()
    ctl("ssh", "add-key", "root", "-", input=SSH_KEY + "\n", check=0)  # from stdin
    assert SSH_KEY in ctl("ssh", "keys", check=0).stdout.splitlines()
    r = ctl("ssh", "add-key", "user1", SSH_KEY, check=1)
    assert r.stderr.startswith("spdctl: ")  # already there
    ctl("ssh", "remove-key", "user1", SSH_KEY, check=0)
    assert SSH_KEY not in api.get("/services/ssh/keys/user1").json()


def test_services_timezone_auto_upgrade(ctl, api, root):
    ctl("services", "enable", "gitea", check=0)
    ctl("services", "disable", "nextcloud", check=0)
    services = userdata(root)
    assert services["gitea"]["enable"] is True and services["nextcloud"]["enable"] is False
    ctl("timezone", "Europe/Berlin", check=0)
    assert api.get("/system/configuration/timezone").json() == "Europe/Berlin"
    r = ctl("timezone", "Mars/Olympus_Mons", check=1)
    assert r.stderr.startswith("spdctl: ") and "Mars/Olympus_Mons" in r.stderr and "Traceback" not in r.stderr
    ctl("auto-upgrade", "off", "--allow-reboot", "yes", check=0)
    assert api.get("/system/configuration/autoUpgrade").json() == {"enable": False, "allowReboot": True}
    ctl("auto-upgrade", "--allow-reboot", "no", check=0)
    assert api.get("/system/configuration/autoUpgrade").json() == {"enable": False, "allowReboot": False}


def test_apply_wait_follows_the_job(ctl, mocks):
    r = ctl("apply", "--wait", check=0)
    assert "apply: done" in r.stdout
    systemd, _ = mocks
    assert [a[0]["data"] for a in systemd.method_calls("StartUnit")] == ["sp-nixos-rebuild.service"]
    assert as_json(ctl, "upgrade") == 0  # the REST body of GET /system/configuration/upgrade
    r = ctl("rollback", "--wait", check=0)
    assert "rollback: done" in r.stdout


def test_reboot_asks_logind(ctl, mocks):
    _, logind = mocks
    ctl("reboot", check=0)
    assert logind.method_calls("Reboot")


def test_pull(ctl, upstream, root):
    up, work = upstream
    (work / "configuration.nix").write_text("{ services.gitea.enable = true; }\n")
    git(work, "commit", "-q", "-am", "enable gitea")
    git(work, "push", "-q", "origin", "main")
    r = ctl("pull", check=0)
    assert "configuration.nix" in r.stdout
    body = as_json(ctl, "pull")
    assert body["status"] == 0 and "Already up to date" in body["data"]
    git(root / "etc/nixos", "remote", "set-url", "origin", str(root / "nowhere"))
    r = ctl("--json", "pull", check=1)
    assert json.loads(r.stdout)["status"] != 0 and r.stderr.startswith("spdctl: Something went wrong")


def test_devices_and_mnemonics_redeem_over_http(ctl, anon, api):
    mnemonic = ctl("new-device", check=0).stdout.strip()
    assert len(mnemonic.split()) >= 12
    r = anon.post("/auth/new_device/authorize", json={"token": mnemonic, "device": "laptop"})
    assert r.status_code == 200, r.text
    assert "laptop" in [t["name"] for t in as_json(ctl, "devices")]
    assert ctl("devices", check=0).stdout.split()[:2] == ["DEVICE", "CREATED"]
    ctl("devices", "revoke", "laptop", check=0)
    assert "laptop" not in [t["name"] for t in as_json(ctl, "devices")]
    assert ctl("devices", "revoke", "laptop", check=1).stderr.startswith("spdctl: ")

    mnemonic = ctl("recovery-key", "create", "--uses", "1", check=0).stdout.strip()
    status = as_json(ctl, "recovery-key")
    assert status["exists"] and status["valid"] and status["uses_left"] == 1
    assert "Uses left: 1" in ctl("recovery-key", check=0).stdout
    r = anon.post("/auth/recovery_token/use", json={"token": mnemonic, "device": "phone"})
    assert r.status_code == 200, r.text
    assert as_json(ctl, "recovery-key")["valid"] is False


def test_backup_and_restore_wait_with_real_restic(ctl, api, root):
    deadline = time.monotonic() + 90  # the daemon looks at the (empty) repository first
    while api.get("/services/restic/backup/status").json()["status"] == "INITIALIZING":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    r = ctl("backup", "--wait", check=0)
    assert r.stdout.strip().splitlines()[-1] == "backup: done", r.stdout  # plain lines off a terminal
    while not (snapshots := as_json(ctl, "backups")):  # the list reloads after the backup
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert len(snapshots) == 1
    assert ctl("backups", check=0).stdout.split()[:3] == ["ID", "TIME", snapshots[0]["short_id"]]
    r = ctl("restore", snapshots[0]["short_id"], "--wait", check=0)
    assert "restore: done" in r.stdout
    out, code = on_terminal(ctl.bus, ["backup", "--wait"], [])  # a bar, redrawn in place
    assert code == 0, out
    assert "backup: [" in out and "\r" in out and out.rstrip().endswith("backup: done"), out
    r = ctl("restore", "nosuchid", check=1)
    assert r.stderr.startswith("spdctl: ") and "nosuchid" in r.stderr


def test_monitor_prints_each_change(ctl, bus, api):
    p = subprocess.Popen([PYTHON, "-m", "spdctl", "--json", "monitor", "timezone", "autoUpgrade"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         env=env_for_children(SPD_BUS=bus.address))
    try:
        time.sleep(1.5)  # subscribed (spdctl starts in well under that)
        api.put("/system/configuration/timezone", json={"timezone": "Asia/Tokyo"})
        api.put("/services/ssh", json={"enable": False})  # not a topic asked for
        api.put("/system/configuration/autoUpgrade", json={"enable": False})
        first, second = _lines(p, 2)
        assert json.loads(first) == {"event": "timezone", "data": "Asia/Tokyo"}
        assert json.loads(second) == {"event": "autoUpgrade", "data": {"enable": False, "allowReboot": False}}
    finally:
        p.send_signal(signal.SIGINT)
        assert p.wait(10) == 0, p.stderr.read().decode()
    r = ctl("monitor", "weather", check=2)
    assert "unknown topic weather" in r.stderr


def _lines(p, n, timeout=15) -> list:
    """The next n lines of p's stdout (a pipe opened in binary mode, read unbuffered)."""
    data, deadline = b"", time.monotonic() + timeout
    while data.count(b"\n") < n:
        ready, _, _ = select.select([p.stdout], [], [], max(0, deadline - time.monotonic()))
        assert ready, f"only {data}"
        data += os.read(p.stdout.fileno(), 4096)
    return data.decode().splitlines()


# --- usage and refusals -----------------------------------------------------------------------------

@pytest.mark.parametrize("args", [
    [], ["frobnicate"], ["ssh", "password-auth", "maybe"], ["services", "enable", "nosuch"],
    ["recovery-key", "create", "--uses", "0"], ["auto-upgrade", "sometimes"], ["restore"],
    ["users", "add"], ["users", "add", "x", "--password", "inargv"],
])
def test_wrong_usage_exits_2(args, tmp_path):
    r = subprocess.run([PYTHON, "-m", "spdctl", *args], capture_output=True, text=True, timeout=30,
                       env=env_for_children(SPD_BUS=f"unix:path={tmp_path}/no-bus"))
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "usage: spdctl" in r.stderr


def test_refusals_exit_1_with_the_daemons_message(ctl):
    r = ctl("users", "remove", "nosuchuser", check=1)
    assert r.stderr.startswith("spdctl: ") and "nosuchuser" in r.stderr and r.stdout == ""


def test_no_daemon_exits_1(tmp_path):
    r = subprocess.run([PYTHON, "-m", "spdctl", "--bus", f"unix:path={tmp_path}/no-bus", "users"],
                       capture_output=True, text=True, timeout=30, env=env_for_children())
    assert r.returncode == 1 and r.stderr.startswith("spdctl: cannot connect")


def test_help_describes_every_command():
    r = subprocess.run([PYTHON, "-m", "spdctl", "--help"], capture_output=True, text=True, env=env_for_children())
    for command in ("status", "users", "ssh", "services", "dkim", "timezone", "auto-upgrade", "apply", "upgrade",
                    "rollback", "reboot", "pull", "devices", "new-device", "recovery-key", "backups", "backup",
                    "restore", "monitor"):
        assert f"    {command} " in r.stdout, command


# --- a terminal ----------------------------------------------------------------------------------------

def on_terminal(bus, args: list, answers: list, user: list = ()) -> tuple[str, int]:
    """spdctl with a pseudo-terminal as its controlling terminal (run as `user`, a setpriv prefix);
    each answer is typed once the program has printed one more password prompt (getpass flushes what
    was typed before)."""
    master, slave = pty.openpty()

    def controlling():
        os.setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    p = subprocess.Popen([*user, PYTHON, "-m", "spdctl", *args], stdin=slave, stdout=slave, stderr=slave,
                         preexec_fn=controlling, env=env_for_children(SPD_BUS=bus.address), cwd="/")
    os.close(slave)
    seen, pending = b"", list(answers)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # the program closed the terminal
                break
            if not chunk:
                break
            seen += chunk
            if pending and seen.count(b"assword: ") > len(answers) - len(pending):
                os.write(master, pending.pop(0).encode())
        elif p.poll() is not None:
            break
    os.close(master)
    return seen.decode(errors="replace"), p.wait(10)


# --- bash completion -------------------------------------------------------------------------------------

COMPLETION = REPO / "data" / "bash-completion" / "spdctl"


def complete(bus, *words) -> list:
    """What the shipped completion offers after `spdctl WORDS` (the last word being completed), with
    bash-completion's _init_completion reduced to what the file uses."""
    script = f"""
_init_completion() {{ words=("${{COMP_WORDS[@]}}"); cword=$COMP_CWORD; cur=${{words[cword]}}; prev=${{words[cword-1]}}; }}
source {COMPLETION}
COMP_WORDS=(spdctl {' '.join(repr(w) for w in words)}); COMP_CWORD={len(words)}
_spdctl
printf '%s\\n' "${{COMPREPLY[@]}}"
"""
    r = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60,
                       env=env_for_children(SPD_BUS=bus.address, PATH=f"{os.path.dirname(PYTHON)}:{os.environ['PATH']}"))
    assert r.returncode == 0, r.stderr
    return r.stdout.split()


def test_bash_completion(ctl, bus):
    assert {"status", "users", "monitor", "recovery-key"} <= set(complete(bus, ""))
    assert complete(bus, "ti") == ["timezone"]
    assert complete(bus, "users", "remove", "") == ["user1", "user2"]  # asked from the daemon
    assert complete(bus, "services", "enable", "ne") == ["nextcloud"]
    assert complete(bus, "ssh", "password-auth", "") == ["yes", "no"]
    assert complete(bus, "backup", "--w") == ["--wait"]
    assert complete(bus, "devices", "revoke", "") == ["primary_token", "second_token"]
    assert "job" in complete(bus, "monitor", "users", "")
