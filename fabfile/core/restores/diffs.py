"""What a restore would change, safe to print: key names for env files, masked text for units."""

from __future__ import annotations

import difflib

from .. import secrets


def env_key_diff(current: bytes | None, wanted: bytes) -> list[str]:
    """Per key: added, removed or changed; values never shown."""
    new = secrets.env_values(wanted)
    if current is None:
        return [f"create the file with {len(new)} keys: {', '.join(new)}"]
    old = secrets.env_values(current)
    lines = [f"add {k}" for k in new if k not in old]
    lines += [f"remove {k}" for k in old if k not in new]
    lines += [f"change the value of {k}" for k in new if k in old and old[k] != new[k]]
    same = sum(1 for k in new if k in old and old[k] == new[k])
    return (
        [*lines, f"keep {same} keys unchanged"]
        if lines
        else ["no change: identical keys and values"]
    )


def text_diff(current: bytes | None, wanted: bytes, name: str) -> list[str]:
    before = (current or b"").decode("utf-8", "replace").splitlines()
    after = wanted.decode("utf-8", "replace").splitlines()
    diff = difflib.unified_diff(before, after, f"{name} (now)", f"{name} (backup)", lineterm="")
    return [secrets.mask(line) for line in diff] or [f"no change to {name}"]
