"""A setting is one row (README "Adding a setting"): SSH1's PasswordAuthentication, declared once in
the daemon's interface and once in the gateway's Settings, has every part a setting needs."""

from dbus_fast.constants import PropertyAccess
from dbus_fast.service import ServiceInterface

from spd.rest.routes import ROUTES, SSH_SETTINGS
from spd.runtime import audit
from spd.dbus.base import setting
from spd.dbus.rules import SSH_MANAGE, changes, declared, reads
from spd.dbus.ssh import SSHInterface
from spdctl import commands, main as spdctl


def _bare(cls):
    interface = cls.__new__(cls)
    ServiceInterface.__init__(interface, cls.NAME)  # introspection needs only the class
    return interface


def test_one_daemon_row_gives_property_method_rule_and_audit_act():
    (row,) = [s for s in SSHInterface.SETTINGS if s.name == "PasswordAuthentication"]
    assert isinstance(row, setting) and (row.path, row.signature, row.default) == \
        ("ssh.passwordAuthentication", "b", True)
    assert row.read({"ssh": {}}) is True and row.read({"ssh": {"passwordAuthentication": None}}) is True
    assert row.read({"ssh": {"passwordAuthentication": False}}) is False

    interface = _bare(SSHInterface)
    info = interface.introspect()
    (prop,) = [p for p in info.properties if p.name == "PasswordAuthentication"]
    assert (prop.signature, prop.access) == ("b", PropertyAccess.READ)
    (method,) = [m for m in info.methods if m.name == "SetPasswordAuthentication"]
    assert [a.signature for a in method.in_args] == ["b"] and method.out_args == []
    rules = declared(interface)
    assert rules["PasswordAuthentication"] == reads()
    assert rules["SetPasswordAuthentication"] == changes(SSH_MANAGE)
    assert "SSH1.SetPasswordAuthentication" in audit.ACTS


def test_one_gateway_row_gives_both_routes_and_the_spdctl_command():
    (row,) = [s for s in SSH_SETTINGS.settings if s.property == "PasswordAuthentication"]
    routes = {(r.method, r.path): r for r in ROUTES}
    get, put = routes["GET", "/services/ssh"], routes["PUT", "/services/ssh"]
    assert "PasswordAuthentication" in get.props.names and get.topic == "ssh"
    assert put.fields[row.name] is row.field
    assert [(c.member, c.signature) for c in put.steps if c.member.endswith("PasswordAuthentication")] == \
        [("SetPasswordAuthentication", "b")]

    a = spdctl.parser().parse_args(["ssh", "password-auth", "no"])
    assert (a.fn, a.settings, getattr(a, row.name)) == (commands.settings, SSH_SETTINGS, "no")
    assert commands._given(row, "no") is False and commands._given(row, "yes") is True
    assert spdctl.parser().parse_args(["ssh"]).settings is SSH_SETTINGS  # no value: shown
