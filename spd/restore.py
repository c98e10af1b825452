"""The file-moving half of a restore: what restic restored into a staging folder is moved over the
live `var`.

What it guarantees:
- Every file of the snapshot replaces the live one by a rename, so a file is either the old one or the
  restored one, never half-written. (The staging folder, var/lib/spd/restore, is under `var`, so on
  its file system unless var/lib/spd is a mount of its own: then a file is removed and copied, which
  a kill can interrupt.)
- Files created after the snapshot are kept, as `restic restore --target /` (what the 1.2 server
  ran) keeps them: a restore brings back what was lost or changed and never deletes newer data.
- The paths in `skip` (the daemon's own state) are never touched.
- Folders get the snapshot's owner, mode and times back after their content moved.
- A folder a service's user swaps for a symlink meanwhile redirects nothing (see merge).
- A kill at any point leaves `var` part old, part restored, file by file; the next start removes
  the staging folder, and restoring the snapshot again finishes the job.
"""

import errno
import os
import shutil


def fresh_folder(path: str) -> None:
    """An empty private folder at path, whatever a killed restore left there."""
    shutil.rmtree(path, True)
    os.makedirs(path, mode=0o700)


def bytes_under(folder: str) -> int:
    """What restic wrote so far: the measure of a restore's progress (restic 0.14 reports none)."""
    total = 0
    for path, _, files in os.walk(folder):
        for name in files:
            try:
                total += os.lstat(os.path.join(path, name)).st_size
            except OSError:
                pass
    return total


def merge(src: str, dst: str, skip: set, at: str | None = None) -> None:
    """Move the restored tree `src` over `dst`: every entry of src replaces its namesake in dst;
    entries only in dst stay, and so do the paths in `skip`.

    The folders of `var` belong to the services' users, who could swap one for a symlink while we
    work in it. So each folder is opened once without following a symlink and everything in it is
    reached through that descriptor (`at`: /proc/self/fd/N/name): a swapped folder can no longer
    redirect a restored file, a chown or a chmod elsewhere."""
    at = at or dst
    try:
        fd = os.open(at, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as e:
        if e.errno not in (errno.ENOTDIR, errno.ELOOP, errno.ENOENT):
            raise
        _remove(at)  # not a folder (a file, a symlink) or gone: the snapshot's one replaces it
        _move(src, at)
        return
    try:
        here = f"/proc/self/fd/{fd}"
        st = os.lstat(src)  # before its entries move out, which changes its modification time
        with os.scandir(src) as entries:
            for entry in entries:
                target = os.path.join(dst, entry.name)
                if target in skip:
                    continue
                pinned = os.path.join(here, entry.name)
                if entry.is_dir(follow_symlinks=False):
                    merge(entry.path, target, skip, pinned)
                else:
                    if os.path.isdir(pinned) and not os.path.islink(pinned):
                        shutil.rmtree(pinned)
                    _move(entry.path, pinned)
        os.fchown(fd, st.st_uid, st.st_gid)
        os.fchmod(fd, st.st_mode & 0o7777)
        os.utime(fd, ns=(st.st_atime_ns, st.st_mtime_ns))
    finally:
        os.close(fd)


def _move(src: str, dst: str) -> None:
    try:
        os.replace(src, dst)
    except OSError as e:
        if e.errno != errno.EXDEV:  # the staging folder is on another file system
            raise
        _remove(dst)
        shutil.move(src, dst)


def _remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.unlink(path)
