"""What a deploy reads on the host (the checkout, the history) and how it appends history.

Git is read as root with safe.directory, as the clone belongs to the service user,
and never in a way that writes: `status` runs with --no-optional-locks, so it
does not refresh the index (which would leave it owned by root).
"""

from __future__ import annotations

import getpass
import posixpath
import re
import socket
from collections.abc import Sequence
from dataclasses import dataclass

from ..facts import Fact
from ..model import Layout
from ..transport import Transport
from .history import Entry, History, parse

_GIT = 'git -c safe.directory="$1" -C "$1"'
_COMMIT = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}", re.ASCII)
MAX_ANCESTRY = 1000


def history_path(layout: Layout) -> str:
    return posixpath.join(layout.root, "deploy", "revisions.log")


@dataclass(frozen=True)
class RepoState:
    head: str | None
    tags: dict[str, tuple[str, ...]]  # commit -> tag names
    ancestry: tuple[str, ...]  # commits reachable from HEAD, newest first
    changed: int  # tracked files with local changes


def repo_state(repo_dir: str) -> Fact[RepoState]:
    script = (
        '[ -e "$1/.git" ] || exit 0; '
        f'echo "head $({_GIT} rev-parse -q --verify HEAD)"; '
        f'echo "changed $({_GIT} --no-optional-locks status --porcelain -uno | wc -l)"; '
        f'{_GIT} for-each-ref --format="tag %(objectname) %(*objectname) %(refname:strip=2)" '
        "refs/tags; "
        f'{_GIT} rev-list --max-count="$2" HEAD | sed "s/^/ancestor /"'
    )
    argv = ("sh", "-c", script, "sh", repo_dir, str(MAX_ANCESTRY))
    return Fact(argv, parse_repo_state, sudo=True)


def parse_repo_state(stdout: str) -> RepoState:
    head, changed = None, 0
    tags: dict[str, list[str]] = {}
    ancestry: list[str] = []
    for line in stdout.splitlines():
        kind, _, rest = line.partition(" ")
        if kind == "head" and _COMMIT.fullmatch(rest.strip()):
            head = rest.strip()
        elif kind == "changed" and rest.strip().isdigit():
            changed = int(rest.strip())
        elif kind == "tag" and rest.count(" ") >= 2:
            target, peeled, name = rest.split(" ", 2)
            # Annotated tags point at a tag object; %(*objectname) is its commit.
            tags.setdefault(peeled or target, []).append(name)
        elif kind == "ancestor" and _COMMIT.fullmatch(rest.strip()):
            ancestry.append(rest.strip())
    return RepoState(head, {c: tuple(sorted(n)) for c, n in tags.items()}, tuple(ancestry), changed)


def resolve(repo_dir: str, ref: str) -> Fact[str | None]:
    """ref as a commit: a tag first, then origin's branch (not a stale local one), then
    anything git takes (a commit id). None when the clone does not have it."""
    script = (
        'for r in "refs/tags/$2" "refs/remotes/origin/$2" "$2"; do '
        f'{_GIT} rev-parse -q --verify --end-of-options "$r^{{commit}}" && exit 0; done; true'
    )
    return Fact(("sh", "-c", script, "sh", repo_dir, ref), parse_commit, sudo=True)


def parse_commit(stdout: str) -> str | None:
    first = (stdout.split() or [""])[0]
    return first if _COMMIT.fullmatch(first) else None


def recent_commits(repo_dir: str, commits: Sequence[str], count: int = 10) -> Fact[list[str]]:
    """`git log --oneline` over HEAD and the target, decorated with tags."""
    script = (
        'r=$1 n=$2; shift 2; git -c safe.directory="$r" -C "$r" log --no-color --oneline '
        '--decorate=short -n "$n" --end-of-options "$@" --'
    )
    argv = ("sh", "-c", script, "sh", repo_dir, str(count), *commits)
    return Fact(argv, lambda out: [ln for ln in out.splitlines() if ln.strip()], sudo=True)


def blob_ids(repo_dir: str, path: str, commits: Sequence[str]) -> Fact[list[str | None]]:
    """The git object id of path in each commit (None where it is absent), to compare."""
    script = (
        'r=$1 p=$2; shift 2; for c; do git -c safe.directory="$r" -C "$r" '
        'rev-parse -q --verify --end-of-options "$c:$p" || echo -; done'
    )
    argv = ("sh", "-c", script, "sh", repo_dir, path, *commits)
    return Fact(argv, parse_blob_ids, sudo=True)


def parse_blob_ids(stdout: str) -> list[str | None]:
    return [None if ln.strip() == "-" else ln.strip() for ln in stdout.splitlines()]


def read_history(transport: Transport, path: str) -> History:
    said = transport.run(["sh", "-c", '[ ! -e "$1" ] || cat -- "$1"', "sh", path], sudo=True)
    return parse(said.stdout)


def append_history(transport: Transport, path: str, entry: Entry) -> None:
    """One line, appended in one write (O_APPEND), root-owned 0644; the line is an
    argument, never part of the script."""
    script = 'umask 022 && mkdir -p -- "$1" && printf "%s\\n" "$3" >> "$2"'
    argv = ["sh", "-c", script, "sh", posixpath.dirname(path), path, entry.line()]
    transport.run(argv, sudo=True)


def operator() -> str:
    try:
        user = getpass.getuser()
    except (OSError, KeyError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"
