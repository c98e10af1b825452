"""Outside changes become signals: inotify (asyncinotify) on the folders whose files the daemon reads.

A target is a folder, the names in it that matter (None: any) and what to do when one changes. Folders
are watched rather than files: writers replace a file by renaming a new one over it (spd itself,
editors, nixos-rebuild), which a watch on the old file would never see. A folder that does not exist
yet (var/dkim before the mail server made it, a restic repository not initialized) is waited for
through its nearest existing parent, and watched once it appears; a folder that goes away is waited
for again. A burst of events (an editor's temp file and rename, a restore's many files) costs one
call of each target's action, SETTLE after the first event: well within the second a change may take.
"""

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from asyncinotify import Inotify, Mask

log = logging.getLogger("spd.watch")

SETTLE = 0.05  # seconds
# A file written in place (CLOSE_WRITE), renamed in or out, created (folders), deleted; and the
# folder itself going away or moving.
MASK = (Mask.CLOSE_WRITE | Mask.MOVED_TO | Mask.MOVED_FROM | Mask.CREATE | Mask.DELETE
        | Mask.DELETE_SELF | Mask.MOVE_SELF | Mask.ATTRIB)
GONE = Mask.IGNORED | Mask.DELETE_SELF | Mask.MOVE_SELF


@dataclass(frozen=True)
class Target:
    folder: Path
    names: frozenset | None  # file names in the folder that matter; None: every name
    action: Callable[[], None]  # what to do when one changes


class Watcher:
    def __init__(self, targets: list[Target]):
        self.targets = targets
        self._inotify: Inotify | None = None
        self._watches: dict[Path, object] = {}  # watched folder -> its Watch
        self._waiting: dict[Target, Path] = {}  # target -> the parent watched until its folder exists
        self._dirty: set[Target] = set()
        self._flush: asyncio.TimerHandle | None = None
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._inotify = Inotify()
        for target in self.targets:
            self._arm(target)
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        if self._flush is not None:
            self._flush.cancel()
        if self._inotify is not None:
            # Closing an inotify descriptor waits for the kernel's SRCU grace period: 355 ms seen on a
            # busy machine (the stall test caught it). A thread waits for it, not the loop.
            await asyncio.to_thread(self._inotify.close)

    def _watch(self, folder: Path) -> bool:
        if folder in self._watches:
            return True
        try:
            self._watches[folder] = self._inotify.add_watch(folder, MASK)
            return True
        except OSError as e:  # gone meanwhile, or not a folder
            log.debug("cannot watch %s: %s", folder, e)
            return False

    def _arm(self, target: Target) -> bool:
        """Watch the target's folder, or its nearest existing parent until it exists; True when the
        folder itself is watched."""
        if target.folder.is_dir() and self._watch(target.folder):
            self._waiting.pop(target, None)
            return True
        parent = target.folder.parent
        while not parent.is_dir() and parent != parent.parent:
            parent = parent.parent
        if self._watch(parent):
            self._waiting[target] = parent
        return False

    async def _run(self) -> None:
        async for event in self._inotify:
            watch = event.watch
            folder = watch.path if watch is not None else None
            if folder is None:
                continue
            if event.mask & GONE and event.name is None:
                self._gone(folder)
                continue
            for target in self.targets:
                if target.folder == folder:
                    if target.names is None or (event.name is not None and event.name.name in target.names):
                        self._changed(target)
                elif self._waiting.get(target) == folder and self._arm(target):
                    self._changed(target)  # it appeared: whatever it holds is new

    def _gone(self, folder: Path) -> None:
        watch = self._watches.pop(folder, None)
        if watch is not None:
            try:
                self._inotify.rm_watch(watch)
            except (OSError, ValueError, KeyError):  # the kernel dropped it already
                pass
        for target in self.targets:
            if target.folder == folder or self._waiting.get(target) == folder:
                self._waiting.pop(target, None)
                if not self._arm(target) or target.folder == folder:
                    self._changed(target)

    def _changed(self, target: Target) -> None:
        self._dirty.add(target)
        if self._flush is None:
            self._flush = asyncio.get_running_loop().call_later(SETTLE, self._run_actions)

    def _run_actions(self) -> None:
        self._flush = None
        dirty, self._dirty = self._dirty, set()
        for action in {target.action: target for target in dirty}:  # each action once
            try:
                action()
            except Exception:  # one action's bug must not stop the watching
                log.exception("reacting to a change on disk failed")
