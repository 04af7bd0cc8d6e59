"""Steps every recovery is made of: stop, put files back (keeping the old ones), start."""

from __future__ import annotations

import hashlib
import posixpath
from dataclasses import dataclass
from pathlib import Path

from .. import services
from ..dramatiq_queues import QueueReport, jobs_across_a_stop, read_report
from ..facts import Fact
from ..manifest import FileRecord
from ..plan import Step
from ..redis_access import RedisUnavailable, open_redis
from ..store import BackupRef
from ..transport import RemoteFile
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
    """sha256 of a file and of the copies earlier restores kept beside it (links skipped);
    for comparisons only: _install asks the agent, which never follows a planted link."""
    script = (
        'for f in "$1" "$1".pre-restore.*; do if [ -f "$f" ] && [ ! -L "$f" ]; then '
        'sha256sum -- "$f" || exit; fi; done'
    )
    return Fact(("sh", "-c", script, "sh", path), parse_digests, sudo=True)


def parse_digests(stdout: str) -> dict[str, str]:
    pairs = (line.split(None, 1) for line in stdout.splitlines() if line.strip())
    return {path.strip(): sha for sha, path in pairs}


def _names(roles: tuple[str, ...]) -> str:
    return " and ".join(ROLE_NAMES[r] for r in roles)


def stop(ctx: RestoreContext, roles: tuple[str, ...]) -> Step:
    chosen = services.select(ctx.host, roles)
    # Redis stays up while the worker stops: count its jobs on both sides of the stop.
    count_jobs = "worker" in roles and "redis" not in roles

    def run() -> str:
        before = _jobs(ctx) if count_jobs else None
        said = services.stop(ctx.transport, chosen)
        after = _jobs(ctx) if before else None
        return f"{said}; {jobs_across_a_stop(before, after)}" if before and after else said

    return Step(
        f"stop-{'-'.join(roles)}",
        f"stop {_names(tuple(reversed(roles)))}",
        tuple(f"systemctl stop {s.unit}" for s in reversed(chosen))
        + (("count Dramatiq's jobs before and after (in flight, queued, delayed)",)
           if count_jobs else ()),
        run=run,
        done=lambda: set(services.states(ctx.transport, chosen).values()) <= {"inactive"},
    )  # fmt: skip


def _jobs(ctx: RestoreContext) -> QueueReport | None:
    """The queues' counts, or None when Redis does not answer: the stop goes on without."""
    dramatiq = ctx.host.dramatiq
    try:
        with open_redis(ctx.transport, timeout=5) as client:
            return read_report(client, dramatiq.namespace, dramatiq.queues)
    except RedisUnavailable:
        return None


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


def _right_owner(f: Install, found: RemoteFile) -> bool:
    return (found.mode, found.owner, found.group) == (f.mode, f.owner, f.group)


def _found(ctx: RestoreContext, f: Install) -> dict[str, RemoteFile]:
    # The agent skips a link an attacker planted (and a FIFO): it counts as no file.
    return ctx.transport.digests(f.remote, ".pre-restore.")


def _in_place(ctx: RestoreContext, f: Install) -> bool:
    current = _found(ctx, f).get(f.remote)
    return current is not None and current.sha256 == f.sha256 and _right_owner(f, current)


def _install(ctx: RestoreContext, files: list[Install]) -> str:
    kept, pushed, fixed = [], [], []
    for f in files:
        found = _found(ctx, f)
        current = found.get(f.remote)
        if current is not None and current.sha256 == f.sha256:
            # Right bytes, maybe wrong mode or owner (an env file chmod'ed 644).
            if not _right_owner(f, current):
                ctx.transport.set_owner(f.remote, mode=f.mode, owner=f.owner, group=f.group)
                fixed.append(f.remote)
            continue
        already_kept = current is not None and current.sha256 in (
            r.sha256 for path, r in found.items() if path != f.remote
        )
        if current is not None and not already_kept:
            # O_EXCL|O_NOFOLLOW, 0600, the old file's owner; a failed copy is removed, so a
            # half copy (disk full) never passes for the old file.
            copy = f"{f.remote}.pre-restore.{ctx.stamp}"
            ctx.transport.copy_file(f.remote, copy)
            kept.append(copy)
        # 0750, made at its parent's fd: never by a path the service user could redirect.
        parent = posixpath.dirname(f.remote)
        ctx.transport.make_dir(parent, mode=0o750, owner=f.owner, group=f.group)
        ctx.transport.push(f.local, f.remote, mode=f.mode, owner=f.owner, group=f.group, sudo=True)
        pushed.append(f.remote)
    said = f"pushed {len(pushed)} file(s)"
    said += f"; fixed mode/owner of {', '.join(fixed)}" if fixed else ""
    return said + (f"; kept {', '.join(kept)}" if kept else "")
