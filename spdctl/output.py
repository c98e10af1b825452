"""How spdctl prints: `Key: value` lines aligned on the colon (as timedatectl does), tables with a
header, JSON, and a progress bar. Colour and the bar only on a terminal (and not with NO_COLOR)."""

import json
import os
import sys

GREEN, RED, BOLD, RESET = "\033[32m", "\033[31m", "\033[1m", "\033[0m"


def _tty(stream=None) -> bool:
    return (stream or sys.stdout).isatty()


def colour(text: str, code: str) -> str:
    if not _tty() or os.environ.get("NO_COLOR"):
        return text
    return f"{code}{text}{RESET}"


def yes_no(value: bool) -> str:
    return colour("yes", GREEN) if value else "no"


def good_bad(text: str, good: bool) -> str:
    return colour(text, GREEN if good else RED)


def pairs(rows: list[tuple[str, str]]) -> None:
    width = max((len(k) for k, _ in rows), default=0)
    for key, value in rows:
        print(f"{key:>{width}}: {value}")


def table(header: tuple, rows: list[tuple]) -> None:
    """Columns as wide as their widest cell (colour codes not counted), the header in bold."""
    def plain(cell) -> str:
        text = str(cell)
        for code in (GREEN, RED, BOLD, RESET):
            text = text.replace(code, "")
        return text

    widths = [max([len(h)] + [len(plain(r[i])) for r in rows]) for i, h in enumerate(header)]

    def line(cells) -> str:
        return "  ".join(str(c) + " " * (w - len(plain(c))) for c, w in zip(cells, widths)).rstrip()

    print(colour(line(header), BOLD))
    for row in rows:
        print(line(row))


def as_json(body) -> None:
    print(json.dumps(body, ensure_ascii=False))


class Progress:
    """A bar redrawn in place on a terminal; otherwise one line per change of what is shown."""

    def __init__(self, what: str, stream=None):
        self.what = what
        self.stream = stream or sys.stdout
        self.bar = _tty(self.stream)
        self.last = None

    def show(self, state: str, fraction: float | None = None) -> None:
        percent = None if fraction is None else max(0, min(100, int(fraction * 100)))
        if (state, percent) == self.last:
            return
        self.last = (state, percent)
        if self.bar and percent is not None:
            filled = percent * 30 // 100
            self.stream.write(f"\r{self.what}: [{'#' * filled}{'.' * (30 - filled)}] {percent:3d}% {state}\033[K")
        else:
            self.stream.write(f"{self.what}: {state}" + (f" {percent}%" if percent is not None else "")
                              + ("\r" if self.bar else "\n"))
        self.stream.flush()

    def end(self, text: str) -> None:
        if self.bar:
            self.stream.write("\r\033[K")
        self.stream.write(f"{self.what}: {text}\n")
        self.stream.flush()
