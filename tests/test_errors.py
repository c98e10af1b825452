"""The error table (spd/errors.py): every kind the daemon can send is one row, and the gateway answers
each with that row's status."""

import ast
import importlib
import pkgutil
import re
import subprocess

import pytest

import spd
from spd.rest.errors import AUTHENTICATE, from_dbus
from spd.contract import DBUS_ACCESS_DENIED, DBUS_UNAVAILABLE
from spd.errors import BY_NAME, KINDS, PREFIX, SpdError
from stack import PYTHON, REPO, env_for_children

SOURCES = sorted((REPO / "spd").rglob("*.py"))
REST_PATH = re.compile(r"(?<![\w.])/(services|system|users|auth|api)\b")


def _kinds() -> set[type[SpdError]]:
    """SpdError and every subclass of it that a module of spd declares."""
    for module in pkgutil.walk_packages(spd.__path__, "spd."):
        if module.name != "spd.__main__":  # that one runs the daemon
            importlib.import_module(module.name)
    found, todo = set(), [SpdError]
    while todo:
        cls = todo.pop()
        found.add(cls)
        todo += cls.__subclasses__()
    return found


def _sent_names() -> set[str]:
    """Every org.selfprivacy.Error name spelled in the daemon's source: literally or as error_name(X)."""
    names = set()
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Constant) and str(node.value).startswith(PREFIX):
                names.add(node.value)
            elif isinstance(node, ast.Call) and getattr(node.func, "id", None) == "error_name" \
                    and isinstance(node.args[0], ast.Constant):  # else a kind's class: _kinds() has them
                names.add(PREFIX + node.args[0].value)
    return names - {PREFIX}


def _raised_texts() -> list[tuple[str, str]]:
    """(where, the literal parts of the message) of every `raise Kind("...")` in the daemon."""
    kinds = {cls.__name__ for cls in _kinds()}
    texts = []
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call) \
                    and getattr(node.exc.func, "id", None) in kinds and node.exc.args:
                parts = [n.value for n in ast.walk(node.exc.args[0])
                         if isinstance(n, ast.Constant) and isinstance(n.value, str)]
                texts.append((f"{path.relative_to(REPO)}:{node.lineno}", "".join(parts)))
    return texts


def test_every_kind_has_exactly_one_row():
    rows = [kind.cls for kind in KINDS]
    assert len(rows) == len(set(rows)) and len(BY_NAME) == len(KINDS)
    for kind in KINDS:
        assert kind.name == PREFIX + kind.cls.__name__
    for cls in _kinds():  # SpdError itself is a Failed; a new class without a row fails here
        assert sum(kind.cls.kind == cls.kind for kind in KINDS) == 1, f"{cls.__name__} has no row in KINDS"
    # Dependency-free, for the daemon, the gateway and spdctl alike.
    code = "import sys, spd.errors; print(sorted(m for m in ('dbus_fast', 'sanic') if m in sys.modules))"
    r = subprocess.run([PYTHON, "-c", code], capture_output=True, text=True, env=env_for_children(), check=True)
    assert r.stdout == "[]\n"


def test_every_name_the_daemon_sends_has_a_row():
    sent = _sent_names() | {PREFIX + cls.kind for cls in _kinds()}
    assert "org.selfprivacy.Error.AccessDenied" in sent  # polkit's denial: one name, in the table
    assert sent <= set(BY_NAME), sorted(sent - set(BY_NAME))


@pytest.mark.parametrize("kind", KINDS, ids=lambda kind: kind.cls.kind)
def test_the_gateway_answers_each_kind_with_its_status(kind):
    error = from_dbus(kind.name, "What the daemon said")
    assert (error.status, error.message, error.kind) == (kind.status, "What the daemon said", kind.cls.kind)
    # Authenticate's NotFound is a wrong credential; every other kind keeps its row's status.
    expected = 401 if kind.cls.kind == "NotFound" else kind.status
    assert from_dbus(kind.name, "Invalid token", AUTHENTICATE).status == expected


def test_the_gateway_answers_the_bus_errors_and_hides_the_rest():
    assert from_dbus(DBUS_ACCESS_DENIED, "the bus policy").status == 403
    for name in DBUS_UNAVAILABLE:
        assert from_dbus(name, "").status == 503
    assert from_dbus("org.freedesktop.DBus.Error.InvalidArgs", "").status == 400
    for name in (PREFIX + "Nonsense", "com.dubstepdance.Error", "org.freedesktop.DBus.Error.Failed"):
        error = from_dbus(name, "Traceback (most recent call last): ...")
        assert (error.status, error.message) == (500, "Internal error")


def test_daemon_messages_name_no_rest_paths():
    """The daemon answers spdctl and busctl too: its text speaks of members, never of routes."""
    texts = _raised_texts()
    assert len(texts) > 50  # the scan sees the raises
    assert [(where, text) for where, text in texts if REST_PATH.search(text)] == []
