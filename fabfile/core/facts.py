"""What is there on a host: each fact is a command plus a pure parser.

Parsers take the command's stdout and are tested against recorded output;
gather() is the only part that touches the transport.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from . import service_user
from .errors import FactError
from .model import Layout
from .transport import Transport

T = TypeVar("T")
SHOWN = 160  # characters of a failed fact's command named in its error


@dataclass(frozen=True)
class Fact(Generic[T]):
    argv: tuple[str, ...]
    parse: Callable[[str], T]
    sudo: bool = False
    errors: str = "replace"  # how stdout is decoded (see Transport.run)
    # The exit codes that are answers (e.g. `test -f`: 1 means absent); any other is a failure.
    exit_codes: Collection[int] = field(default=frozenset({0}))

    def __post_init__(self) -> None:
        object.__setattr__(self, "exit_codes", frozenset(self.exit_codes))


def gather(transport: Transport, fact: Fact[T]) -> T:
    """The parsed answer; a command that failed (permission denied, a missing binary) raises
    instead of reading as "nothing there", as pyinfra's _get_fact does."""
    said = transport.run(fact.argv, sudo=fact.sudo, check=False, errors=fact.errors)
    if said.exit_code not in fact.exit_codes:
        command = shlex.join(fact.argv)
        command = command if len(command) <= SHOWN else command[: SHOWN - 1] + "…"
        last = (said.stderr.strip().splitlines() or ["no error output"])[-1].strip()
        raise FactError(f"{transport.host.name}: `{command}` exited {said.exit_code}: {last}")
    return fact.parse(said.stdout)


def gather_all(transport: Transport, *asked: Fact[Any]) -> list[Any]:
    """Several facts side by side, one channel each: one round trip of wall time, not one per
    fact. Each is checked as gather() checks it."""
    return transport.together(*(lambda fact=fact: gather(transport, fact) for fact in asked))


@dataclass(frozen=True)
class DeployedRef:
    commit: str | None
    describe: str | None


# After a command whose exit 1 is an answer ("none": `git rev-parse -q --verify`), any other
# failure (dubious ownership, permission denied, git not installed) ends the script with it.
ONE_IS_NONE = " || { r=$?; [ $r -eq 1 ] || exit $r; }"

# Git runs as the service user (its repo, config and hooks: see service_user.py); what it
# prints is that user's data, so only a commit id and a plain ref name are taken from it.
# No clone, or no commit yet, prints nothing (absent); a git that fails fails the fact.
DEPLOYED_REF = (
    '[ -e "$1/.git" ] || exit 0; '
    f'c=$(git --no-pager -C "$1" rev-parse -q --verify HEAD){ONE_IS_NONE}; '
    '[ -n "$c" ] || exit 0; echo "$c"; git --no-pager -C "$1" describe --tags --always'
)
COMMIT = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}", re.ASCII)
REF_NAME = re.compile(r"[!-~]{1,200}", re.ASCII)  # printable, no space: never a terminal escape


def deployed_ref(layout: Layout) -> Fact[DeployedRef]:
    command = ("sh", "-c", DEPLOYED_REF, "sh", layout.repo_dir)
    return Fact(service_user.argv(layout, command), parse_deployed_ref, sudo=True)


def parse_deployed_ref(stdout: str) -> DeployedRef:
    commit, describe = ([ln.strip() for ln in stdout.splitlines()] + ["-", "-"])[:2]
    return DeployedRef(
        commit=commit if COMMIT.fullmatch(commit) else None,
        describe=describe if describe != "-" and REF_NAME.fullmatch(describe) else None,
    )


@dataclass(frozen=True)
class RemoteEntry:
    name: str  # relative to the listed directory
    size: int  # -1: the listing user cannot read it
    mtime: float

    @property
    def readable(self) -> bool:
        return self.size >= 0


def regular_files(
    directory: str, *, pattern: str = "*", depth: int | None = None, user: Layout | None = None
) -> Fact:
    """Regular files only: symlinks are neither followed nor listed.

    With `user` (a layout), listed as its service user: a file that user cannot read is
    listed as unreadable (size -1), so the caller can say it was skipped, and so is a
    subdirectory it cannot enter (its name ends in "/"). Names keep
    their exact bytes (surrogateescape): a file named in Latin-1 must reach tar as it is
    on disk. Encode them back with "surrogateescape"."""
    # -ignore_readdir_race: a log rotated away between readdir and stat is not an error.
    argv = ["sh", "-c", LIST_FILES, "sh", directory, "-ignore_readdir_race", "-mindepth", "1"]
    argv += ["-maxdepth", str(depth)] if depth else []
    listed = ["-printf", r"%P\0%s\0%T@\0"]
    if user:
        # A directory it cannot enter is listed as unreadable ("name/"), not walked.
        closed = ["-type", "d", "(", "!", "-readable", "-o", "!", "-executable", ")", "-prune"]
        argv += ["(", *closed, "-printf", r"%P/\0-1\0%T@\0", ")", "-o"]
        unreadable = ["-printf", r"%P\0-1\0%T@\0"]
        listed = ["(", "-readable", *listed, ")", "-o", *unreadable]
    argv += ["-type", "f", "-name", pattern, "(", *listed, ")"]
    command = service_user.argv(user, argv) if user else tuple(argv)
    return Fact(command, parse_entries, sudo=True, errors="surrogateescape")


# A directory that is not there lists nothing, when its parent is there to say so; any other
# trouble (permission denied, an unreadable subdirectory) is find's failure, so the fact's.
LIST_FILES = '[ -e "$1" ] || [ -L "$1" ] || { [ -x "${1%/*}/" ] && exit 0; }; exec find "$@"'


def parse_entries(stdout: str) -> list[RemoteEntry]:
    fields = stdout.split("\0")
    triples = zip(fields[0::3], fields[1::3], fields[2::3], strict=False)
    return sorted(
        (RemoteEntry(name, int(size), float(mtime)) for name, size, mtime in triples if name),
        key=lambda e: e.name,
    )


def is_file(path: str) -> Fact[bool]:
    script = 'test -f "$1" && echo yes'
    return Fact(("sh", "-c", script, "sh", path), _yes, sudo=True, exit_codes={0, 1})


def _yes(stdout: str) -> bool:
    return stdout.strip() == "yes"
