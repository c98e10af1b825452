"""Services1 and the /services routes, against python-dbusmock's systemd on the test bus."""

import base64
import json
import os
import time

import pytest

from stack import BUS_NAME, PATH, Daemon, busctl, call, eventually, get_property
from systemd_helpers import MOCK, STATUS_UNITS, SystemdMock, systemd  # noqa: F401
from userdata_helpers import edit_in_place, userdata, userdata_path

from spd.contract import PROPERTIES, SERVICES

NAMES = {"bitwarden": "Bitwarden", "gitea": "Gitea", "nextcloud": "Nextcloud", "ocserv": "Ocserv",
         "pleroma": "Pleroma"}


# --- running state ------------------------------------------------------------------------------

def test_status_maps_running_stopped_and_missing_units(systemd, api, bus):
    systemd.add_unit("dovecot2.service", "active")
    systemd.add_unit("postfix.service", "inactive")
    systemd.add_unit("nginx.service", "failed")
    systemd.add_unit("bitwarden_rs.service", "active")  # the old name; vaultwarden.service is missing
    systemd.add_unit("gitea.service", "reloading")
    systemd.add_unit("phpfpm-nextcloud.service", "active")
    systemd.add_unit("pleroma.service", "activating")
    # ocserv.service is missing
    expected = {"imap": 0, "smtp": 3, "http": 3, "bitwarden": 0, "gitea": 0, "nextcloud": 0,
                "ocserv": 4, "pleroma": 3}
    r = api.get("/services/status")
    assert r.status_code == 200, r.text
    assert r.json() == expected
    assert get_property(bus, SERVICES, "Status") == expected

    # A change systemd signals reaches the daemon's Status and the gateway's copy of it.
    systemd.set_state("postfix.service", "active")
    systemd.set_state("dovecot2.service", "inactive")
    systemd.set_state("bitwarden_rs.service", "inactive")
    systemd.add_unit("ocserv.service", "active")
    changed = {**expected, "imap": 3, "smtp": 0, "bitwarden": 3, "ocserv": 0}
    assert eventually(lambda: api.get("/services/status").json(), changed) == changed


def test_status_property_signals_changes_systemd_reports(systemd, signals, bus):
    systemd.add_unit("dovecot2.service", "active")
    systemd.add_unit("postfix.service", "inactive")
    first = get_property(bus, SERVICES, "Status")
    assert (first["imap"], first["smtp"], first["ocserv"]) == (0, 3, 4)
    assert busctl(bus, "get-property", BUS_NAME, PATH, SERVICES, "Status")["data"] == first  # as an operator sees it
    systemd.set_state("postfix.service", "active")
    got = signals.wait_for(lambda r: any(i == SERVICES and c.get("Status", {}).get("smtp") == 0 for i, c in r))
    changed = [c["Status"] for i, c in got if i == SERVICES and "Status" in c]
    assert changed[-1] == {**first, "smtp": 0}
    # A unit change that leaves the answer as it was (reloading counts as running) is not signalled.
    systemd.set_state("postfix.service", "reloading")
    time.sleep(1)  # well past the daemon's settle time
    assert [c["Status"] for i, c in signals.received if i == SERVICES and "Status" in c] == changed
    assert all(a != b for a, b in zip(changed, changed[1:]))  # each signal is a change


def test_bitwarden_is_running_when_either_unit_is(systemd, api):
    systemd.add_unit("vaultwarden.service", "active")
    systemd.add_unit("bitwarden_rs.service", "inactive")
    assert api.get("/services/status").json()["bitwarden"] == 0
    systemd.set_state("vaultwarden.service", "inactive")
    assert eventually(lambda: api.get("/services/status").json()["bitwarden"], 3) == 3
    systemd.set_state("bitwarden_rs.service", "active")
    assert eventually(lambda: api.get("/services/status").json()["bitwarden"], 0) == 0


