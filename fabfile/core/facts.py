"""What is there on a host: each fact is a command plus a pure parser.

Parsers take the command's stdout and are tested against recorded output;
gather() is the only part that touches the transport.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from . import service_user
from .model import Layout
from .transport import Transport

T = TypeVar("T")


@dataclass(frozen=True)
class Fact(Generic[T]):
    argv: tuple[str, ...]
    parse: Callable[[str], T]
    sudo: bool = False
    errors: str = "replace"  # how stdout is decoded (see Transport.run)


def gather(transport: Transport, fact: Fact[T]) -> T:
    said = transport.run(fact.argv, sudo=fact.sudo, check=False, errors=fact.errors)
    return fact.parse(said.stdout)


@dataclass(frozen=True)
class DeployedRef:
    commit: str | None
    describe: str | None


# Git runs as the service user (its repo, config and hooks: see service_user.py); what it
# prints is that user's data, so only a commit id and a plain ref name are taken from it.
DEPLOYED_REF = (
    'git --no-pager -C "$1" rev-parse -q --verify HEAD 2>/dev/null || echo -; '
    'git --no-pager -C "$1" describe --tags --always 2>/dev/null || echo -'
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
    listed as unreadable (size -1), so the caller can say it was skipped. Names keep
    their exact bytes (surrogateescape): a file named in Latin-1 must reach tar as it is
    on disk. Encode them back with "surrogateescape"."""
    argv = ["find", directory, "-mindepth", "1"]
    argv += ["-maxdepth", str(depth)] if depth else []
    argv += ["-type", "f", "-name", pattern]
    listed = ["-printf", r"%P\0%s\0%T@\0"]
    if user:
        unreadable = ["-printf", r"%P\0-1\0%T@\0"]
        listed = ["(", "-readable", *listed, ")", "-o", *unreadable]
    argv += ["(", *listed, ")"]
    command = service_user.argv(user, argv) if user else tuple(argv)
    return Fact(command, parse_entries, sudo=True, errors="surrogateescape")


def parse_entries(stdout: str) -> list[RemoteEntry]:
    fields = stdout.split("\0")
    triples = zip(fields[0::3], fields[1::3], fields[2::3], strict=False)
    return sorted(
        (RemoteEntry(name, int(size), float(mtime)) for name, size, mtime in triples if name),
        key=lambda e: e.name,
    )


def has_command(name: str) -> Fact[bool]:
    return Fact(("sh", "-c", 'command -v "$1" >/dev/null && echo yes', "sh", name), _yes)


def is_file(path: str) -> Fact[bool]:
    return Fact(("sh", "-c", 'test -f "$1" && echo yes', "sh", path), _yes, sudo=True)


def _yes(stdout: str) -> bool:
    return stdout.strip() == "yes"
