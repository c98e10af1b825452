"""One function per spdctl command: the REST route it mirrors (its body is what --json prints), and
how a person reads the answer. Setters print nothing on success, as timedatectl's do."""

import asyncio
import base64
import getpass
import json
import subprocess
import sys
import time

from spd.contract import BACKUPS, SERVICE_NAMES, SERVICES, STATUS_KEYS, SYSTEM
from spd.rest.routes import ROUTES

from . import output as out
from .bus import Daemon, Refused

RUNNING_JOB = ("", "running")  # no result yet: not started by us, or still running
BACKUP_RUNNING = ("INITIALIZING", "BACKING_UP", "RESTORING")  # a first backup creates the repository first
STATES = {0: "running", 3: "stopped", 4: "missing"}

# Topic (as GET /events names them) -> (interface, properties whose change it reports, its route):
# from the route table, as the gateway's /events takes them; `job` follows System1.Jobs.
TOPICS = {**{r.topic: (r.props.interface, frozenset(r.props.names), r.path) for r in ROUTES if r.topic},
          "job": (SYSTEM, frozenset({"Jobs"}), None)}


def show(a, body, human) -> None:
    """--json: the REST body; otherwise human(body)."""
    if a.json:
        out.as_json(body)
    elif human is not None:
        human(body)


# --- overview --------------------------------------------------------------------------------

# Topic (as in JSON and GET /events) -> REST route, and the line a person reads.
STATUS = {
    "timezone": ("/system/configuration/timezone", "Timezone", lambda b: b),
    "autoUpgrade": ("/system/configuration/autoUpgrade", "Auto-upgrade",
                    lambda b: out.join(out.yes_no(b["enable"]), " (reboot allowed: ",
                                       out.yes_no(b["allowReboot"]), ")")),
    "ssh": ("/services/ssh", "SSH",
            lambda b: out.join(_on_off(b["enable"]), ", password authentication ",
                               out.yes_no(b["passwordAuthentication"]))),
    "services": ("/services/status", "Services", lambda b: _running(b)),
    "backup": ("/services/restic/backup/status", "Backup",
               lambda b: b["status"] + (f": {b['error_message']}" if b["error_message"] else "")),
    "users": ("/users", "Users", lambda b: f"{len(b)}" + (f" ({', '.join(b)})" if b else "")),
    "tokens": ("/auth/tokens", "Devices", lambda b: str(len(b))),
    "version": ("/system/version", "System", lambda b: b["system_version"]),
}


async def status(d: Daemon, a):
    """Every part at once; a part that fails (systemd away, say) says so on its line, or, with
    --json, fails the command. The domain has no route of its own: Services1.Domain."""
    domain, *bodies = await asyncio.gather(d.get(SERVICES, "Domain"),
                                           *(d.run("GET", path) for path, _, _ in STATUS.values()),
                                           return_exceptions=True)
    for body in (domain, *bodies):
        if isinstance(body, BaseException) and (a.json or not isinstance(body, Refused)):
            raise body
    if a.json:
        return out.as_json({"domain": domain, **dict(zip(STATUS, bodies))})
    unavailable = lambda e: out.colour(f"unavailable: {e}", out.RED)  # noqa: E731
    out.pairs([("Domain", unavailable(domain) if isinstance(domain, Refused) else domain or "(none)")]
              + [(label, unavailable(body) if isinstance(body, Refused) else line(body))
                 for (_, label, line), body in zip(STATUS.values(), bodies)])


def _running(status: dict) -> str:
    running = [k for k, v in status.items() if v == 0]
    return f"{len(running)} of {len(status)} running" + (f" ({', '.join(running)})" if running else "")


def _on_off(value: bool) -> out.Styled:
    return out.good_bad("enabled", True) if value else out.styled("disabled")


# --- users -----------------------------------------------------------------------------------

async def users(d: Daemon, a):
    show(a, await d.run("GET", "/users"), lambda b: out.table(("USER",), [(u,) for u in b]))


