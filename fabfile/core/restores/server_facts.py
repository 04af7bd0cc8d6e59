"""What restore.server checks on the box: each a Fact (argv + pure parser) and a verdict.

The done-checks of its steps are built from these, so a re-run skips finished work.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Sequence
from dataclasses import dataclass

from .. import service_user
from ..facts import COMMIT, ONE_IS_NONE, Fact
from ..model import Layout

# In the venv: sha256 of the requirements.txt it was installed from.
MARKER = ".zachot-requirements.sha256"
_SHA256 = re.compile(r"[0-9a-f]{64}", re.ASCII)


@dataclass(frozen=True)
class DirSpec:
    path: str
    mode: int


@dataclass(frozen=True)
class DirStat:
    mode: int
    owner: str
    group: str


def service_dirs(layout: Layout) -> list[DirSpec]:
    """Step 2's directories, parents first; the env file's directory is not world-readable."""
    specs = [
        DirSpec(layout.root, 0o755),
        DirSpec(posixpath.dirname(layout.venv_dir), 0o755),
        DirSpec(layout.venv_dir, 0o755),
        DirSpec(posixpath.dirname(layout.env_file), 0o750),
        DirSpec(layout.backup_dir, 0o700),
    ]
    seen: dict[str, DirSpec] = {}
    for spec in specs:
        seen.setdefault(spec.path, spec)
    return list(seen.values())


def dir_stats(paths: Sequence[str]) -> Fact[dict[str, DirStat]]:
    script = 'for d; do if [ -d "$d" ]; then stat -c "%a %U %G %n" -- "$d" || exit; fi; done'
    return Fact(("sh", "-c", script, "sh", *paths), parse_dir_stats, sudo=True)


def parse_dir_stats(stdout: str) -> dict[str, DirStat]:
    found = {}
    for line in stdout.splitlines():
        parts = line.split(" ", 3)
        if len(parts) == 4:
            found[parts[3]] = DirStat(int(parts[0], 8), parts[1], parts[2])
    return found


def dirs_ready(have: dict[str, DirStat], specs: Sequence[DirSpec], user: str) -> bool:
    return all(have.get(s.path) == DirStat(s.mode, user, user) for s in specs)


def user_exists(user: str) -> Fact[bool]:
    # id exits 1 for "no such user"; anything else is a failure, not an answer.
    return Fact(("id", "-u", "--", user), lambda out: out.strip().isdigit(), exit_codes={0, 1})


@dataclass(frozen=True)
class Checkout:
    state: str  # "absent", "not-a-repo" or "repo"
    head: str | None = None
    want: str | None = None  # the wanted ref as a commit, if the clone has it

    @property
    def done(self) -> bool:
        return self.head is not None and self.head == self.want


def checkout(layout: Layout, ref: str) -> Fact[Checkout]:
    # As the service user: its repo, its git config (service_user.py).
    script = (
        '[ -e "$1" ] || { echo absent; exit 0; }; '
        '[ -e "$1/.git" ] || { echo not-a-repo; exit 0; }; '
        f'h=$(git --no-pager -C "$1" rev-parse -q --verify HEAD){ONE_IS_NONE}; '
        'w=$(git --no-pager -C "$1" rev-parse -q --verify --end-of-options "$2^{commit}")'
        f'{ONE_IS_NONE}; echo "head $h"; echo "want $w"'
    )
    command = ("sh", "-c", script, "sh", layout.repo_dir, ref)
    return Fact(service_user.argv(layout, command), parse_checkout, sudo=True)


def parse_checkout(stdout: str) -> Checkout:
    """Only hex ids are taken: the output is the service user's git, so its data."""
    lines = stdout.split("\n")
    if lines[0].strip() in ("absent", "not-a-repo"):
        return Checkout(lines[0].strip())
    said = {k: v.strip() for k, v in (ln.partition(" ")[::2] for ln in lines if ln.strip())}
    head, want = said.get("head", ""), said.get("want", "")
    return Checkout(
        "repo", head if COMMIT.fullmatch(head) else None, want if COMMIT.fullmatch(want) else None
    )


@dataclass(frozen=True)
class VenvState:
    have: str | None  # the marker in the venv
    want: str | None  # sha256 of the repo's requirements.txt

    @property
    def done(self) -> bool:
        return self.want is not None and self.have == self.want


def venv_state(layout: Layout, requirements: str) -> Fact[VenvState]:
    """Read as the service user: the venv and the repo are its files, links included."""
    script = (
        'h=-; if [ -x "$1/bin/python" ] && [ -f "$1/$3" ]; then h=$(cat -- "$1/$3") || exit; fi; '
        'w=-; if [ -f "$2" ]; then w=$(sha256sum < "$2") || exit; fi; '
        'echo "$h"; echo "${w%% *}"'
    )
    command = ("sh", "-c", script, "sh", layout.venv_dir, requirements, MARKER)
    return Fact(service_user.argv(layout, command), parse_venv, sudo=True)


def parse_venv(stdout: str) -> VenvState:
    have, want = ([*(ln.strip() for ln in stdout.splitlines()), "-", "-"])[:2]
    return VenvState(
        have if _SHA256.fullmatch(have) else None, want if _SHA256.fullmatch(want) else None
    )


def unit_states(unit_names: Sequence[str]) -> Fact[list[dict[str, str]]]:
    props = "LoadState,NeedDaemonReload,UnitFileState"
    return Fact(("systemctl", "show", "-p", props, "--", *unit_names), parse_unit_show)


def parse_unit_show(stdout: str) -> list[dict[str, str]]:
    """`systemctl show` prints one block of key=value lines per unit, in argument order."""
    blocks = [b for b in stdout.strip("\n").split("\n\n") if b.strip()]
    return [dict(ln.partition("=")[::2] for ln in b.splitlines() if "=" in ln) for b in blocks]


def units_ready(states: list[dict[str, str]], count: int) -> bool:
    return len(states) == count and all(
        s.get("LoadState") == "loaded"
        and s.get("NeedDaemonReload") == "no"
        and s.get("UnitFileState") == "enabled"
        for s in states
    )
