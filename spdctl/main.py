"""spdctl: the SelfPrivacy server from a shell on the server, over D-Bus only.

Exit status: 0 done, 1 the daemon refused or failed (its message on stderr), 2 wrong usage.
"""

import argparse
import asyncio
import os
import sys

from spd.rest.routes import AUTO_UPGRADE_SETTINGS, SSH_SETTINGS, TIMEZONE_SETTINGS

from . import agent
from . import commands as c
from .bus import Daemon, Refused

EPILOG = """Exit status: 0 on success, 1 when the daemon refuses or fails, 2 for wrong usage.
Callers other than root ask polkit; on a terminal polkit may ask for a password
(--no-ask-password turns that off)."""


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="spdctl", description="Control the SelfPrivacy server daemon (spd).",
                                epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    _options(p, os.environ.get("SPD_BUS", "system"), False)
    cmd = _adder(p.add_subparsers(dest="command", metavar="COMMAND", required=True))
    cmd("status", c.status, "overview: timezone, auto-upgrade, SSH, services, backup, users, devices")
    _users(cmd)
    _ssh(cmd)
    _services(cmd)
    cmd("dkim", c.dkim, "the DKIM DNS record")
    _system(cmd)
    _devices(cmd)
    _backups(cmd)
    m = cmd("monitor", c.monitor, "print each change as it happens, until interrupted")
    m.add_argument("topics", nargs="*", metavar="TOPIC", help=f"any of: {', '.join(c.TOPICS)}")
    lg = cmd("log", c.log, "who changed what: the audit trail from the journal, oldest first")
    lg.add_argument("--since", metavar="TIME",
                    help="from this time on, as journalctl takes it (today, '2026-12-01 10:00', --since=-1h)")
    return p


def _adder(sub):
    """cmd(name, fn, help, parent): a command under `parent` (default: the top level) that runs fn."""
    def cmd(name, fn, help, parent=sub, **kw):
        s = parent.add_parser(name, help=help, description=help, **kw)
        _options(s, argparse.SUPPRESS, argparse.SUPPRESS)  # also after the command, as systemd's tools
        s.set_defaults(fn=fn)
        return s

    return cmd


def _wait(s, what):
    s.add_argument("--wait", action="store_true", help=f"follow {what} to its end; exit 1 if it failed")
    return s


def _users(cmd) -> None:
    users = cmd("users", c.users, "list the users (not the master user)")
    us = users.add_subparsers(dest="command", metavar="ACTION")
    add = cmd("add", c.users_add, "create a user; the password is asked twice on the terminal", us)
    add.add_argument("name")
    add.add_argument("--password-stdin", action="store_true", help="read the password from one line of stdin")
    cmd("remove", c.users_remove, "delete a user", us).add_argument("name")


def _ssh(cmd) -> None:
    ss = _settings(cmd, SSH_SETTINGS)
    cmd("keys", c.ssh_keys, "list a user's SSH keys", ss).add_argument("user", nargs="?", default="root")
    k = cmd("add-key", c.ssh_add_key, "add an SSH key (from stdin when KEY is - or absent)", ss)
    k.add_argument("user")
    k.add_argument("key", nargs="?")
    k = cmd("remove-key", c.ssh_remove_key, "remove an SSH key", ss)
    k.add_argument("user")
    k.add_argument("key")


def _services(cmd) -> None:
    services = cmd("services", c.services, "the services: enabled, running")
    sv = services.add_subparsers(dest="command", metavar="ACTION")
    for action in ("enable", "disable"):
        cmd(action, c.services_enable, f"{action} a service", sv).add_argument("name", choices=c.SERVICE_CHOICES)


def _system(cmd) -> None:
    _settings(cmd, TIMEZONE_SETTINGS)
    _settings(cmd, AUTO_UPGRADE_SETTINGS)
    for name, what in (("apply", "rebuild NixOS"), ("upgrade", "upgrade NixOS"), ("rollback", "roll NixOS back")):
        _wait(cmd(name, c.job, what), "the systemd job")
    cmd("reboot", c.reboot, "reboot the server")
    cmd("pull", c.pull, "git pull the NixOS configuration")