async def users_add(d: Daemon, a):
    password = _password(a)
    show(a, await d.run("POST", "/users", body={"username": a.name, "password": password}), None)


async def users_remove(d: Daemon, a):
    show(a, await d.run("DELETE", "/users/<username>", {"username": a.name}), None)


def _password(a) -> str:
    """One line of stdin with --password-stdin, else asked twice on the terminal. Never argv."""
    if a.password_stdin:
        line = sys.stdin.readline()
        if not line:
            raise Refused("no password on stdin")
        return line.rstrip("\r\n")
    if not sys.stdin.isatty():
        raise Usage("no terminal to ask for the password on: use --password-stdin")
    first = getpass.getpass("Password: ")
    if getpass.getpass("Retype password: ") != first:
        raise Refused("the passwords do not match")
    return first


class Usage(Exception):
    """Wrong usage found after parsing: exit 2."""


# --- settings (spd/rest/routes.py Settings: the command is built from the same declaration) -----

async def settings(d: Daemon, a):
    """Show the settings of `a.settings`, or set those the command line gives (nothing printed)."""
    group = a.settings
    body = {s.name: _given(s, getattr(a, s.name, None)) for s in group.settings
            if getattr(a, s.name, None) is not None}
    if body:
        return show(a, await d.run("PUT", group.path, body=body), None)
    show(a, await d.run("GET", group.path), lambda b: out.echo(b) if group.single else out.pairs(
        [(s.label, _shown(s, b[s.name])) for s in group.settings]))


def _given(setting, word: str):
    return word == setting.choices[0] if setting.field.type is bool else word


def _shown(setting, value):
    if not isinstance(value, bool):
        return value
    return out.colour(setting.shown[0], out.GREEN) if value else out.styled(setting.shown[1])


# --- ssh -------------------------------------------------------------------------------------

async def ssh_keys(d: Daemon, a):
    show(a, await d.run("GET", "/services/ssh/keys/<username>", {"username": a.user}),
         lambda b: [out.echo(key) for key in b])


async def ssh_add_key(d: Daemon, a):
    key = a.key if a.key not in (None, "-") else sys.stdin.read().strip()
    if not key:
        raise Usage("no key given (as an argument or on stdin)")
    if a.user == "root":
        body = await d.run("PUT", "/services/ssh/key/send", body={"public_key": key})
    else:
        body = await d.run("POST", "/services/ssh/keys/<username>", {"username": a.user}, {"public_key": key})
    show(a, body, None)


async def ssh_remove_key(d: Daemon, a):
    show(a, await d.run("DELETE", "/services/ssh/keys/<username>", {"username": a.user},
                        {"public_key": a.key}), None)


# --- services --------------------------------------------------------------------------------

async def services(d: Daemon, a):
    body = await d.run("GET", "/services/status")
    if a.json:
        return out.as_json(body)
    enabled = await d.get(SERVICES, "Enabled")
    rows = []
    for name in STATUS_KEYS:
        state = STATES.get(body.get(name), str(body.get(name, "?")))
        on = enabled.get(name)
        rows.append((name, "-" if on is None else out.yes_no(on), out.good_bad(state, state == "running")))
    out.table(("SERVICE", "ENABLED", "STATE"), rows)


async def services_enable(d: Daemon, a):
    show(a, await d.run("POST", f"/services/{a.name}/{a.command}"), None)


async def dkim(d: Daemon, a):
    """The REST body is the record file in base64 (API 1.2); a person reads the record itself."""
    show(a, await d.run("GET", "/services/mailserver/dkim"),
         lambda b: out.echo(base64.b64decode(b).decode(errors="replace"), lines=True, end=""))


# --- system ----------------------------------------------------------------------------------

