"""Where a drill may run: only on a host the inventory marks scratch, never on its source.

Judged from the inventory alone, before any connection, so a mistyped -H can
never reach a production box.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..errors import UsageError
from ..model import Host


class DrillRefused(UsageError):
    """The target is not a scratch host, or is the source itself."""


def refusal(target: Host, source: Host, scratch: Sequence[str]) -> str | None:
    """Why a drill of `source` must not run on `target`; None when it may.

    `scratch`: the inventory's scratch hosts, for the hint.
    """
    if target.name == source.name or _same_machine(target, source):
        why = f"{target.name} is the drill's source {source.name}"
    elif not target.scratch:
        why = f"{target.name} is not a scratch host (the inventory does not mark it scratch: true)"
    else:
        return None
    others = [name for name in scratch if name != source.name]
    hint = (
        f"run it on a scratch host, e.g. fab -H {others[0]} drill --source {source.name}"
        if others
        else "mark a spare box scratch: true in the inventory and run the drill there"
    )
    return f"{why}; a drill overwrites its target, so nothing was done: {hint}"


def check(target: Host, source: Host, scratch: Sequence[str]) -> None:
    if (why := refusal(target, source, scratch)) is not None:
        raise DrillRefused(why)


def _same_machine(a: Host, b: Host) -> bool:
    """Two inventory names for one address and port (no address: ~/.ssh/config decides)."""
    return a.address is not None and (a.address, a.port) == (b.address, b.port)