def test_status_uses_list_units_by_names_in_one_call(systemd, bus, root, tmp_path):
    """Real systemd answers all units in one ListUnitsByNames call; the template lacks it, so this
    test gives the mock one that reports its units the way systemd does (not-found for others)."""
    code = "\n".join([
        "ret = []",
        "for n in args[0]:",
        "    if n in self.units:",
        "        state = objects[self.units[n]].props['org.freedesktop.systemd1.Unit']['ActiveState']",
        "        ret.append((n, '', 'loaded', state, '', '', self.units[n], 0, '', '/'))",
        "    else:",
        "        ret.append((n, '', 'not-found', 'inactive', 'dead', '', '/', 0, '', '/'))",
    ])
    systemd.call(MOCK, "AddMethod", "sssss", "org.freedesktop.systemd1.Manager", "ListUnitsByNames",
                 "as", "a(ssssssouso)", code)
    systemd.add_unit("nginx.service", "active")
    systemd.add_unit("gitea.service", "inactive")
    systemd.clear_calls()
    daemon = Daemon(bus, root, tmp_path)  # it learns at its first read whether systemd has the method
    try:
        assert get_property(bus, SERVICES, "Status") == {
            "imap": 4, "smtp": 4, "http": 0, "bitwarden": 4, "gitea": 3, "nextcloud": 4, "ocserv": 4,
            "pleroma": 4}
    finally:
        assert daemon.stop() == 0
    calls = systemd.method_calls("ListUnitsByNames")
    assert calls and all(c == [{"type": "as", "data": list(STATUS_UNITS)}] for c in calls)
    assert systemd.method_calls("GetUnit") == []



def test_status_is_503_without_systemd_and_recovers_when_it_appears(api, bus, tmp_path):
    r = api.get("/services/status")
    assert r.status_code == 503
    assert "systemd" in r.json()["error"]
    mock = SystemdMock(bus, tmp_path)
    try:
        mock.add_unit("nginx.service", "active")
        r = api.get("/services/status")
        assert r.status_code == 200
        assert r.json()["http"] == 0 and r.json()["imap"] == 4
    finally:
        mock.stop()
    # the daemon invalidates Status when systemd leaves: the gateway's copy asks again
    assert eventually(lambda: api.get("/services/status").status_code, 503) == 503


# --- enable / disable --------------------------------------------------------------------------

def test_enable_and_disable_write_userdata(api, root):
    for service, name in NAMES.items():
        before = userdata(root)
        r = api.post(f"/services/{service}/disable")
        assert r.status_code == 200, r.text
        assert r.json() == {"status": 0, "message": f"{name} disabled"}
        after = userdata(root)
        assert after[service]["enable"] is False
        # Everything else, including keys spd does not manage, is untouched.
        assert {k: v for k, v in after.items() if k != service} == \
            {k: v for k, v in before.items() if k != service}
        assert {k: v for k, v in after[service].items() if k != "enable"} == \
            {k: v for k, v in before[service].items() if k != "enable"}
        r = api.post(f"/services/{service}/enable")
        assert r.json() == {"status": 0, "message": f"{name} enabled"}
        assert userdata(root)[service]["enable"] is True


def test_disable_is_written_even_when_absent_means_disabled(api, bus, root, signals):
    """What an absent key means is the NixOS configuration's: the value asked for is written. The
    effective value stays, so no signal goes out."""
    edit_in_place(root, lambda data: data.pop("gitea"))
    assert api.post("/services/gitea/disable").status_code == 200
    assert userdata(root)["gitea"] == {"enable": False}
    assert api.post("/services/gitea/enable").status_code == 200  # a real change: one signal
    got = signals.wait_for(lambda r: any(i == SERVICES and "Enabled" in c for i, c in r))
    assert [c["Enabled"]["gitea"] for i, c in got if i == SERVICES and "Enabled" in c] == [True]


def test_enabled_property_and_its_signals(api, bus, root, signals):
    enabled = {"bitwarden": True, "gitea": False, "nextcloud": True, "ocserv": True, "pleroma": True}
    out = call(bus, PROPERTIES, "Get", "ss", SERVICES, "Enabled")
    assert out[0]["data"] == enabled

    assert api.post("/services/gitea/enable").status_code == 200
    assert signals.wait(1) == [(SERVICES, {"Enabled": {**enabled, "gitea": True}})]
    # Enabling it again changes nothing and says nothing; the next real change is the next signal.
    mtime = userdata_path(root).stat().st_mtime_ns
    assert api.post("/services/gitea/enable").status_code == 200
    assert userdata_path(root).stat().st_mtime_ns == mtime
    call(bus, SERVICES, "Disable", "s", "pleroma")
    assert signals.wait(2)[1] == (SERVICES, {"Enabled": {**enabled, "gitea": True, "pleroma": False}})
    assert len(signals.received) == 2


def test_a_missing_section_is_created_and_unknown_services_are_refused(api, bus, root):
    edit_in_place(root, lambda data: data.pop("ocserv"))
    assert call(bus, PROPERTIES, "Get", "ss", SERVICES, "Enabled")[0]["data"]["ocserv"] \
        is False
    assert api.post("/services/ocserv/enable").status_code == 200
    assert userdata(root)["ocserv"] == {"enable": True}
    assert api.post("/services/sshd/enable").status_code == 404  # no such route
    with pytest.raises(Exception, match="There is no service '../etc'"):
        call(bus, SERVICES, "Enable", "s", "../etc")


