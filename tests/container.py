"""A booted Debian 12 with systemd as PID 1 (systemd-nspawn), spd installed in it as a package would
install it: the system test (tests/test_container.py) and scripts/container-shell use it.

The root file system is built once with debootstrap and cached under /var/cache/spd-systest/<key>,
the key being a hash of everything that goes into it (its packages, the project's Python dependencies,
the recipe below); a change of any of those builds a new one. Each boot runs on a throw-away overlay
of the cache, into which this checkout is installed fresh: units in /usr/lib/systemd/system, the bus
policy and activation file in /usr/share/dbus-1, data/sysusers.d in /usr/lib/sysusers.d (and
data/polkit-1 in /usr/share/polkit-1 when there is one), `/usr/bin/` rewritten to the venv's bin/
(/opt/spd/bin) as a packager rewrites it for its prefix, then what a package's postinst does
(systemd-sysusers, enabling the socket).

Use from another test module (one boot per `with`; a module-scoped fixture keeps it for many tests):

    from container import booted

    @pytest.fixture(scope="module")
    def machine():
        with booted("dbus-daemon", files={"/etc/polkit-1/rules.d/50-test.rules": RULES}) as m:
            yield m

    def test_x(machine):
        machine.run(["useradd", "alice"])
        r = machine.run(["busctl", "call", ...], user="alice", check=False)   # setpriv inside
        status, body = machine.http("GET", "/auth/tokens", token=TOKEN)     # its own 127.0.0.1:5050

It fails loudly (RuntimeError with the reason) when the machine cannot run it: not root, no
debootstrap or systemd-nspawn, a failed build or boot. It never skips.
"""

import contextlib
import fcntl
import hashlib
import inspect
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEMO_ROOT = REPO / "tests" / "data" / "root"
CACHE = Path(os.environ.get("SPD_SYSTEST_CACHE", "/var/cache/spd-systest"))
SUITE, MIRROR = "bookworm", "http://deb.debian.org/debian"
PACKAGES = [
    "systemd", "systemd-sysv", "libpam-systemd", "libnss-systemd",  # PID 1, logind
    "dbus", "dbus-broker", "polkitd",                                # both brokers; polkit for spdctl
    "python3", "python3-venv",                                       # the venv spd runs from
    "restic", "git", "whois", "util-linux",                          # what spd runs: mkpasswd is in whois
    "curl", "iproute2", "procps",                                    # checks: ss, ps
]
PREFIX = "/opt/spd"  # the venv: the package's prefix, so /usr/bin/ becomes /opt/spd/bin/
BROKERS = ("dbus-daemon", "dbus-broker")
# Where a package puts each folder of data/ (its subfolders kept).
INSTALL = {"systemd": "usr/lib/systemd/system", "dbus-1": "usr/share/dbus-1",
           "sysusers.d": "usr/lib/sysusers.d", "polkit-1": "usr/share/polkit-1"}
WORK_DIR, WORK_PREFIX = "/var/tmp", "spd-systest-"  # each boot's overlay, on the cache's file system
PATH_ENV = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def _say(text: str) -> None:
    print(f"[container] {text}", file=sys.stderr, flush=True)


def _sh(argv: list, timeout: float = 600, **kw) -> subprocess.CompletedProcess:
    r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kw)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, argv))[:300]} failed ({r.returncode}):\n"
                           f"{r.stdout[-3000:]}{r.stderr[-3000:]}")
    return r


def preflight() -> None:
    """Whether this machine can build and boot the container; a clear error when not."""
    problems = []
    if os.geteuid() != 0:
        problems.append("it must run as root (debootstrap, mounts, systemd-nspawn)")
    for tool in ("debootstrap", "systemd-nspawn", "nsenter", "systemctl"):
        if not shutil.which(tool):
            problems.append(f"{tool} is not installed (scripts/setup installs it)")
    if not Path("/sys/fs/cgroup").is_dir() or not os.listdir("/sys/fs/cgroup"):
        problems.append("no cgroup file system at /sys/fs/cgroup")
    if problems:
        raise RuntimeError("cannot run the booted-systemd test: " + "; ".join(problems))


# --- the cached root file system ----------------------------------------------------------------