async def job(d: Daemon, a):
    """apply, upgrade, rollback: start the systemd job; with --wait follow System1.Jobs to its end
    (read from the daemon at each change it announces)."""
    changes = await d.watch() if a.wait else None
    job_path = (await d.call(SYSTEM, a.command.capitalize()))[0]
    body = 0  # what GET /system/configuration/<command> answers once started
    show(a, body, lambda b: out.echo(f"{a.command}: started ({job_path})"))
    if not a.wait:
        return
    progress = out.Progress(a.command, sys.stderr if a.json else None)
    progress.show("running")
    result = _job_result(await d.get(SYSTEM, "Jobs"), a.command, job_path)
    while result in RUNNING_JOB:
        await _changed(changes, SYSTEM, {"Jobs"})
        result = _job_result(await d.get(SYSTEM, "Jobs"), a.command, job_path)
    progress.end(result)
    if result != "done":
        raise Refused(f"{a.command} {result}")


async def _changed(changes, interface: str, names: set) -> None:
    """Until the daemon announces a change of one of `names` of `interface` (see Daemon.watch)."""
    while True:
        iface, changed = await changes.get()
        if iface == interface and names & changed:
            return


def _job_result(jobs: dict, name: str, job_path: str) -> str:
    path, result = jobs.get(name, ("", ""))
    return result if path == job_path else ""


async def reboot(d: Daemon, a):
    show(a, await d.run("GET", "/system/reboot"), None)


async def pull(d: Daemon, a):
    show(a, await d.run("GET", "/system/configuration/pull"), lambda b: out.echo(b["data"], lines=True, end=""))


# --- tokens ----------------------------------------------------------------------------------

async def devices(d: Daemon, a):
    show(a, await d.run("GET", "/auth/tokens"),
         lambda b: out.table(("DEVICE", "CREATED"), [(t["name"], t["date"]) for t in b]))


async def devices_revoke(d: Daemon, a):
    show(a, await d.run("DELETE", "/auth/tokens", body={"token_name": a.name}), None)


async def new_device(d: Daemon, a):
    show(a, await d.run("POST", "/auth/new_device"), lambda b: out.echo(b["token"]))


async def recovery_key(d: Daemon, a):
    show(a, await d.run("GET", "/auth/recovery_token"), lambda b: out.pairs([
        ("Exists", out.yes_no(b["exists"])), ("Valid", out.yes_no(b["valid"])),
        ("Created", b["date"] or "-"), ("Expires", b["expiration"] or "never"),
        ("Uses left", "unlimited" if b["uses_left"] is None else str(b["uses_left"]))]))


async def recovery_key_create(d: Daemon, a):
    body = {"expiration": a.expires or "", "uses": a.uses or 0}
    show(a, await d.run("POST", "/auth/recovery_token", body=body), lambda b: out.echo(b["token"]))


# --- backups ---------------------------------------------------------------------------------

async def backups(d: Daemon, a):
    show(a, await d.run("GET", "/services/restic/backup/list"),
         lambda b: out.table(("ID", "TIME"), [(s["short_id"], s["time"]) for s in b]))


async def backup(d: Daemon, a):
    changes = await d.watch() if a.wait else None
    if a.command == "restore":
        body = await d.run("PUT", "/services/restic/backup/restore", body={"backupId": a.id})
    else:
        body = await d.run("PUT", "/services/restic/backup/create")
    show(a, body, None if a.wait else lambda b: out.echo(b["message"]))
    if a.wait:
        await _follow_backup(d, a, changes)


async def _follow_backup(d: Daemon, a, changes) -> None:
    """Until State leaves BACKING_UP / RESTORING, read from the daemon after each change it
    announces (and once first: the job may have ended already)."""
    progress = out.Progress(a.command, sys.stderr if a.json else None)
    state = await d.get(BACKUPS, "State")
    while state in BACKUP_RUNNING:
        progress.show(state, await d.get(BACKUPS, "Progress"))
        await _changed(changes, BACKUPS, {"State", "Progress"})
        state = await d.get(BACKUPS, "State")
    error = await d.get(BACKUPS, "ErrorMessage")
    if state == "ERROR":
        progress.end("failed")
        raise Refused(error or f"{a.command} failed")
    progress.end("done")


