"""scripts/venv: each checkout gets its own virtualenv, so a second clone never runs the first one's
code; SPD_VENV still overrides."""

import os
import shutil
import subprocess
import sys

from stack import REPO


def venv_of(checkout, **env) -> str:
    env = {k: v for k, v in os.environ.items() if k != "SPD_VENV"} | env
    return subprocess.run([checkout / "scripts" / "venv"], capture_output=True, text=True, check=True,
                          env=env).stdout.strip()


def test_each_checkout_has_its_own_venv(tmp_path):
    clones = []
    for name in ("a", "b"):
        (tmp_path / name / "spd" / "scripts").mkdir(parents=True)
        shutil.copy(REPO / "scripts" / "venv", tmp_path / name / "spd" / "scripts")
        clones.append(tmp_path / name / "spd")
    first, second = venv_of(clones[0]), venv_of(clones[1])
    assert first != second and first != venv_of(REPO)
    assert first.startswith("/opt/spd-venvs/spd-") and second.startswith("/opt/spd-venvs/spd-")
    assert venv_of(clones[0]) == first  # the same checkout, the same venv
    assert venv_of(clones[0], SPD_VENV="/srv/v") == "/srv/v"


def test_the_running_venv_is_readable_by_nobody():
    """Tests run clients as nobody with this interpreter (tests/deploy_helpers.py)."""
    r = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                        sys.executable, "-c", "import dbus_fast"],
                       capture_output=True, text=True, cwd="/")
    assert r.returncode == 0, r.stderr


def test_the_runtime_dependencies_are_at_the_end_this_run_is_for():
    """scripts/test runs the suite twice: SPD_DEPENDENCIES=lowest must really hold every runtime
    dependency at its declared lower bound (else the range in pyproject.toml claims an untested
    release), newest at or above it."""
    from importlib.metadata import version

    from packaging.version import Version

    end = os.environ.get("SPD_DEPENDENCIES", "newest")
    pins = subprocess.run([REPO / "scripts" / "lower-bounds"], capture_output=True, text=True,
                          check=True).stdout.split()
    assert len(pins) >= 5
    for pin in pins:
        name, bound = pin.split("==")
        installed = Version(version(name))
        if end == "lowest":
            assert installed == Version(bound), f"{name} {installed}, declared lower bound {bound}"
        else:
            assert installed >= Version(bound), f"{name} {installed} is below its declared bound {bound}"


def test_lower_bounds_refuse_a_dependency_without_one(tmp_path):
    (tmp_path / "scripts").mkdir()
    shutil.copy(REPO / "scripts" / "lower-bounds", tmp_path / "scripts")
    (tmp_path / "pyproject.toml").write_text('[project]\ndependencies = ["sanic>=24.12.1", "dbus-fast"]\n')
    r = subprocess.run([tmp_path / "scripts" / "lower-bounds"], capture_output=True, text=True)
    assert r.returncode != 0 and "'dbus-fast' declares no lower bound" in r.stderr
