"""Who may call what, declared where each member is defined (as systemd's vtables do).

Every method and property of the daemon names its rule where it is declared (spd/dbus/base.py):

    @method(changes(USERS_MANAGE))
    async def Create(self, username: "s", password: "s"): ...

    Devices = prop("a(ss)", reads(TOKENS_MANAGE), doc="...")

A rule says which kinds of caller may (root, the gateway's group), the polkit action that covers the
member (live-and-local.md 5: for callers that are neither, once polkit decides), and whether the
call changes something (then it is logged with the caller's uid and the result). A member without a
declaration is refused to everyone. `python -m spd.dbus.rules` prints the whole table.
"""

from dataclasses import dataclass

# The kinds of caller a rule can name.
ROOT = "root"  # uid 0
GATEWAY = "gateway"  # a process in the gateway's group (selfprivacy-api unless configured otherwise)
ADMIN = frozenset({ROOT, GATEWAY})

# polkit action ids (data/polkit-1/actions/org.selfprivacy.policy)
READ = "org.selfprivacy.read"
USERS_MANAGE = "org.selfprivacy.users.manage"
SSH_MANAGE = "org.selfprivacy.ssh.manage"
SERVICES_MANAGE = "org.selfprivacy.services.manage"
SYSTEM_MANAGE = "org.selfprivacy.system.manage"
SYSTEM_REBOOT = "org.selfprivacy.system.reboot"
BACKUPS_MANAGE = "org.selfprivacy.backups.manage"
TOKENS_MANAGE = "org.selfprivacy.tokens.manage"


@dataclass(frozen=True)
class Rule:
    callers: frozenset  # of ROOT, GATEWAY
    action: str  # the polkit action that covers the member
    change: bool  # a call that changes state: logged with the caller's uid and the result


def reads(action: str = READ, callers=ADMIN) -> Rule:
    return Rule(frozenset(callers), action, change=False)


def changes(action: str, callers=ADMIN) -> Rule:
    return Rule(frozenset(callers), action, change=True)


# "module.Class" -> D-Bus member name -> its rule; filled by the decorators as classes are defined.
_DECLARED: dict[str, dict[str, Rule]] = {}


def declare(fn, member: str, rule: Rule) -> None:
    """Record the rule of `member`, defined by fn in a class body (called by the decorators)."""
    if not isinstance(rule, Rule):
        raise TypeError(f"{fn.__qualname__}: a member's access is a Rule (reads(...) or changes(...))")
    owner = f"{fn.__module__}.{fn.__qualname__.rpartition('.')[0]}"
    _DECLARED.setdefault(owner, {})[member] = rule


def declared(interface) -> dict[str, Rule]:
    """The rules an exported interface object declares, its base classes' included."""
    rules = {}
    for cls in reversed(type(interface).__mro__):
        rules.update(_DECLARED.get(f"{cls.__module__}.{cls.__qualname__}", {}))
    return rules


def table(interfaces) -> list[tuple]:
    """(interface, member, kind, callers, action, change) for every exported member; callers "-"
    for a member with no rule (refused to everyone)."""
    rows = []
    for interface in interfaces:
        rules = declared(interface)
        info = interface.introspect()
        members = [(m.name, "method") for m in info.methods] + [(p.name, "property") for p in info.properties]
        for name, kind in members:
            rule = rules.get(name)
            callers = ",".join(sorted(rule.callers)) if rule else "-"
            rows.append((interface.name, name, kind, callers, rule.action if rule else "-",
                         "logged" if rule and rule.change else ""))
    return rows


def main() -> None:
    """Print the table of every interface class the daemon exports (no bus, no state needed)."""
    from dbus_fast.service import ServiceInterface

    from .. import main as daemon  # noqa: F401  (imports every interface class)
    from .base import LiveInterface
    from .rules import table  # the registry the decorators filled (run with -m, this is __main__)

    bare = []
    for cls in LiveInterface.__subclasses__():
        interface = cls.__new__(cls)
        ServiceInterface.__init__(interface, cls.NAME)  # introspection needs only the class
        bare.append(interface)
    rows = [("INTERFACE", "MEMBER", "KIND", "CALLERS", "POLKIT ACTION", "")]
    rows += sorted(table(bare))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())


if __name__ == "__main__":
    main()
