"""The layers show in what each part loads (design.md, "Layout"): the contract loads nothing; domain
code (spd/*.py) loads no D-Bus and no HTTP; the REST routes (spd/rest/) no Sanic; spdctl no gateway and
no Sanic; the gateway nothing of spd's but the contract, the error table, the routes and the run-time
package; the daemon no Sanic and no REST. Each is asked of a fresh interpreter, as a user would run it."""

import json
import subprocess

from stack import PYTHON, REPO, env_for_children

LIBRARIES = ("dbus_fast", "sanic")
WIRING = {"__main__", "main"}  # spd/main.py wires domain and D-Bus together: the one place that may
SHARED = {"spd", "spd.contract", "spd.errors"}  # dependency-free: anyone may load them


def loaded(*modules: str) -> set:
    """The modules of ours and of LIBRARIES a fresh interpreter holds after importing `modules`."""
    code = (f"import importlib, json, sys; [importlib.import_module(m) for m in {list(modules)!r}]; "
            "print(json.dumps(sorted(sys.modules)))")
    r = subprocess.run([PYTHON, "-c", code], capture_output=True, text=True, env=env_for_children(),
                       cwd=REPO, check=True)
    return {m for m in json.loads(r.stdout) if m.split(".")[0] in ("spd", "gateway", "spdctl") + LIBRARIES}


def package(name: str, modules: set) -> set:
    return {m for m in modules if m == name or m.startswith(name + ".")}


def libraries(modules: set) -> set:
    return {m.split(".")[0] for m in modules if m.split(".")[0] in LIBRARIES}


def domain_modules() -> list:
    return sorted(f"spd.{p.stem}" for p in (REPO / "spd").glob("*.py") if p.stem not in WIRING | {"__init__"})


def test_the_contract_loads_nothing():
    assert loaded("spd.contract") == {"spd", "spd.contract"}
    assert loaded("spd.errors") == {"spd", "spd.errors"}


def test_domain_code_loads_neither_dbus_nor_http():
    modules = domain_modules()
    assert "spd.users" in modules and "spd.backups" in modules  # (the glob finds them)
    got = loaded(*modules)
    assert not libraries(got)
    assert not package("spd.dbus", got) and not package("spd.rest", got) and not package("gateway", got)


def test_the_routes_load_no_sanic():
    got = loaded("spd.rest.routes", "spd.rest.fields", "spd.rest.errors")
    assert libraries(got) <= {"dbus_fast"}  # (the route table's reply shapers read dbus-fast Variants)
    assert got - package("spd.rest", got) - package("dbus_fast", got) <= SHARED


def test_the_run_time_package_loads_no_domain_code():
    got = loaded(*(f"spd.runtime.{p.stem}" for p in (REPO / "spd" / "runtime").glob("*.py")))
    assert "sanic" not in libraries(got)
    assert got - package("spd.runtime", got) - package("dbus_fast", got) <= SHARED


def test_spdctl_loads_no_gateway_and_no_sanic():
    got = loaded("spdctl.main", "spdctl.commands")
    assert not package("gateway", got) and "sanic" not in libraries(got)
    assert got - package("spdctl", got) - package("spd.rest", got) - package("spd.runtime", got) \
        - package("dbus_fast", got) <= SHARED


def test_the_gateway_loads_nothing_of_the_daemon():
    got = loaded("gateway.main")
    assert "sanic" in libraries(got)
    ours = package("spd", got) - package("spd.rest", got) - package("spd.runtime", got)
    assert ours <= SHARED


def test_the_daemon_loads_no_http():
    got = loaded("spd.main")
    assert "sanic" not in libraries(got) and not package("spd.rest", got) and not package("gateway", got)
    assert package("spd.dbus", got)  # (it is the daemon: its interfaces are here)
