"""Production code (spd/, gateway/, spdctl/) uses only the public API of dbus-fast and Sanic: an
underscore attribute of theirs may change in any release. The one exception is spd/runtime/compat.py, where
each use has a test of its own (tests/test_bus.py). An ast walk: an attribute whose name starts with
one underscore and that the libraries' own sources define (a `def _x`, a class attribute, a `self._x =
...`) is theirs, unless it is ours: `self._x` where the same file assigns `self._x` or defines `_x` (but not in a
subclass of one of their classes), or a module's
`mod._x` where our production code defines `_x` at a module's top level; so is a
`from dbus_fast... import _x` or a private module.

And no production function is longer than MAX_LINES: a long one is split into named steps."""

import ast
import importlib.util
from pathlib import Path

from stack import REPO

PRODUCTION = ("spd", "gateway", "spdctl")
COMPAT = REPO / "spd" / "runtime" / "compat.py"
LIBRARIES = ("dbus_fast", "sanic")
MAX_LINES = 50  # from the `def` line to the last line of the body


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _defined(paths) -> set:
    """The underscore names these sources define: functions, classes, attributes and names stored."""
    names = set()
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                names.add(node.attr)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
            elif isinstance(node, ast.arg):
                names.add(node.arg)
    return {n for n in names if _private(n)}


def _production() -> list:
    return [p for package in PRODUCTION for p in sorted((REPO / package).rglob("*.py")) if p != COMPAT]


def _theirs() -> set:
    """Underscore names dbus-fast's and Sanic's sources define."""
    return _defined(p for name in LIBRARIES for p in Path(importlib.util.find_spec(name).origin).parent.rglob("*.py"))


def _top_level(paths) -> set:
    """Underscore names our modules define at their top level (reached as module._x)."""
    names = set()
    for path in paths:
        for node in ast.parse(path.read_text(), str(path)).body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, (ast.Assign, ast.AnnAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                names |= {t.id for t in targets if isinstance(t, ast.Name)}
    return {n for n in names if _private(n)}


def _uses(path: Path, theirs: set, ours: set) -> set:
    tree = ast.parse(path.read_text(), str(path))
    fields = {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)
              and isinstance(node.ctx, ast.Store) and _is_self(node.value)}
    fields |= {node.name for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))}
    imported = {a.asname or a.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                and (node.module or "").split(".")[0] in LIBRARIES for a in node.names}
    # In a subclass of theirs, self._x may be their field (a Sanic protocol's _time): never excused.
    inherited = {id(node) for cls in ast.walk(tree) if isinstance(cls, ast.ClassDef)
                 and any(isinstance(b, ast.Name) and b.id in imported for b in cls.bases)
                 for node in ast.walk(cls)}
    # ... and a `def _x` there overrides their hook (on 24.12.0, Sanic had no such hook to override).
    found = {node.name for node in ast.walk(tree) if id(node) in inherited
             and isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name in theirs}
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in theirs:
            own_field = node.attr in fields and _is_self(node.value) and id(node) not in inherited
            own_function = node.attr in ours and isinstance(node.value, ast.Name) and not _is_self(node.value)
            if not (own_field or own_function):
                found.add(node.attr)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in LIBRARIES:
            found |= {a.name for a in node.names if _private(a.name)}
            found |= {part for part in node.module.split(".") if _private(part)}
        elif isinstance(node, ast.Import):
            found |= {part for a in node.names if a.name.split(".")[0] in LIBRARIES
                      for part in a.name.split(".") if _private(part)}
    return found


def _is_self(node) -> bool:
    return isinstance(node, ast.Name) and node.id == "self"


def test_production_code_uses_no_private_attribute_of_dbus_fast_or_sanic():
    theirs, ours = _theirs(), _top_level(_production())
    assert {"_process_message", "_writer", "_finalize"} <= theirs  # the walk sees their sources
    found = {(str(path.relative_to(REPO)), name)
             for path in _production() for name in _uses(path, theirs, ours)}
    assert not found, f"private dbus-fast/Sanic attributes outside spd/runtime/compat.py: {sorted(found)}"


def test_the_walk_finds_what_a526509_did():
    """The check itself: the uses main had (held-call replay, the socket swap, Sanic's JSON encoder,
    header hook and protocol timer) are found."""
    sample = REPO / "tests" / "data" / "private_uses.py"
    assert _uses(sample, _theirs(), _top_level(_production())) == {"_process_message", "_writer", "_sock", "_finalize", "_private",
                                                                "_dumps", "_sanitize_header_value", "_time"}


def test_no_production_function_is_longer_than_50_lines():
    lengths = {}
    for package in PRODUCTION:
        for path in sorted((REPO / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    where = (str(path.relative_to(REPO)), node.name)
                    lengths[where] = max(lengths.get(where, 0), node.end_lineno - node.lineno + 1)
    assert {where[0].split("/")[0] for where in lengths} == set(PRODUCTION)  # the walk saw each package
    long = {where: n for where, n in lengths.items() if n > MAX_LINES}
    assert not long, f"functions over {MAX_LINES} lines (split them into named steps): {long}"
