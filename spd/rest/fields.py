"""JSON body fields: the one definition that both checks a request body (before any D-Bus call) and
describes it in the OpenAPI document, so the two cannot drift apart."""

import json
from dataclasses import dataclass
from typing import Any

from .errors import HTTPError

# D-Bus "i" is 32-bit: a larger int would make the daemon call fail, so int fields are bounded.
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
MAX_TEXT = 4096
# A path parameter names something (a user): short, and its URL (percent-encoded, up to 12 bytes a
# character) stays well under Sanic's 8 KiB request-line limit, past which it answers 413.
MAX_PATH_PARAM = 255

_TYPES = {str: ("string", "a string"), int: ("integer", "an integer"), bool: ("boolean", "a boolean")}


@dataclass(frozen=True)
class Field:
    """A JSON body field. Optional fields that are absent (or null) take `default`."""

    type: type
    required: bool = True
    default: Any = None
    description: str = ""
    max_length: int = MAX_TEXT  # str: characters
    minimum: int = INT32_MIN  # int
    maximum: int = INT32_MAX  # int

    def __post_init__(self):
        if self.type not in _TYPES:
            raise TypeError(f"unsupported field type {self.type!r}")

    def schema(self) -> dict:
        """This field as a JSON Schema (OpenAPI 3.0 dialect)."""
        s = {"type": _TYPES[self.type][0]}
        if self.type is str:
            s["maxLength"] = self.max_length
            s["pattern"] = "^[^\\u0000]*$"  # no NUL: D-Bus strings cannot carry one
        elif self.type is int:
            s["minimum"], s["maximum"] = self.minimum, self.maximum
        if not self.required:
            s["nullable"] = True
        if self.description:
            s["description"] = self.description
        return s

    def parse(self, name: str, value):
        """The value, checked; HTTPError 400 with a readable message when it does not fit."""
        if self.type is int:
            ok = isinstance(value, int) and not isinstance(value, bool)
        else:
            ok = isinstance(value, self.type)
        if not ok:
            raise HTTPError(400, f"{name} must be {_TYPES[self.type][1]}")
        if self.type is int and not self.minimum <= value <= self.maximum:
            if value < self.minimum:
                raise HTTPError(400, f"{name} must be at least {self.minimum}")
            raise HTTPError(400, f"{name} must be at most {self.maximum}")
        if self.type is str:
            value = text(name, value, self.max_length)
        return value


def body_schema(fields: dict) -> dict:
    """The JSON Schema of a body made of these fields: nothing else allowed."""
    return {
        "type": "object",
        "properties": {name: f.schema() for name, f in fields.items()},
        **({"required": required} if (required := [n for n, f in fields.items() if f.required]) else {}),
        "additionalProperties": False,
    }


def parse_body(raw: bytes | None, fields: dict) -> dict:
    """The request body as {name: value} with every field present (defaults filled in)."""
    if not raw:  # no body at all; whitespace alone is a body, and not JSON
        data = {}
    else:
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError, RecursionError):
            raise HTTPError(400, "The body is not valid JSON") from None
        if not isinstance(data, dict):
            raise HTTPError(400, "The body must be a JSON object")
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise HTTPError(400, f"Unknown field: {_shown(unknown[0])}")
    body = {}
    for name, spec in fields.items():
        value = data.get(name)
        if value is None:
            if spec.required:
                raise HTTPError(400, f"{name} is required")
            body[name] = spec.default
        else:
            body[name] = spec.parse(name, value)
    return body


def text(name: str, value: str, max_length: int = MAX_TEXT) -> str:
    """A string that can travel over D-Bus: UTF-8, no NUL, bounded."""
    if len(value) > max_length:
        raise HTTPError(400, f"{name} is longer than {max_length} characters")
    if "\0" in value:
        raise HTTPError(400, f"{name} contains a NUL character")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise HTTPError(400, f"{name} is not valid UTF-8") from None
    return value


def _shown(name: str) -> str:
    """A client's field name, safe to echo back in an error message."""
    if name.isascii() and name.isprintable() and len(name) <= 64:
        return name
    return "(a name that cannot be shown)"


@dataclass(frozen=True)
class Setting:
    """One setting of a settings route (spd/rest/routes.py Settings): its body field `name`, the
    D-Bus property that shows it (written by Set<property>), its Field, and how spdctl spells it."""

    name: str
    property: str
    field: Field
    label: str  # spdctl's line for it
    # spdctl: "WORD" sets it as `spdctl COMMAND WORD CHOICE`, "--WORD" as an option, "" as the
    # command's own argument, "verbs" as `spdctl COMMAND CHOICE` (each choice a command of its own)
    cli: str = ""
    choices: tuple = ("yes", "no")  # the words for true and false (a string setting: none)
    shown: tuple = ("yes", "no")  # how spdctl prints true and false
