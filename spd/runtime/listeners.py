"""The one way a part of the daemon tells others that something happened: a `Listeners` attribute
named `on_<event>` (a store's on_commit, the backups' on_change, systemd's on_job_removed...), which
others `subscribe` to (when they start, never in an `__init__`) and the owner `notify`s."""


class Listeners:
    def __init__(self, log, what: str):
        """`log` and `what` name the owner in the line a failing listener leaves."""
        self._log, self._what = log, what
        self._fns = []

    def subscribe(self, fn) -> None:
        self._fns.append(fn)

    def notify(self, *args) -> None:
        """Call every listener, in the order they subscribed. A listener's bug is logged and the
        others still hear: the change already happened (a commit is made, a job ended)."""
        for fn in list(self._fns):
            try:
                fn(*args)
            except Exception:
                self._log.exception("a listener of %s failed", self._what)