# --- DKIM ---------------------------------------------------------------------------------------

def test_dkim_is_the_whole_record_file_in_base64(api, root):
    r = api.get("/services/mailserver/dkim")
    assert r.status_code == 200, r.text
    assert base64.b64decode(r.json()) == (root / "var/dkim/example.org.selector.txt").read_bytes()


def test_dkim_missing_is_404(api, root):
    (root / "var/dkim/example.org.selector.txt").unlink()
    r = api.get("/services/mailserver/dkim")
    assert r.status_code == 404
    assert r.json()["error"]


def test_dkim_refuses_a_domain_that_is_not_one(api, root):
    (root / "var/dkim/secret.selector.txt").write_text("not for the app")
    (root / "var/dkim/sub").mkdir()
    (root / "var/dkim/sub/x.selector.txt").write_text("not for the app")
    for domain in ("../../etc/passwd", "../dkim/secret", "sub/x", "..", "-bad.org", "a..b", ""):
        (root / "var/domain").write_text(domain + "\n")
        r = api.get("/services/mailserver/dkim")
        assert r.status_code == 500, domain
        assert "var/domain" in r.json()["error"]
        assert "not for the app" not in r.text
        assert base64.b64encode(b"not for the app").decode() not in r.text


def test_a_record_that_becomes_unreadable_is_signalled(api, bus, root, signals):
    """The gateway keeps the record it answered; var/domain going bad must reach that copy, as a
    change, so that it answers the error too (and the good value again once the file is fixed)."""
    assert api.get("/services/mailserver/dkim").status_code == 200
    (root / "var/domain").write_text("../../etc/passwd\n")
    assert eventually(lambda: api.get("/services/mailserver/dkim").status_code, 500) == 500
    assert any(i == SERVICES and "DkimRecord" in names for i, _, names in signals.raw)
    with pytest.raises(Exception, match="var/domain does not hold a valid domain name"):
        get_property(bus, SERVICES, "Domain")
    (root / "var/domain").write_text("example.org\n")
    assert eventually(lambda: api.get("/services/mailserver/dkim").status_code, 200) == 200
    assert get_property(bus, SERVICES, "Domain") == "example.org"


def test_a_record_someone_else_planted_is_not_followed_nor_waited_for(api, bus, root, tmp_path):
    """var/dkim belongs to the mail server's DKIM user: a link it makes to a file only root may read,
    a FIFO or a huge file must not become the root daemon's answer, nor stop it."""
    secret = tmp_path / "shadow"
    secret.write_text("root:$6$not-for-the-app\n")
    record = root / "var/dkim/example.org.selector.txt"
    record.unlink()
    record.symlink_to(secret)
    for planted, why in ((lambda: None, "it is a symbolic link, which spd does not follow"),
                         (lambda: (record.unlink(), os.mkfifo(record)), "it is not a regular file"),
                         (lambda: (record.unlink(), record.write_bytes(b"v=DKIM1; " * 8000)),
                          "it is larger than 64 KiB")):
        planted()
        started = time.monotonic()
        r = eventually(lambda: api.get("/services/mailserver/dkim", timeout=5).status_code, 500)
        assert r == 500 and time.monotonic() - started < 5
        body = api.get("/services/mailserver/dkim").json()
        assert body["error"] == f"Cannot read the DKIM record: {why}", body
        assert "not-for-the-app" not in json.dumps(body) and str(root) not in body["error"]
        assert get_property(bus, SERVICES, "Domain") == "example.org"  # the daemon goes on
    (root / "var/domain").unlink()
    (root / "var/domain").symlink_to(secret)
    with pytest.raises(Exception, match="Cannot read var/domain: it is a symbolic link"):
        get_property(bus, SERVICES, "Domain")


def test_a_domain_is_plain_ascii(api, root):
    """re.I alone lets [a-z] match the Kelvin sign (U+212A), a long s and a dotless i."""
    for domain in ("\u212aelvin.com", "\u017fub.example", "ex\u0131.com"):
        (root / "var/domain").write_text(domain + "\n")
        r = api.get("/services/mailserver/dkim")
        assert r.status_code == 500 and "var/domain does not hold a valid domain name" in r.json()["error"], domain


def test_dkim_errors_do_not_show_where_the_root_is(api, root):
    (root / "var/domain").unlink()
    (root / "var/domain").mkdir()  # unreadable as a file
    r = api.get("/services/mailserver/dkim")
    assert r.status_code == 500 and "var/domain" in r.json()["error"]
    assert str(root) not in r.text