def _python_dependencies() -> list:
    with open(REPO / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["project"]["dependencies"]


def cache_key() -> str:
    recipe = inspect.getsource(_build)
    text = json.dumps([SUITE, MIRROR, PACKAGES, _python_dependencies(), recipe])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _build(target: Path) -> None:
    _sh(["debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}", SUITE, str(target), MIRROR],
        timeout=900)
    # The project's Python dependencies, as wheels built here, installed into the venv in the root.
    wheels = target / "opt/wheels"  # not /tmp: nspawn mounts a tmpfs there
    _sh([sys.executable, "-m", "pip", "wheel", "--quiet", "-w", str(wheels), *_python_dependencies()])
    _nspawn(target, f"python3 -m venv {PREFIX} && {PREFIX}/bin/pip install --quiet --no-index "
                    f"--find-links /opt/wheels " + " ".join(f"'{d}'" for d in _python_dependencies()))
    shutil.rmtree(wheels)
    # The journal in /run: /var is what backups cover, and stays small and quiet.
    conf = target / "etc/systemd/journald.conf.d"
    conf.mkdir(parents=True, exist_ok=True)
    (conf / "volatile.conf").write_text("[Journal]\nStorage=volatile\nRateLimitBurst=0\n")
    (target / "etc/hostname").write_text("spd-systest\n")
    # dbus-daemon unless a boot enables dbus-broker (Debian's dbus-broker aliases itself as dbus.service).
    _sh(["systemctl", f"--root={target}", "disable", "dbus-broker.service"])
    _nspawn(target, "apt-get clean && rm -rf /var/lib/apt/lists/* /var/log/*.log /var/cache/debconf/*-old")


def _nspawn(root: Path, script: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """A shell command in the root, not booted (as a chroot with /proc, /dev and /sys)."""
    return _sh(["systemd-nspawn", "-q", "--register=no", "--keep-unit", "-D", str(root), "/bin/sh", "-ec", script],
               timeout=timeout, stdin=subprocess.DEVNULL, env={"PATH": PATH_ENV, "LANG": "C.UTF-8"})


def root_filesystem() -> tuple[Path, float | None]:
    """The cached root and the seconds its build took (None: it was cached), built first when there is
    none for the current key. Built in a folder of its own and renamed into place when complete: an
    interrupted build is never used (the next run removes it)."""
    preflight()
    CACHE.mkdir(parents=True, exist_ok=True)
    key = cache_key()
    done = CACHE / key
    with open(CACHE / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one build at a time; a second run waits and uses it
        if done.is_dir():
            _say(f"root file system: cached {done}")
            return done, None
        for stale in CACHE.glob("building-*"):
            shutil.rmtree(stale, ignore_errors=True)
        building = CACHE / f"building-{key}"
        started = time.monotonic()
        _say(f"root file system: building {done} (debootstrap {SUITE}, a few minutes)")
        try:
            _build(building)
        except Exception:
            shutil.rmtree(building, ignore_errors=True)
            raise
        os.rename(building, done)
        seconds = time.monotonic() - started
        _say(f"root file system: built in {seconds:.0f} s")
        return done, seconds


# --- a booted machine ---------------------------------------------------------------------------

def install_project(root: Path, workdir: Path) -> None:
    """This checkout into `root` as a package would install it."""
    # Build a wheel from a copy of the sources (keeps build/ out of the checkout), install it.
    src = workdir / "src"
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(
        ".git", "tests", "bench", "build", "*.egg-info", "__pycache__", ".pytest_cache", ".dev"))
    _sh([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "-w", str(root / "opt/spd-wheel"), str(src)])
    for name, target in INSTALL.items():
        if (REPO / "data" / name).is_dir():
            shutil.copytree(REPO / "data" / name, root / target, dirs_exist_ok=True)
    for unit in [*(root / INSTALL["systemd"]).glob("spd*"),
                 *(root / INSTALL["dbus-1"] / "system-services").glob("org.selfprivacy.*")]:
        unit.write_text(unit.read_text().replace("/usr/bin/", f"{PREFIX}/bin/"))
    # postinst: the users, the socket enabled (spd.service needs no enabling: the bus starts it).
    _nspawn(root, f"{PREFIX}/bin/pip install --quiet --no-deps --no-index /opt/spd-wheel/*.whl"
                  " && rm -r /opt/spd-wheel && systemd-sysusers && systemctl enable --quiet spd-gateway.socket")


def install_demo_state(root: Path) -> None:
    """The demo server's state (tests/data/root) at /, and /etc/nixos a git checkout with a remote
    that `configuration pull` can pull from."""
    shutil.copytree(DEMO_ROOT, root, dirs_exist_ok=True, symlinks=True)
    _nspawn(root, "git init -q --bare /srv/nixos-config.git && cd /etc/nixos && git init -q -b main"
                  " && git -c user.name=t -c user.email=t@t commit -q --allow-empty -m init"
                  " && git remote add origin /srv/nixos-config.git && git push -q -u origin main")


class Machine:
    """One booted container. Commands run inside through nsenter into its PID 1's namespaces."""

    def __init__(self, broker: str, files: dict | None = None):
        if broker not in BROKERS:
            raise ValueError(f"broker is one of {BROKERS}")
        self.broker = broker
        self.timings: dict[str, float] = {}
        cache, self.timings["cache build"] = root_filesystem()
        _remove_abandoned()
        self.work = Path(tempfile.mkdtemp(prefix=WORK_PREFIX, dir=WORK_DIR))
        (self.work / "owner").write_text(str(os.getpid()))
        self.root = self.work / "root"
        for d in ("upper", "overlay-work", "root"):
            (self.work / d).mkdir()
        _sh(["mount", "-t", "overlay", "overlay", "-o",
             f"lowerdir={cache},upperdir={self.work / 'upper'},workdir={self.work / 'overlay-work'}",
             str(self.root)])
        self.nspawn = None
        try:
            started = time.monotonic()
            install_project(self.root, self.work)
            install_demo_state(self.root)
            if broker == "dbus-broker":
                _sh(["systemctl", f"--root={self.root}", "enable", "--quiet", "dbus-broker.service"])
            for path, text in (files or {}).items():
                target = self.root / path.lstrip("/")
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(text)
            self.timings["install"] = time.monotonic() - started
            self._boot()
        except BaseException:
            self.close()
            raise

    def _boot(self) -> None:
        started = time.monotonic()
        self.console = self.work / "console.log"
        with open(self.console, "wb") as log:
            self.nspawn = subprocess.Popen(
                ["systemd-nspawn", "-q", "--register=no", "--keep-unit", "--private-network",
                 "--machine=spd-systest", "-D", str(self.root), "--boot"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env={"PATH": PATH_ENV, "LANG": "C.UTF-8", "SYSTEMD_NSPAWN_TMPFS_TMP": "1"})
        (self.work / "nspawn").write_text(str(self.nspawn.pid))
        self.leader = self._wait_for_pid1()
        deadline = time.monotonic() + 120
        while True:  # "offline" (or nothing) until PID 1 opened its private bus
            state = self.run(["systemctl", "is-system-running", "--wait"], check=False, timeout=120).stdout.strip()
            if state not in ("", "offline") or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        if state not in ("running", "degraded"):
            raise RuntimeError(f"the container did not boot: {state}\n{self.console_log()}")
        if state == "degraded":
            _say(f"booted degraded: {self.run(['systemctl', '--failed', '--no-legend']).stdout.strip()}")
        self.timings["boot"] = time.monotonic() - started

    def _wait_for_pid1(self) -> int:
        """The container's PID 1: the child of systemd-nspawn named systemd (an earlier child can be a
        short-lived helper)."""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.nspawn.poll() is not None:
                raise RuntimeError(f"systemd-nspawn exited with {self.nspawn.returncode}:\n{self.console_log()}")
            try:
                children = Path(f"/proc/{self.nspawn.pid}/task/{self.nspawn.pid}/children").read_text().split()
                for pid in children:
                    if Path(f"/proc/{pid}/comm").read_text().strip() == "systemd":
                        return int(pid)
            except FileNotFoundError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"no systemd in the container after 60 s:\n{self.console_log()}")

    def console_log(self) -> str:
        return self.console.read_text(errors="replace")[-5000:] if self.console.exists() else ""

    # --- commands inside ---------------------------------------------------------------------

    def run(self, argv: list, user: str | None = None, input: str | None = None, check: bool = True,
            timeout: float = 60, namespaces: tuple = ("-a",)) -> subprocess.CompletedProcess:
        """argv inside the container, as root or as `user` (setpriv with that user's groups)."""
        as_user = ["setpriv", f"--reuid={user}", f"--regid={self._group_of(user)}", "--init-groups", "--"] \
            if user else []
        r = subprocess.run(["nsenter", "-t", str(self.leader), *namespaces, *as_user, *argv],
                           input=input, capture_output=True, text=True, timeout=timeout, cwd="/",
                           env={"PATH": PATH_ENV, "LANG": "C.UTF-8", "SYSTEMD_PAGER": "", "SYSTEMD_COLORS": "0"})
        if check and r.returncode != 0:
            raise AssertionError(f"{' '.join(argv)} (as {user or 'root'}) failed ({r.returncode}):\n"
                                 f"{r.stdout}{r.stderr}")
        return r

    def _group_of(self, user: str) -> str:
        return self.run(["id", "-gn", user]).stdout.strip()

    def write(self, path: str, text: str) -> None:
        """A file inside the running container (through its root; the overlay is its /)."""
        self.run(["install", "-D", "-m", "0644", "/dev/stdin", path], input=text)

    def systemctl(self, *args, check: bool = True) -> str:
        return self.run(["systemctl", *args], check=check).stdout.strip()

    def http_batch(self, requests: list, timeout: float = 60) -> list:
        """Requests to the container's own 127.0.0.1:5050 from this test's Python (httpx), run in the
        container's network namespace only. Each request: {"method", "path", "json"?, "token"?};
        each answer: {"status", "body" (JSON or text), "seconds"}."""
        r = self.run([sys.executable, "-c", _HTTP_CLIENT], input=json.dumps(requests), timeout=timeout,
                     namespaces=("-n",))
        return json.loads(r.stdout)

    def http(self, method: str, path: str, json_body=None, token: str | None = None) -> tuple:
        (answer,) = self.http_batch([{"method": method, "path": path, "json": json_body, "token": token}])
        return answer["status"], answer["body"]

    def journal(self, *args) -> str:
        return self.run(["journalctl", "--no-pager", *args], timeout=120).stdout

    def entries(self, *match, count: int = 1, timeout: float = 30) -> list[dict]:
        """The journal's entries matching, once there are `count` (an entry reaches the journal a
        moment after the reply of the call that wrote it), or what there is after `timeout` s."""
        deadline = time.monotonic() + timeout
        while True:
            found = [json.loads(line) for line in self.journal("-o", "json", *match).splitlines()
                     if line.startswith("{")]
            if len(found) >= count or time.monotonic() > deadline:
                return found
            time.sleep(0.2)

    # --- the end -----------------------------------------------------------------------------

    def wait_powered_off(self, timeout: float) -> float | None:
        """Seconds until systemd-nspawn exited (the container powered off), None if it did not."""
        started = time.monotonic()
        try:
            self.nspawn.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        return time.monotonic() - started

    def close(self) -> None:
        if self.nspawn and self.nspawn.poll() is None:
            self.nspawn.terminate()  # SIGTERM: nspawn asks the container to power off
            try:
                self.nspawn.wait(30)
            except subprocess.TimeoutExpired:
                self.nspawn.kill()
                self.nspawn.wait(10)
        subprocess.run(["umount", str(self.root)], capture_output=True)
        if os.path.ismount(self.root):
            subprocess.run(["umount", "-l", str(self.root)], capture_output=True)
        shutil.rmtree(self.work, ignore_errors=True)


def _remove_abandoned() -> None:
    """Containers and overlays left by a run that was killed (its owner process is gone)."""
    for work in Path(WORK_DIR).glob(WORK_PREFIX + "*"):
        try:
            os.kill(int((work / "owner").read_text()), 0)
            continue  # its run is still going
        except (FileNotFoundError, ValueError, ProcessLookupError):
            pass
        with contextlib.suppress(FileNotFoundError, ValueError, ProcessLookupError):
            pid = int((work / "nspawn").read_text())
            if Path(f"/proc/{pid}/comm").read_text().strip() == "systemd-nspawn":
                os.kill(pid, 9)
                time.sleep(1)
        subprocess.run(["umount", "-l", str(work / "root")], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)


@contextlib.contextmanager
def booted(broker: str = "dbus-daemon", files: dict | None = None):
    """A Machine booted with `broker`, extra `files` ({absolute path: text}) written into its root
    before boot; powered off and thrown away afterwards."""
    machine = Machine(broker, files)
    try:
        yield machine
    finally:
        machine.close()


# Runs in the container's network namespace: a list of requests (JSON on stdin) -> answers.
_HTTP_CLIENT = r"""
import json, sys, time
import httpx
answers = []
with httpx.Client(base_url="http://127.0.0.1:5050", timeout=30) as client:
    for q in json.load(sys.stdin):
        headers = {"Authorization": f"Bearer {q['token']}"} if q.get("token") else {}
        started = time.monotonic()
        try:
            r = client.request(q["method"], q["path"], json=q.get("json"), headers=headers)
            try:
                body = r.json()
            except ValueError:
                body = r.text
            answers.append({"status": r.status_code, "body": body, "seconds": time.monotonic() - started})
        except httpx.TransportError as e:
            answers.append({"status": 0, "body": f"{type(e).__name__}: {e}", "seconds": time.monotonic() - started})
print(json.dumps(answers))
"""
