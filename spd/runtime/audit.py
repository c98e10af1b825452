"""The audit trail (live-and-local.md §6): one structured journal entry per change, written by spd for
D-Bus callers other than the gateway and by the gateway for each change made through the REST API.

Every change member is declared once below with what it does in words and its non-secret subject
(SPD_TARGET): a password, token, mnemonic or B2 key never reaches an entry, and an SSH key only as its
fingerprint. tests/test_audit.py checks that every change member of the daemon is here.

An entry goes to the journal through its native protocol (a datagram of FIELD=value lines to
/run/systemd/journal/socket, systemd.journal-fields(7)) when stderr is the journal stream, as under
systemd; anywhere else, or if the journal cannot take it, the text line of before is logged instead.
"""

import base64
import binascii
import hashlib
import json
import logging
import os
import pwd
import socket
import struct
import sys
from dataclasses import dataclass
from typing import Callable

from .journal import is_journal

GATEWAY_ID = "6f93ac8470f44a9fb3da2237050788cf"  # a change made through the REST API
DAEMON_ID = "6d8f12a989c84b1b96f39fc3c8fca69f"  # a change by any other D-Bus caller
# Any process may send the journal an entry with these fields: only the fields journald sets itself
# (systemd.journal-fields(7): _UID, _SYSTEMD_UNIT, from the sender's credentials and cgroup) say that
# spd or the gateway wrote it. journalctl's matches for the trail's true entries:
TRUSTED = [f"MESSAGE_ID={DAEMON_ID}", "_UID=0", "_SYSTEMD_UNIT=spd.service", "+",
           f"MESSAGE_ID={GATEWAY_ID}", "_SYSTEMD_UNIT=spd-gateway.service"]
SOCKET = os.environ.get("SPD_JOURNAL_SOCKET", "/run/systemd/journal/socket")
OK, REFUSED = 5, 4  # PRIORITY: notice, warning
MAX_TARGET = 200  # characters of a caller's text kept in an entry


def _text(value) -> str:
    return str(value)[:MAX_TARGET]


def arg(i: int) -> Callable[[list], str]:
    return lambda args: _text(args[i])


def onoff(i: int) -> Callable[[list], str]:
    return lambda args: "on" if args[i] else "off"


def fingerprint(i: int) -> Callable[[list], str]:
    """An SSH public key's SHA256 fingerprint, as ssh-keygen -l prints it; "" when it is not a key."""
    def target(args) -> str:
        try:
            blob = base64.b64decode(str(args[i]).split()[1], validate=True)
        except (IndexError, ValueError, binascii.Error):
            return ""
        return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
    return target


def nothing(args) -> str:
    return ""


@dataclass(frozen=True)
class Act:
    does: str  # the sentence's verb phrase; the target, quoted, follows it
    target: Callable[[list], str] = nothing  # the non-secret subject, from the call's arguments


# D-Bus member -> what it does. Only the arguments named here are ever shown.
ACTS = {
    "Users1.Create": Act("created user", arg(0)),
    "Users1.Delete": Act("deleted user", arg(0)),
    "SSH1.SetEnable": Act("turned SSH", onoff(0)),
    "SSH1.SetPasswordAuthentication": Act("turned SSH password authentication", onoff(0)),
    "SSH1.AddRootKey": Act("added root's SSH key", fingerprint(0)),
    "SSH1.AddKey": Act("added an SSH key", fingerprint(1)),
    "SSH1.RemoveKey": Act("removed an SSH key", fingerprint(1)),
    "Services1.Enable": Act("enabled", arg(0)),
    "Services1.Disable": Act("disabled", arg(0)),
    "System1.SetTimezone": Act("set the timezone to", arg(0)),
    "System1.SetAutoUpgrade": Act("turned automatic upgrades", onoff(0)),
    "System1.SetAllowReboot": Act("turned reboots after upgrades", onoff(0)),
    "System1.Apply": Act("started a rebuild"),
    "System1.Upgrade": Act("started an upgrade"),
    "System1.Rollback": Act("started a rollback"),
    "System1.Reboot": Act("rebooted the server"),
    "System1.Pull": Act("pulled the NixOS configuration"),
    "Backups1.Reload": Act("reloaded the backup list"),
    "Backups1.StartBackup": Act("started a backup"),
    "Backups1.StartRestore": Act("started restoring snapshot", arg(0)),
    "Backups1.SetBackblazeConfig": Act("set the Backblaze bucket to", arg(2)),
    "Tokens1.Refresh": Act("replaced a device token"),
    "Tokens1.Delete": Act("revoked device", arg(0)),
    "Tokens1.CreateNewDevice": Act("created a new-device mnemonic"),
    "Tokens1.ForgetNewDevice": Act("forgot the new-device mnemonic"),
    "Tokens1.AuthorizeNewDevice": Act("authorized new device", arg(1)),
    "Tokens1.CreateRecovery": Act("created a recovery mnemonic"),
    "Tokens1.UseRecovery": Act("used the recovery mnemonic for device", arg(1)),
}


