"""The daemon's lifecycle and observer idioms hold (an ast walk of spd/): every interface is started,
stopped and asked whether it is busy through the methods LiveInterface declares, never found with
hasattr/getattr; an interface's __init__ starts nothing; and whatever tells others of an event is a
`Listeners` named on_<event> (spd/runtime/listeners.py), never a list, a None or an add_*_listener method;
and every property's getter is pure: it hands out what its interface published, and nothing else."""

import ast

from stack import REPO

SPD = REPO / "spd"
LIFECYCLE = {"start", "stop", "busy"}


def _trees():
    return {path.relative_to(REPO).as_posix(): ast.parse(path.read_text(), str(path))
            for path in sorted(SPD.rglob("*.py"))}


def _lifecycle_lookups(tree) -> list:
    """hasattr/getattr calls that look up start, stop or busy by name."""
    return [node.lineno for node in ast.walk(tree) if isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name) and node.func.id in ("hasattr", "getattr")
            and len(node.args) > 1 and isinstance(node.args[1], ast.Constant) and node.args[1].value in LIFECYCLE]


def _work_in_init(tree) -> list:
    """In a LiveInterface subclass's __init__, whatever is not super().__init__() or `self.x = value`
    with no call in the value (a subscription, a task, a read of state)."""
    found = []
    for cls in ast.walk(tree):
        if not (isinstance(cls, ast.ClassDef) and any(isinstance(b, ast.Name) and b.id == "LiveInterface"
                                                     for b in cls.bases)):
            continue
        for init in (f for f in cls.body if isinstance(f, ast.FunctionDef) and f.name == "__init__"):
            for stmt in init.body:
                if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant):
                    continue  # the docstring
                if isinstance(stmt, ast.Expr) and ast.unparse(stmt.value) == "super().__init__()":
                    continue
                stored = isinstance(stmt, ast.Assign) and all(
                    isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name) and t.value.id == "self"
                    for t in stmt.targets)
                if not stored or any(isinstance(n, ast.Call) for n in ast.walk(stmt.value)):
                    found.append(f"{cls.name}:{stmt.lineno}")
    return found


def _other_observers(tree) -> list:
    """An on_<event> stored as anything but Listeners(...) or another object's on_<event>; a
    method named on_<event> or add_*listener* (a callback handed to one call is no observer); an
    attribute named *listeners."""
    methods = {id(f) for cls in ast.walk(tree) if isinstance(cls, ast.ClassDef) for f in cls.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and id(node) in methods and (
                node.name.startswith("on_") or (node.name.startswith("add_") and "listener" in node.name)):
            found.append(f"def {node.name}:{node.lineno}")
        elif isinstance(node, ast.Attribute) and (node.attr.endswith("listeners") or (
                node.attr.startswith("add_") and "listener" in node.attr)):
            found.append(f".{node.attr}:{node.lineno}")
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names = [t.attr if isinstance(t, ast.Attribute) else getattr(t, "id", "") for t in targets]
            if not any(n.startswith("on_") for n in names):
                continue
            value = node.value
            listeners = isinstance(value, ast.Call) and isinstance(value.func, ast.Name) and value.func.id == "Listeners"
            shared = isinstance(value, ast.Attribute) and value.attr.startswith("on_")
            if not (listeners or shared):
                found.append(f"{'/'.join(names)}:{node.lineno}")
    return found


def _getters_with_a_body(tree) -> list:
    """Properties defined as functions (decorated with prop or dbus_property): a body can read files,
    ask systemd or publish; a `prop(...)` row (spd/dbus/base.py) has none, its getter hands out what
    its interface published."""
    return [f"{node.name}:{node.lineno}" for node in ast.walk(tree)
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and any(
                getattr(d.func if isinstance(d, ast.Call) else d, "id", None) in ("prop", "dbus_property")
                for d in node.decorator_list)]


def test_the_lifecycle_is_declared_not_looked_up():
    found = {path: lines for path, tree in _trees().items() if (lines := _lifecycle_lookups(tree))}
    assert not found, f"start/stop/busy looked up by name (LiveInterface declares them): {found}"


def test_interfaces_start_nothing_in_init():
    found = {path: work for path, tree in _trees().items() if (work := _work_in_init(tree))}
    assert not found, f"work in an interface's __init__ (it belongs in start()): {found}"


def test_every_observer_is_a_listeners():
    found = {path: other for path, tree in _trees().items()
             if path != "spd/runtime/listeners.py" and (other := _other_observers(tree))}
    assert not found, f"observers that are not spd/runtime/listeners.py's Listeners: {found}"


def test_getters_are_pure():
    found = {path: getters for path, tree in _trees().items() if (getters := _getters_with_a_body(tree))}
    assert not found, f"properties with a getter of their own (declare a prop(...) row): {found}"


def test_the_checks_find_what_4816675_had():
    """The checks themselves, on the shapes main had before (its serve(), idle.busy(), Backups1's
    __init__, System's and systemd's listener lists, the backups' on_change, Services' method)."""
    old = ast.parse('''
def busy(interfaces):
    return any(getattr(i, "busy", None) is not None and i.busy() for i in interfaces)
def serve(interfaces):
    for interface in interfaces:
        if hasattr(interface, "start"):
            interface.start()
class BackupsInterface(LiveInterface):
    def __init__(self, backups):
        super().__init__()
        self.backups = backups
        self._snapshots = (None, [])
        backups.on_change = self.refresh
        backups.start()
class ServicesInterface(LiveInterface):
    def __init__(self, services):
        super().__init__()
        self._refresh_status = None
        self._status = services.status()
class System:
    def __init__(self, systemd):
        self.listeners = []
        self.on_change = None
        systemd.add_job_listener(self._job_removed)
class Services:
    def on_units_changed(self, listener):
        self.systemd.add_change_listener(listener)
class ServicesInterface(LiveInterface):
    @prop()
    async def Status(self):
        return await self.read_status()
    @prop()
    def Domain(self):
        """The domain."""
        return self.read_file("Domain")
    @prop(reads(TOKENS_MANAGE))
    def Devices(self):
        return self.value("Recovery")
    Users = prop("as", doc="The users.")
''')
    assert sorted(_lifecycle_lookups(old)) == [3, 6]
    assert set(_work_in_init(old)) == {"BackupsInterface:13", "BackupsInterface:14", "ServicesInterface:19"}
    assert set(_other_observers(old)) == {"on_change:13", ".listeners:22", "on_change:23", ".add_job_listener:24",
                                          "def on_units_changed:26", ".add_change_listener:27"}
    assert _getters_with_a_body(old) == ["Status:30", "Domain:33", "Devices:37"]
