"""Helpers for tests/test_deploy.py: a bus configured like a Debian system bus with the shipped policy,
a D-Bus client that runs as another user, and the shipped files rewritten for a test machine."""

import configparser
import json
import os
import shutil
import subprocess
from pathlib import Path

import introspection
from stack import BUS_NAME, PATH, PYTHON, REPO

from spd.contract import PROPERTIES

DATA = REPO / "data"
POLICY_DIR = DATA / "dbus-1" / "system.d"
ACTIVATION_FILE = DATA / "dbus-1" / "system-services" / f"{BUS_NAME}.service"
UNITS = DATA / "systemd"
GATEWAY_GROUP = "selfprivacy-api"

# The default policy of Debian's /usr/share/dbus-1/system.conf: nobody owns names or sends method
# calls unless a file in system.d allows it; replies and signals flow.
SYSTEM_POLICY = """
  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Introspectable"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Properties"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Peer"/>
    <deny send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"
          send_member="UpdateActivationEnvironment"/>
    <deny send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Debug.Stats"/>
  </policy>"""

# Run as a client: reads call descriptions (JSON) on stdin, prints one [outcome, detail] per call.
# Passed with -c so that a user who cannot read the checkout can still run it: the tests' way to call
# the daemon as another user (stack.call is the test's own, root's).
CLIENT = r"""
import asyncio, json, sys
from dbus_fast import Message, MessageType, Variant
from dbus_fast.aio import MessageBus
from dbus_fast.signature import SignatureTree

def dummy(t):
    c = t.token
    if c in "sg": return ""
    if c == "o": return "/"
    if c == "b": return False
    if c == "d": return 0.0
    if c == "v": return Variant("s", "")
    if c == "a": return {} if t.children[0].token == "{" else []
    if c == "(": return [dummy(x) for x in t.children]
    return 0

def plain(x):
    return x.value if isinstance(x, Variant) else repr(x)

async def main():
    bus = await MessageBus(bus_address=sys.argv[1]).connect()
    out = []
    for c in json.load(sys.stdin):
        if c.get("unique_name"):  # who this client is on the bus, for tests that look for it
            out.append(["ok", bus.unique_name])
            continue
        sig = c["signature"]
        args = c.get("args")
        if args is None:
            args = [dummy(t) for t in SignatureTree(sig).types]
        if c.get("variant"):
            args = args + [Variant(c["variant"], dummy(SignatureTree(c["variant"]).types[0]))]
        msg = Message(destination=c.get("destination", sys.argv[2]), path=c.get("path", sys.argv[3]),
                      interface=c["interface"], member=c["member"], signature=sig, body=args,
                      flags=c.get("flags", 0))
        reply = await asyncio.wait_for(bus.call(msg), 20)
        if reply.message_type == MessageType.ERROR:
            out.append([reply.error_name, reply.body[0] if reply.body else ""])
        else:
            out.append(["ok", reply.body])
    print(json.dumps(out, default=plain))

asyncio.run(main())
"""

AS_NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
AS_GATEWAY_GROUP = ["setpriv", "--reuid=nobody", "--regid=nogroup", f"--groups={GATEWAY_GROUP}"]
AS_ROOT: list = []


def ensure_gateway_group() -> None:
    subprocess.run(["groupadd", "-f", GATEWAY_GROUP], check=True)


def run_client(bus, user: list, calls: list) -> list:
    """Make `calls` from a client running as `user` (setpriv prefix); returns [outcome, detail] each."""
    r = subprocess.run([*user, PYTHON, "-c", CLIENT, bus.address, BUS_NAME, PATH],
                       input=json.dumps(calls), capture_output=True, text=True, timeout=60, cwd="/",
                       env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")})
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def every_call(bus) -> list:
    """One call per method of every org.selfprivacy interface, and Get/Set per property and GetAll
    per interface, enumerated from the daemon's live introspection."""
    calls = []
    for name, interface in introspection.live_interfaces(bus).items():
        methods, props = introspection.members(interface)
        for member, signature in methods:
            calls.append({"interface": name, "member": member, "signature": signature})
        for prop, ptype, _ in props:
            calls.append({"interface": PROPERTIES, "member": "Get", "signature": "ss", "args": [name, prop]})
            calls.append({"interface": PROPERTIES, "member": "Set", "signature": "ssv", "args": [name, prop],
                          "variant": ptype})
        calls.append({"interface": PROPERTIES, "member": "GetAll", "signature": "s", "args": [name]})
    return calls


def label(c: dict) -> str:
    if c["interface"] == PROPERTIES:
        return f"{c['member']} {'.'.join(c['args'])}"
    return f"{c['interface']}.{c['member']}"


def policy_copy(where: Path) -> Path:
    """A copy of the shipped system.d, as a distribution installs it."""
    shutil.copytree(POLICY_DIR, where)
    return where


def activation_file(servicedir: Path, root: Path, *extra_args) -> Path:
    """The shipped activation file with Exec= running this checkout's spd on the test root: the only
    line a packager rewrites. The child finds the bus in DBUS_SYSTEM_BUS_ADDRESS, as in production."""
    shipped = configparser.ConfigParser(interpolation=None)
    shipped.optionxform = str
    shipped.read(ACTIVATION_FILE)
    entry = dict(shipped["D-BUS Service"])
    entry["Exec"] = " ".join([
        "/usr/bin/env", f"PYTHONPATH={REPO}", "PYTHONUNBUFFERED=1", PYTHON, "-m", "spd",
        "--bus", "system", "--root", str(root), *map(str, extra_args)])
    servicedir.mkdir(parents=True, exist_ok=True)
    path = servicedir / ACTIVATION_FILE.name
    path.write_text("[D-BUS Service]\n" + "".join(f"{k}={v}\n" for k, v in entry.items()))
    return path


def installed_units(where: Path) -> Path:
    """The shipped units with /usr/bin/ replaced by this venv's console scripts (pip install puts
    spd and spd-gateway there): what a packager does for its prefix, e.g. NixOS's ${spd}/bin/."""
    where.mkdir(parents=True, exist_ok=True)
    bindir = Path(PYTHON).parent
    for unit in UNITS.iterdir():
        (where / unit.name).write_text(unit.read_text().replace("/usr/bin/", f"{bindir}/"))
    return where