def action(interface: str, member: str) -> str:
    """SPD_ACTION: "org.selfprivacy.Users1", "Create" -> "Users1.Create"."""
    return f"{interface.rpartition('.')[2]}.{member}"


def target(name: str, args) -> str:
    """SPD_TARGET of a call of `name` ("Users1.Create") with these arguments; "" when unknown."""
    act = ACTS.get(name)
    try:
        return act.target(list(args)) if act else ""
    except (IndexError, KeyError, TypeError):
        return ""


def _quoted(text: str) -> str:
    """In quotes, every character that is not printable escaped (C0 by json, DEL, C1, bidi controls
    here): one line, which cannot move a reader's cursor or forge another."""
    return "".join(c if c.isprintable() or c == " " else f"\\u{ord(c):04x}" for c in json.dumps(text, ensure_ascii=False))


def _sentence(who: str, name: str, subject: str) -> str:
    act = ACTS.get(name)
    does = act.does if act else f"called {name}"
    return f"{who} {does} {_quoted(subject)}" if subject else f"{who} {does}"


def uid_name(uid: int) -> str:
    """`uid 1000 (alice)`, or `uid 1000` for a uid with no name."""
    try:
        return f"uid {uid} ({pwd.getpwuid(uid).pw_name})"
    except (KeyError, OverflowError):
        return f"uid {uid}"


def daemon_entry(uid: int | None, name: str, args, result: str) -> dict:
    """The fields of spd's entry for a change `name` ("Users1.Create") by a D-Bus caller; `result` is
    "ok" or the error's name (its kind is kept: "org.selfprivacy.Error.AlreadyExists" -> "AlreadyExists")."""
    result = result.rpartition(".")[2]
    subject = target(name, args)
    who = uid_name(uid) if uid is not None else "an unknown caller"
    return {"MESSAGE": f"{_sentence(who, name, subject)}: {result}", "MESSAGE_ID": DAEMON_ID,
            "PRIORITY": str(OK if result == "ok" else REFUSED), "SPD_ACTION": name, "SPD_TARGET": subject,
            "SPD_RESULT": result, "SPD_UID": "" if uid is None else str(uid), "SYSLOG_IDENTIFIER": "spd"}


def gateway_entry(device: str | None, route: str, status: int, names: list, subject: str, result: str) -> dict:
    """The fields of the gateway's entry for a request `route` ("POST /users") that changes something,
    made with the D-Bus members `names` (["Users1.Create"]) on `subject`."""
    who = f"device {_quoted(device)}" if device else "a client without a token"
    does = _sentence(who, names[0], subject) if names else f"{who} requested {route}"
    return {"MESSAGE": f"{does} ({status})", "MESSAGE_ID": GATEWAY_ID,
            "PRIORITY": str(OK if status < 400 else REFUSED), "SPD_ACTION": ",".join(names),
            "SPD_TARGET": subject, "SPD_RESULT": result, "SPD_DEVICE": device or "", "SPD_ROUTE": route,
            "SPD_STATUS": str(status), "SYSLOG_IDENTIFIER": "spd-gateway"}


def encode(fields: dict) -> bytes:
    """The native protocol's datagram: FIELD=value lines; a value with a newline in the binary form
    (FIELD, newline, its length as 64-bit little-endian, the value, newline)."""
    out = bytearray()
    for key, value in fields.items():
        data = str(value).encode("utf-8", "replace")
        if b"\n" in data:
            out += key.encode() + b"\n" + struct.pack("<Q", len(data)) + data + b"\n"
        else:
            out += key.encode() + b"=" + data + b"\n"
    return bytes(out)


_socket: socket.socket | None = None


def send(fields: dict) -> bool:
    """The entry to the journal's socket; False when the journal is not there or refused it. Never
    waits (the caller is the event loop): a journal that takes nothing now gets the text line."""
    global _socket
    try:
        if _socket is None:
            _socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK)
        _socket.sendto(encode(fields), SOCKET)
        return True
    except OSError:
        return False


def write(fields: dict, log: logging.Logger, line: str | None, *args) -> None:
    """One entry: native when stderr is the journal and it takes the entry, else the text line of
    before (at INFO, whatever the result, as it always was; None: a line was logged already)."""
    if is_journal(sys.stderr) and send(fields):
        return
    if line is not None:
        log.info(line, *args)
