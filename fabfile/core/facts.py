"""What is there on a host: each fact is a command plus a pure parser.

Parsers take the command's stdout and are tested against recorded output;
gather() is the only part that touches the transport.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

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


def deployed_ref(repo_dir: str) -> Fact[DeployedRef]:
    # safe.directory: root reading a repo owned by the service user is not "dubious" here.
    script = (
        'git -c safe.directory="$1" -C "$1" rev-parse HEAD 2>/dev/null || echo -; '
        'git -c safe.directory="$1" -C "$1" describe --tags --always 2>/dev/null || echo -'
    )
    return Fact(("sh", "-c", script, "sh", repo_dir), parse_deployed_ref, sudo=True)


def parse_deployed_ref(stdout: str) -> DeployedRef:
    lines = [ln.strip() for ln in stdout.splitlines()] + ["-", "-"]
    commit, describe = (None if v in ("", "-") else v for v in lines[:2])
    return DeployedRef(commit=commit, describe=describe)


@dataclass(frozen=True)
class RemoteEntry:
    name: str  # relative to the listed directory
    size: int
    mtime: float


def regular_files(directory: str, *, pattern: str = "*", depth: int | None = None) -> Fact:
    """Regular files only: symlinks are neither followed nor listed.

    Names keep their exact bytes (surrogateescape): a file named in Latin-1 must reach
    tar as it is on disk. Encode them back with "surrogateescape"."""
    argv = ["find", directory, "-mindepth", "1"]
    argv += ["-maxdepth", str(depth)] if depth else []
    argv += ["-type", "f", "-name", pattern, "-printf", r"%P\0%s\0%T@\0"]
    return Fact(tuple(argv), parse_entries, sudo=True, errors="surrogateescape")


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
