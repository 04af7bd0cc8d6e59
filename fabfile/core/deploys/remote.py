"""What a deploy reads on the host (the checkout, the history) and how it appends history.

Git runs as the service user: the clone, its config and its hooks are that user's, so
root never runs them (service_user.py). Its output is that user's data: commit ids are
taken only when they are hex. `status` runs with --no-optional-locks, so reading never
rewrites the index.
"""

from __future__ import annotations

import getpass
import posixpath
import socket
from collections.abc import Sequence
from dataclasses import dataclass

from .. import service_user
from ..facts import COMMIT, ONE_IS_NONE, REF_NAME, Fact
from ..model import Layout
from ..transport import Transport
from .history import Entry, History, parse

_GIT = 'git --no-pager -C "$1"'
MAX_ANCESTRY = 1000


# Root's own record, outside every directory the service user can write: a history under
# layout.root could be swapped for a link that makes root append to any file.
HISTORY_DIR = "/var/lib/zachot-ops"
HISTORY = posixpath.join(HISTORY_DIR, "revisions.log")


@dataclass(frozen=True)
class RepoState:
    head: str | None
    tags: dict[str, tuple[str, ...]]  # commit -> tag names
    ancestry: tuple[str, ...]  # commits reachable from HEAD, newest first
    changed: int  # tracked files with local changes


def _as_service_user(layout: Layout, script: str, *args: str) -> tuple[str, ...]:
    return service_user.argv(layout, ("sh", "-c", script, "sh", layout.repo_dir, *args))


def repo_state(layout: Layout) -> Fact[RepoState]:
    # Every git's failure is the fact's (no pipe hides one); no commit yet is an empty HEAD.
    script = (
        '[ -e "$1/.git" ] || exit 0; '
        f"h=$({_GIT} rev-parse -q --verify HEAD){ONE_IS_NONE}; "
        'echo "head $h"; '
        f"c=$({_GIT} --no-optional-locks status --porcelain -uno) || exit; "
        'echo "changed $(printf "%s\\n" "$c" | grep -c .)"; '
        f'{_GIT} for-each-ref --format="tag %(objectname) %(*objectname) %(refname:strip=2)" '
        "refs/tags || exit; "
        '[ -n "$h" ] || exit 0; '
        f'a=$({_GIT} rev-list --max-count="$2" HEAD) || exit; '
        'printf "%s\\n" "$a" | sed "s/^/ancestor /"'
    )
    return Fact(_as_service_user(layout, script, str(MAX_ANCESTRY)), parse_repo_state, sudo=True)


def parse_repo_state(stdout: str) -> RepoState:
    head, changed = None, 0
    tags: dict[str, list[str]] = {}
    ancestry: list[str] = []
    for line in stdout.splitlines():
        kind, _, rest = line.partition(" ")
        if kind == "head" and COMMIT.fullmatch(rest.strip()):
            head = rest.strip()
        elif kind == "changed" and rest.strip().isdigit():
            changed = int(rest.strip())
        elif kind == "tag" and rest.count(" ") >= 2:
            target, peeled, name = rest.split(" ", 2)
            if not REF_NAME.fullmatch(name):
                continue  # not a name git makes: the service user's output, not a tag
            # Annotated tags point at a tag object; %(*objectname) is its commit.
            tags.setdefault(peeled or target, []).append(name)
        elif kind == "ancestor" and COMMIT.fullmatch(rest.strip()):
            ancestry.append(rest.strip())
    return RepoState(head, {c: tuple(sorted(n)) for c, n in tags.items()}, tuple(ancestry), changed)


def resolve(layout: Layout, ref: str) -> Fact[str | None]:
    """ref as a commit: a tag first, then origin's branch (not a stale local one), then
    anything git takes (a commit id). None when the clone does not have it."""
    script = (
        'for r in "refs/tags/$2" "refs/remotes/origin/$2" "$2"; do '
        f'{_GIT} rev-parse -q --verify --end-of-options "$r^{{commit}}" && exit 0'
        f"{ONE_IS_NONE}; done"  # 1: not this one; other codes: failures
    )
    return Fact(_as_service_user(layout, script, ref), parse_commit, sudo=True)


def parse_commit(stdout: str) -> str | None:
    first = (stdout.split() or [""])[0]
    return first if COMMIT.fullmatch(first) else None


def recent_commits(layout: Layout, commits: Sequence[str], count: int = 10) -> Fact[list[str]]:
    """`git log --oneline` over HEAD and the target, decorated with tags."""
    script = (
        'r=$1 n=$2; shift 2; git --no-pager -C "$r" log --no-color --oneline --decorate=short '
        '-n "$n" --end-of-options "$@" --'
    )
    argv = _as_service_user(layout, script, str(count), *commits)
    return Fact(argv, lambda out: [ln for ln in out.splitlines() if ln.strip()], sudo=True)


def blob_ids(layout: Layout, path: str, commits: Sequence[str]) -> Fact[list[str | None]]:
    """The git object id of path in each commit (None where it is absent), to compare."""
    script = (
        'r=$1 p=$2; shift 2; for c; do git --no-pager -C "$r" rev-parse -q --verify '
        '--end-of-options "$c:$p" || { e=$?; [ $e -eq 1 ] || exit $e; echo -; }; done'
    )
    return Fact(_as_service_user(layout, script, path, *commits), parse_blob_ids, sudo=True)


def parse_blob_ids(stdout: str) -> list[str | None]:
    return [ln.strip() if COMMIT.fullmatch(ln.strip()) else None for ln in stdout.splitlines()]


def read_history(transport: Transport, path: str) -> History:
    said = transport.run(["sh", "-c", '[ ! -e "$1" ] || cat -- "$1"', "sh", path], sudo=True)
    return parse(said.stdout)


def append_history(transport: Transport, path: str, entry: Entry) -> None:
    """One line, appended in one write (O_APPEND), root-owned 0644 in a root-owned directory
    under /var/lib (no one else can plant a link there); the line is an argument, never part
    of the script."""
    script = (
        'umask 022 && install -d -m 0755 -o root -g root -- "$1" && printf "%s\\n" "$3" >> "$2"'
    )
    argv = ["sh", "-c", script, "sh", posixpath.dirname(path), path, entry.line()]
    transport.run(argv, sudo=True)


def operator() -> str:
    try:
        user = getpass.getuser()
    except (OSError, KeyError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"
