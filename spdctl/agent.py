"""A text polkit agent for the call, as systemctl does: on a terminal, a caller other than root
starts `pkttyagent --fallback` (it steps back when the session already has an agent, e.g. a
desktop's), so that polkit can ask for the password right here. Without one, polkit has no one to
ask and refuses."""

import os
import shutil
import subprocess


def start() -> subprocess.Popen | None:
    path = shutil.which("pkttyagent")
    if os.geteuid() == 0 or path is None:
        return None
    read, write = os.pipe()
    try:
        agent = subprocess.Popen([path, "--notify-fd", str(write), "--fallback"], pass_fds=(write,))
    except OSError:
        return None
    finally:
        os.close(write)
    try:
        os.read(read, 1)  # it writes (or closes the pipe) once it is registered, or gave up
    finally:
        os.close(read)
    return agent


def stop(agent: subprocess.Popen | None) -> None:
    if agent is not None:
        agent.terminate()
        agent.wait()