def _devices(cmd) -> None:
    devices = cmd("devices", c.devices, "the devices with an API token")
    dv = devices.add_subparsers(dest="command", metavar="ACTION")
    cmd("revoke", c.devices_revoke, "delete a device's token", dv).add_argument("name")
    cmd("new-device", c.new_device, "print a one-time mnemonic that authorizes a new device")
    rk = cmd("recovery-key", c.recovery_key, "the recovery key's status")
    rs = rk.add_subparsers(dest="command", metavar="ACTION")
    create = cmd("create", c.recovery_key_create, "create a recovery key and print its mnemonic", rs)
    create.add_argument("--expires", metavar="ISO-8601", help="when it stops working (default: never)")
    create.add_argument("--uses", type=_positive, metavar="N", help="how many devices it may authorize")


def _backups(cmd) -> None:
    cmd("backups", c.backups, "list the backups")
    _wait(cmd("backup", c.backup, "start a backup"), "the backup")
    _wait(cmd("restore", c.backup, "restore a backup", ), "the restore").add_argument("id")


def _settings(cmd, group):
    """The command of a Settings declaration: without arguments it shows them, with some it sets
    those, each spelled as its Setting.cli says. Its subcommands' parser (None when it has none)."""
    p = cmd(group.command, c.settings, group.help)
    p.set_defaults(settings=group)
    sub = None
    for s in group.settings:
        choices, what = s.choices or None, s.field.description or None
        if s.cli == "":
            p.add_argument(s.name, nargs="?", choices=choices, help=what)
        elif s.cli.startswith("--"):
            p.add_argument(s.cli, dest=s.name, choices=choices, help=what)
        else:
            sub = sub or p.add_subparsers(dest="command", metavar="ACTION")
            for word in s.choices if s.cli == "verbs" else (s.cli,):
                v = cmd(word, c.settings, f"{word} {s.label}" if s.cli == "verbs"
                        else f"{s.label.lower()}: {' or '.join(s.choices)}", sub)
                v.set_defaults(settings=group)
                if s.cli == "verbs":
                    v.set_defaults(**{s.name: word})
                else:
                    v.add_argument(s.name, choices=choices, help=what)
    return sub


def _options(p, bus_default, flag_default) -> None:
    p.add_argument("--bus", default=bus_default, metavar="ADDRESS",
                   help="the bus: system (default), session or a D-Bus address [SPD_BUS]")
    p.add_argument("--json", action="store_true", default=flag_default,
                   help="print the JSON body of the matching REST route")
    p.add_argument("--no-ask-password", action="store_true", default=flag_default,
                   help="do not let polkit ask for a password")


def _positive(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number")
    return n


def main(argv=None) -> int:
    p = parser()
    a = p.parse_args(argv)  # exits 2 on wrong usage
    if a.fn is c.log:  # the journal's, not the daemon's
        try:
            c.log(a)
        except Refused as e:
            print(f"spdctl: {e}", file=sys.stderr)
            return 1
        return 0
    interactive = sys.stdin.isatty() and not a.no_ask_password

    async def run():
        d = await Daemon(a.bus, interactive).connect()
        try:
            await a.fn(d, a)
        finally:
            d.close()

    helper = agent.start() if interactive and a.bus == "system" else None  # the agent speaks to the system bus
    try:
        asyncio.run(run())
    except c.Usage as e:
        p.print_usage(sys.stderr)
        c.out.echo(f"spdctl: {e}", file=sys.stderr)
        return 2
    except Refused as e:
        if a.json and e.body is not None:
            c.out.as_json(e.body)
        c.out.echo(f"spdctl: {e}", lines=True, file=sys.stderr)  # a failed pull's git output has lines
        return 1
    except KeyboardInterrupt:
        return 0 if a.fn is c.monitor else 130
    finally:
        agent.stop(helper)
    return 0


if __name__ == "__main__":
    sys.exit(main())
