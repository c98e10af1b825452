"""How spdctl prints: `Key: value` lines aligned on the colon (as timedatectl does), tables with a
header, JSON, and a progress bar. Colour and the bar only on a terminal (and not with NO_COLOR).

Every string from the server reaches the terminal through escape(): a control character in a user
name, an SSH key's comment or a job's result must not move the cursor, set the window title or
clear the screen. Text that holds spdctl's own colour codes is Styled: escaped already."""

import json
import os
import re
import sys

GREEN, RED, BOLD, RESET = "\033[32m", "\033[31m", "\033[1m", "\033[0m"

# Control characters as Unicode has them (C0, DEL, C1); the rest of Unicode is printed as it is.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_LINES = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # the same but newline and tab
_NAMED = {"\a": r"\a", "\b": r"\b", "\t": r"\t", "\n": r"\n", "\v": r"\v", "\f": r"\f", "\r": r"\r"}


def _c_escape(match: re.Match) -> str:
    """C-style, as systemd's tools (utf8_escape_non_printable) write it: \\n, \\x1b; a C1 control
    byte by byte of its UTF-8 (U+009B is \\xc2\\x9b)."""
    char = match.group()
    return _NAMED.get(char) or "".join(f"\\x{b:02x}" for b in char.encode())


def escape(text, lines: bool = False) -> str:
    """text with its control characters escaped; with lines, a text of several lines keeps its
    newlines and tabs (git's output, a DNS record)."""
    return (_LINES if lines else _CONTROL).sub(_c_escape, str(text))


class Styled(str):
    """Text ready for the terminal: escaped, with spdctl's own colour codes."""


def styled(text) -> Styled:
    return text if isinstance(text, Styled) else Styled(escape(text))


def join(*parts) -> Styled:
    """One cell of parts, some of them coloured."""
    return Styled("".join(map(styled, parts)))


def echo(text, lines: bool = False, end: str = "\n", file=None) -> None:
    print(escape(text, lines), end=end, file=file)


def _tty(stream=None) -> bool:
    return (stream or sys.stdout).isatty()


def colour(text, code: str) -> Styled:
    text = styled(text)
    if not _tty() or os.environ.get("NO_COLOR"):
        return text
    return Styled(f"{code}{text}{RESET}")


def yes_no(value: bool) -> Styled:
    return colour("yes", GREEN) if value else styled("no")


def good_bad(text, good: bool) -> Styled:
    return colour(text, GREEN if good else RED)


def pairs(rows: list[tuple[str, str]]) -> None:
    rows = [(key, styled(value)) for key, value in rows]
    width = max((len(k) for k, _ in rows), default=0)
    for key, value in rows:
        print(f"{key:>{width}}: {value}")


def table(header: tuple, rows: list[tuple]) -> None:
    """Columns as wide as their widest cell (colour codes not counted), the header in bold."""
    rows = [tuple(map(styled, row)) for row in rows]

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


# json.dumps escapes C0 controls (\u001b); with ensure_ascii=False it leaves DEL and C1 as they are.
_JSON_RAW = re.compile(r"[\x7f-\x9f]")


def as_json(body) -> None:
    """The body as JSON; a control character is a \\u escape there (the same JSON value)."""
    print(_JSON_RAW.sub(lambda m: f"\\u{ord(m.group()):04x}", json.dumps(body, ensure_ascii=False)))


class Progress:
    """A bar redrawn in place on a terminal; otherwise one line per change of what is shown."""

    def __init__(self, what: str, stream=None):
        self.what = what
        self.stream = stream or sys.stdout
        self.bar = _tty(self.stream)
        self.last = None

    def show(self, state: str, fraction: float | None = None) -> None:
        state = escape(state)
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
        self.stream.write(f"{self.what}: {escape(text)}\n")
        self.stream.flush()
