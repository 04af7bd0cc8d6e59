"""Steps every recovery is made of: stop, put files back (keeping the old ones), start."""

from __future__ import annotations

import hashlib
import posixpath
from dataclasses import dataclass
from pathlib import Path

from .. import services
from ..facts import Fact, gather
from ..manifest import FileRecord
from ..plan import Step
from ..store import BackupRef
from .context import RestoreContext

ROLE_NAMES = {"redis": "Redis", "worker": "worker", "api": "API"}


@dataclass(frozen=True)
class Install:
    local: Path
    remote: str
    sha256: str
    mode: int
    owner: str
    group: str


def from_backup(
    ctx: RestoreContext,
    ref: BackupRef,
    record: FileRecord,
    remote: str,
    *,
    mode: int,
    owner: str,
    group: str,
) -> Install:
    """A backed-up file as it must land. Its sha256 is that of the bytes pushed: the
    manifest's, unless a forced restore uses a file that no longer matches it."""
    local = ctx.plaintext(ref, record)
    sha256 = hashlib.sha256(local.read_bytes()).hexdigest()
    return Install(local, remote, sha256, mode, owner, group)


def digests(path: str) -> Fact[dict[str, str]]:
    """sha256 of a file and of the copies earlier restores kept beside it."""
    script = 'for f in "$1" "$1".pre-restore.*; do [ -f "$f" ] && sha256sum -- "$f"; done; true'
    return Fact(("sh", "-c", script, "sh", path), parse_digests, sudo=True)


def parse_digests(stdout: str) -> dict[str, str]:
    pairs = (line.split(None, 1) for line in stdout.splitlines() if line.strip())
    return {path.strip(): sha for sha, path in pairs}


def ownership(path: str) -> Fact[tuple[int, str, str] | None]:
    """Mode, owner and group of a file; None when it is absent."""
    script = 'test -f "$1" && stat -c "%a %U %G" -- "$1"; true'
    return Fact(("sh", "-c", script, "sh", path), parse_ownership, sudo=True)


def parse_ownership(stdout: str) -> tuple[int, str, str] | None:
    fields = stdout.split()
    return (int(fields[0], 8), fields[1], fields[2]) if len(fields) == 3 else None


def _names(roles: tuple[str, ...]) -> str:
    return " and ".join(ROLE_NAMES[r] for r in roles)


def stop(ctx: RestoreContext, roles: tuple[str, ...]) -> Step:
    chosen = services.select(ctx.host, roles)
    return Step(
        f"stop-{'-'.join(roles)}",
        f"stop {_names(tuple(reversed(roles)))}",
        tuple(f"systemctl stop {s.unit}" for s in reversed(chosen)),
        run=lambda: services.stop(ctx.transport, chosen),
        done=lambda: set(services.states(ctx.transport, chosen).values()) <= {"inactive"},
    )


def start(ctx: RestoreContext, roles: tuple[str, ...]) -> Step:
    chosen = services.select(ctx.host, roles)
    return Step(
        f"start-{'-'.join(roles)}",
        f"start {_names(roles)} and wait for health",
        tuple(f"systemctl start {s.unit}, then gate on its health check" for s in chosen),
        run=lambda: services.start(ctx.transport, chosen, timeout=ctx.health_timeout),
    )


def install(ctx: RestoreContext, title: str, files: list[Install]) -> Step:
    """Keep each current file as <path>.pre-restore.<stamp>, then push the backup in."""
    actions = []
    for f in files:
        actions.append(f"keep {f.remote} as {f.remote}.pre-restore.{ctx.stamp} if it differs")
        actions.append(f"push {f.remote} atomically ({f.mode:04o} {f.owner}:{f.group})")
    return Step(
        "install",
        title,
        tuple(actions),
        run=lambda: _install(ctx, files),
        done=lambda: all(_in_place(ctx, f) for f in files),
    )


def _wanted_ownership(f: Install) -> tuple[int, str, str]:
    return (f.mode, f.owner, f.group)


def _in_place(ctx: RestoreContext, f: Install) -> bool:
    same = gather(ctx.transport, digests(f.remote)).get(f.remote) == f.sha256
    return same and gather(ctx.transport, ownership(f.remote)) == _wanted_ownership(f)


def _install(ctx: RestoreContext, files: list[Install]) -> str:
    kept, pushed, fixed = [], [], []
    for f in files:
        found = gather(ctx.transport, digests(f.remote))
        current = found.get(f.remote)
        if current == f.sha256:
            # Right bytes, maybe wrong mode or owner (an env file chmod'ed 644).
            if gather(ctx.transport, ownership(f.remote)) != _wanted_ownership(f):
                _set_ownership(ctx, f)
                fixed.append(f.remote)
            continue
        already_kept = current is not None and current in (
            sha for path, sha in found.items() if path != f.remote
        )
        if current is not None and not already_kept:
            copy = f"{f.remote}.pre-restore.{ctx.stamp}"
            # A copy that failed (disk full) would pass for the old file; remove it. Not
            # cp -p: with umask 077 the copy is private even if the old file was not.
            script = (
                'umask 077 && { cp --preserve=ownership,timestamps -- "$1" "$2" '
                '|| { rm -f -- "$2"; exit 1; }; }'
            )
            ctx.transport.run(["sh", "-c", script, "sh", f.remote, copy], sudo=True)
            kept.append(copy)
        _ensure_parent(ctx, f)
        ctx.transport.push(f.local, f.remote, mode=f.mode, owner=f.owner, group=f.group, sudo=True)
        pushed.append(f.remote)
    said = f"pushed {len(pushed)} file(s)"
    said += f"; fixed mode/owner of {', '.join(fixed)}" if fixed else ""
    return said + (f"; kept {', '.join(kept)}" if kept else "")


def _set_ownership(ctx: RestoreContext, f: Install) -> None:
    script = 'chown -- "$2:$3" "$1" && chmod -- "$4" "$1"'
    argv = ["sh", "-c", script, "sh", f.remote, f.owner, f.group, f"{f.mode:o}"]
    ctx.transport.run(argv, sudo=True)


def _ensure_parent(ctx: RestoreContext, f: Install) -> None:
    parent = posixpath.dirname(f.remote)
    script = 'test -d "$1" || install -d -m 0750 -o "$2" -g "$3" -- "$1"'
    ctx.transport.run(["sh", "-c", script, "sh", parent, f.owner, f.group], sudo=True)
