"""Env-file parsing and the one place secret values are masked.

Every value parsed from an env file is registered here; output.py passes all
text through mask() before it is printed, logged or written as JSON.
"""

from __future__ import annotations

import io
import threading
from dataclasses import dataclass

from dotenv import dotenv_values

MASK = "********"
# Short values and plain numbers ("2", "true", "8000") are counts, flags and
# ports, not secrets; masking them would mangle every URL and table.
_MIN_SECRET_LEN = 6
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


def parse_env(data: bytes, required: tuple[str, ...] = ()) -> EnvSummary:
    """Parse an env file with python-dotenv, register its values, return key names only."""
    text = data.decode("utf-8", errors="replace").lstrip("\ufeff")
    values = dotenv_values(stream=io.StringIO(text))
    register(v for v in values.values() if v is not None)
    keys = tuple(values)
    return EnvSummary(keys=keys, missing=tuple(k for k in required if k not in values))
