"""spdctl and polkit on a booted systemd (tests/container.py): the real polkitd with a rules file that
grants a local user org.selfprivacy.read and nothing else; root needs no polkit at all."""

import pytest

from container import PREFIX, booted

from spd.contract import USERS

SPDCTL = f"{PREFIX}/bin/spdctl"
# What an administrator would put in /etc/polkit-1/rules.d: anna may read, nothing more.
RULES = """polkit.addRule(function(action, subject) {
    if (action.id == "org.selfprivacy.read" && subject.user == "anna") {
        return polkit.Result.YES;
    }
});
"""


@pytest.fixture(scope="module")
def machine():
    with booted("dbus-daemon", files={"/etc/polkit-1/rules.d/50-spd-test.rules": RULES}) as m:
        m.run(["useradd", "--no-create-home", "anna"])
        yield m


def spdctl(machine, *args, user=None, input=None):
    return machine.run([SPDCTL, "--no-ask-password", *args], user=user, input=input, check=False, timeout=120)


def test_a_user_polkit_lets_read_lists_the_users(machine):
    r = spdctl(machine, "users", user="anna")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["USER", "user1", "user2"]


def test_the_same_user_is_refused_a_change_with_polkits_answer(machine):
    r = spdctl(machine, "users", "add", "mallory", "--password-stdin", user="anna", input="pw 1234\n")
    assert r.returncode == 1, (r.stdout, r.stderr)
    # polkit would ask for an administrator's password (auth_admin_keep), which --no-ask-password forbids
    assert r.stderr.startswith("spdctl: Authentication is required") and "org.selfprivacy.users.manage" in r.stderr
    assert "mallory" not in spdctl(machine, "users").stdout
    r = spdctl(machine, "devices", user="anna")  # tokens are credentials: tokens.manage, not read
    assert r.returncode == 1 and "org.selfprivacy.tokens.manage" in r.stderr
    # a refusal is a warning in the journal (spd/runtime/journal.py), found the way an administrator looks
    warnings = machine.journal("-u", "spd.service", "-p", "warning", "-o", "cat")
    assert f"refused {USERS}.Create to uid" in warnings and "polkit" in warnings, warnings


def test_root_works_without_polkit(machine):
    machine.systemctl("mask", "--runtime", "--now", "polkit.service")  # gone, and not activatable
    try:
        r = spdctl(machine, "users", "add", "carol", "--password-stdin", input="pw 1234\n")
        assert r.returncode == 0, r.stderr
        assert "carol" in spdctl(machine, "users").stdout.split()
        r = spdctl(machine, "users", user="anna")  # polkit unreachable: refused (fail closed)
        assert r.returncode == 1 and r.stderr.startswith("spdctl: Access denied"), r.stderr
    finally:
        machine.systemctl("unmask", "--runtime", "polkit.service")
