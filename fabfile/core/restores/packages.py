"""Debian packages a box needs: which are missing (dpkg-query), and how to install them."""

from __future__ import annotations

from collections.abc import Sequence

from ..facts import Fact

# Waits for a dpkg lock held by e.g. unattended-upgrades instead of failing at once.
_LOCK_WAIT = ("-o", "DPkg::Lock::Timeout=300")
NONINTERACTIVE = "DEBIAN_FRONTEND=noninteractive"


def installed(names: Sequence[str]) -> Fact[set[str]]:
    """Which of names are installed. dpkg-query exits 1 for unknown names: not an error."""
    argv = ("dpkg-query", "-W", "-f=${Package}\\t${db:Status-Abbrev}\\n", "--", *names)
    return Fact(argv, parse_installed, exit_codes={0, 1})


def parse_installed(stdout: str) -> set[str]:
    """Names whose status abbreviation says installed without errors ("ii ", "hi ").

    The second letter is the current state (i = installed); a third letter other
    than a space is an error flag (R = reinstallation required). Removed ("rc ")
    and unknown ("un ") packages are missing.
    """
    found: set[str] = set()
    for line in stdout.splitlines():
        name, _, status = line.partition("\t")
        if name and len(status) >= 2 and status[1] == "i" and status[2:3] in ("", " "):
            found.add(name.strip())
    return found


def missing(wanted: Sequence[str], have: set[str]) -> list[str]:
    return [name for name in wanted if name not in have]


def apt_commands(names: Sequence[str]) -> list[list[str]]:
    """apt-get update, then a non-interactive install; nothing when nothing is missing."""
    if not names:
        return []
    install = ["apt-get", *_LOCK_WAIT, "-q", "-y", "install", "--", *names]
    return [["apt-get", *_LOCK_WAIT, "-q", "update"], ["env", NONINTERACTIVE, *install]]
