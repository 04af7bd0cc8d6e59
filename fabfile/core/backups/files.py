"""Pull a set of remote files into one new backup, keeping no duplicate bytes.

env and units are both "these files, as they are"; only what they record in
the manifest differs. A file whose sha256 matches one already in the store is
recorded as a reference to that backup (stored_in) and its bytes are dropped.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..store import BackupRef
from .context import BackupContext, record_for


@dataclass(frozen=True)
class Wanted:
    name: str  # the file's name in the store
    source: str  # absolute path on the server


@dataclass(frozen=True)
class FilesBackup:
    ref: BackupRef
    new: tuple[str, ...]  # names whose bytes this backup holds
    unchanged: dict[str, str]  # name -> id of the backup that holds the same bytes


def pull_files(
    ctx: BackupContext,
    kind: str,
    wanted: Sequence[Wanted],
    *,
    describe: Callable[[dict[str, bytes]], dict[str, Any]] = lambda contents: {},
) -> FilesBackup:
    """Pull every wanted file; commit the backup only if all of them arrived."""
    host = ctx.host.name
    new: list[str] = []
    unchanged: dict[str, str] = {}
    with ctx.store.begin(host, kind, now=ctx.now) as staged:
        contents: dict[str, bytes] = {}
        for item in wanted:
            target = staged.target(item.name)
            remote = ctx.transport.pull(item.source, target, sudo=True, label=item.source)
            contents[item.name] = target.read_bytes()
            held_by = ctx.store.find_by_sha256(host, kind, item.name, remote.sha256)
            if held_by is None:
                staged.add(record_for(item.name, remote))
                new.append(item.name)
            else:
                target.unlink()
                staged.add(record_for(item.name, remote, stored_in=held_by.id))
                unchanged[item.name] = held_by.id
        staged.meta.update(describe(contents))
        staged.meta["deployed"] = ctx.deployed()
        ref = staged.commit()
    return FilesBackup(ref=ref, new=tuple(new), unchanged=unchanged)


def summary(result: FilesBackup) -> str:
    if not result.new:
        holders = sorted(set(result.unchanged.values()))
        return f"{result.ref.id}: unchanged, content held by {', '.join(holders)}"
    return f"{result.ref.id}: {len(result.new)} new, {len(result.unchanged)} unchanged"
