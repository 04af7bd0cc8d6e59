"""Run a command as the service user: whatever belongs to it is never run by root.

The repo and the venv are the service user's, so their git config, hooks and binaries are
its code (core.fsmonitor, a lazy fetch's ext:: URL, bin/python). runuser drops to that user
before the exec, so the kernel confines whatever they run. It starts in the user's home, with
HOME set, so what it creates is its own and its own config, never root's, is what tools read.
"""

from __future__ import annotations

from collections.abc import Sequence

from .model import Layout
from .transport import CommandResult, Transport

# The checklist's one script: argv() below as a shell function over ZC_USER and ZC_ROOT.
# Its stdin is root's script, so never theirs; a line of theirs that looks like one of the
# script's section marks is defused, so what they print never poses as another section.
SHELL_FUNCTION = (
    'as_service_user() { runuser -u "$ZC_USER" -- env -C "$ZC_ROOT" HOME="$ZC_ROOT" "$@" '
    "</dev/null | sed 's/^@@/@ @/'; }"
)


def argv(layout: Layout, command: Sequence[str]) -> tuple[str, ...]:
    """command as the service user; run the result with sudo (runuser needs root)."""
    home = ("env", "-C", layout.root, f"HOME={layout.root}")
    return ("runuser", "-u", layout.service_user, "--", *home, *command)


def shell_variables(layout: Layout) -> dict[str, str]:
    """What SHELL_FUNCTION reads."""
    return {"ZC_USER": layout.service_user, "ZC_ROOT": layout.root}


def run(
    transport: Transport, layout: Layout, command: Sequence[str], *, check: bool = True
) -> CommandResult:
    return transport.run(argv(layout, command), sudo=True, check=check)
