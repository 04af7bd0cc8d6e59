"""Env-file parsing and the one place secret values are masked.

Every value parsed from an env file is registered here; output.py passes all
text through mask() before it is printed, logged or written as JSON.
"""

from __future__ import annotations

import io
import logging
import re
import shlex
import threading
from dataclasses import dataclass

# python-dotenv logs unparsable lines to stderr past output.py; verify reports their numbers.
logging.getLogger("dotenv.main").setLevel(logging.ERROR)

MASK = "********"
# Short values and plain numbers ("2", "true", "8000") are counts, flags and
# ports, not secrets; masking them would mangle every URL and table.
_MIN_SECRET_LEN = 6
# What an assignment's name looks like; anything else on a KEY=value-shaped line is text.
_KEY_NAME = re.compile(r"(?:export\s+)?[A-Za-z_][A-Za-z0-9_.]*\Z")
# A unit's Environment= setting (any case of spaces around '='), after continuations are joined.
_ENVIRONMENT = re.compile(r"\s*Environment\s*=(.*)\Z", re.DOTALL)
_lock = threading.Lock()
_secrets: set[str] = set()


@dataclass(frozen=True)
class EnvSummary:
    keys: tuple[str, ...]
    missing: tuple[str, ...]


def register(values: object) -> None:
    with _lock:
        for value in values:  # type: ignore[attr-defined]
            if isinstance(value, str):
                # Multi-line values may be printed one line at a time.
                _secrets.update(p for p in (value, *value.splitlines()) if _secret_like(p))


def _secret_like(value: str) -> bool:
    return len(value) >= _MIN_SECRET_LEN and not value.isdigit()


def mask(text: str) -> str:
    if not _secrets:
        return text
    with _lock:
        ordered = sorted(_secrets, key=len, reverse=True)
    for secret in ordered:
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def env_values(data: bytes) -> dict[str, str]:
    """The KEY=value assignments of an env file (python-dotenv), every value registered.

    Some lines only look like assignments to python-dotenv. A line without '=' (the tail
    of an unquoted multi-line value, a PEM key's body) comes back as a key with no value;
    a base64 line ending in '==' comes back as a key whose value is '='; and base64 may
    hold '+' or '/', which no variable name does. Such a "key" is a piece of a secret: its
    text is registered, and it is never listed as a key. (One '=' of padding reads exactly
    like an empty `NAME=`, so that line stays a key.)"""
    # Imported here: every task loads this module (output masks through it), few parse env.
    from dotenv import dotenv_values

    text = data.decode("utf-8", errors="replace").lstrip("\ufeff")
    values = dotenv_values(stream=io.StringIO(text))
    fragments = {k for k, v in values.items() if not _is_assignment(k, v)}
    register(fragments)
    register(v for k, v in values.items() if k not in fragments)
    return {k: v for k, v in values.items() if k not in fragments and v is not None}


def _is_assignment(key: str, value: str | None) -> bool:
    if value is None or not _KEY_NAME.match(key):
        return False
    # "AbC==" parses as AbC with value "=": base64 padding, not an assignment.
    return not value.startswith("=")


def parse_env(data: bytes, required: tuple[str, ...] = ()) -> EnvSummary:
    """Parse an env file with python-dotenv, register its values, return key names only."""
    values = env_values(data)
    keys = tuple(values)
    return EnvSummary(keys=keys, missing=tuple(k for k in required if k not in values))


def unit_env_values(data: bytes) -> list[str]:
    """The values of a unit file's `Environment=` assignments, every one registered.

    systemd joins a line ending in a backslash with the next, then splits the setting
    into words with shell-like quoting, each word NAME=VALUE. A line whose quotes do not
    parse is registered whole (after its first '='): it may still be a secret."""
    text = data.decode("utf-8", errors="replace")
    found: list[str] = []
    for line in re.sub(r"\\\n", " ", text).splitlines():
        if (setting := _ENVIRONMENT.match(line)) is None:
            continue
        try:
            words = shlex.split(setting.group(1), comments=False, posix=True)
        except ValueError:
            words = setting.group(1).split()
        found += [word.partition("=")[2] for word in words if "=" in word]
        # The words as written too: what a diff line shows when quoting hides a value.
        found += [p.partition("=")[2] for p in setting.group(1).split() if "=" in p]
    register(found)
    return [value for value in dict.fromkeys(found) if _secret_like(value)]