# --- monitor ---------------------------------------------------------------------------------

async def monitor(d: Daemon, a):
    unknown = [t for t in a.topics if t not in TOPICS]
    if unknown:
        raise Usage(f"unknown topic {unknown[0]} (topics: {', '.join(TOPICS)})")
    topics = a.topics or list(TOPICS)
    changes = await d.watch()
    await d.call("org.freedesktop.DBus.Peer", "Ping")  # start the daemon if it is not running
    jobs = await d.get(SYSTEM, "Jobs") if "job" in topics else {}  # to tell which entry changed
    while True:
        interface, changed = await changes.get()
        for topic in topics:
            iface, props, path = TOPICS[topic]
            if iface != interface or not props & changed:
                continue
            if path is None:  # job: one event per job whose entry changed
                before, jobs = jobs, await d.get(SYSTEM, "Jobs")
                events = [{"name": n, "result": r or "running"} for n, (p, r) in jobs.items()
                          if before.get(n) != [p, r]]
            else:
                events = [await d.run("GET", path)]
            for data in events:
                if a.json:
                    out.as_json({"event": topic, "data": data})
                else:
                    out.echo(f"{time.strftime('%H:%M:%S')} {topic}: {_compact(data)}")
                sys.stdout.flush()


def _compact(data) -> str:
    return json.dumps(data, ensure_ascii=False, separators=(", ", ": "))


SERVICE_CHOICES = tuple(SERVICE_NAMES)


# --- log -------------------------------------------------------------------------------------

# Read from the journal, not the daemon (as systemctl status reads it): both writers' entries.
LOG_FIELDS = ("SPD_ACTION", "SPD_TARGET", "SPD_RESULT", "SPD_DEVICE", "SPD_UID", "SPD_ROUTE", "SPD_STATUS")


def log(a) -> None:
    """The audit trail (spd/runtime/audit.py), oldest first: a table, or with --json one object per entry."""
    from spd.runtime import audit as trail  # here: the other commands load only the bus contract of spd

    argv = ["journalctl", "--no-pager", "-o", "json", *trail.TRUSTED, *(["--since", a.since] if a.since else [])]
    try:
        r = subprocess.run(argv, capture_output=True, text=True, errors="replace")
    except OSError as e:
        raise Refused(f"cannot run journalctl: {e.strerror}") from None
    if r.returncode != 0:
        raise Refused(r.stderr.strip().removeprefix("journalctl: ") or "journalctl failed")
    entries = [_entry(json.loads(line)) for line in r.stdout.splitlines() if line.startswith("{")]
    if a.json:
        out.as_json(entries)
        return
    out.table(("TIME", "WHO", "ACTION", "TARGET", "RESULT"),
              [tuple(_printable(e[k]) for k in ("time", "who", "action", "target", "result")) for e in entries])


def _entry(fields: dict) -> dict:
    """One journal entry (journalctl -o json) as spdctl log shows it."""
    def value(key) -> str:
        v = fields.get(key, "")
        if isinstance(v, list):  # a field given twice: the first; a binary value: its bytes
            v = bytes(v).decode("utf-8", "replace") if all(isinstance(b, int) for b in v) else str(v[0])
        return str(v)

    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(int(value("__REALTIME_TIMESTAMP") or 0) / 1e6))
    entry = {"time": when, "message": value("MESSAGE"),
             **{k.removeprefix("SPD_").lower(): value(k) for k in LOG_FIELDS}}
    from spd.runtime.audit import uid_name

    uid = entry["uid"]
    entry["who"] = f'device "{entry["device"]}"' if entry["device"] else uid_name(int(uid)) if uid.isdigit() else "-"
    return entry


def _printable(text: str) -> str:
    """Control characters escaped: an entry's text cannot move the cursor or forge a line."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
