"""Pull a set of remote files into one new backup, keeping no duplicate bytes.

env and units are both "these files, as they are"; only what they record in
the manifest differs. A file whose sha256 matches one already in the store is
recorded as a reference to that backup (stored_in) and its bytes are dropped.
With age recipients (env, redis), files are stored encrypted as ``<name>.age``; the
plaintext only passes through a 0600 scratch file that is gone before commit.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from .. import crypto
from ..manifest import FileRecord
from ..store import BackupRef, StagedBackup
from ..transport import PulledFile, RemoteFile
from .context import BackupContext, record_for


@dataclass(frozen=True)
class Wanted:
    name: str  # the file's name in the store
    source: str  # absolute path on the server
    small: bool = False  # a config file: refuse one over the agent's size cap


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
    fetched: Mapping[str, PulledFile] | None = None,
) -> FilesBackup:
    """Pull every wanted file; commit the backup only if all of them arrived.

    `fetched` holds files already pulled in one round trip (small ones, e.g. units).
    """
    host = ctx.host.name
    recipients = crypto.recipients_for(ctx.host, kind)
    new: list[str] = []
    unchanged: dict[str, str] = {}
    with ctx.store.begin(host, kind, now=ctx.now) as staged:
        contents: dict[str, bytes] = {}
        for item in wanted:
            name = crypto.stored_name(item.name, encrypted=bool(recipients))
            if fetched is not None:
                remote, contents[item.name] = _place(staged, fetched[item.source], name, recipients)
            else:
                remote, contents[item.name] = _pull(
                    ctx, staged, item, name, encrypted=bool(recipients)
                )
            held_by = _holder(ctx, kind, name, remote.sha256, recipients)
            if held_by is None:
                staged.add(_store_new(staged, name, remote, contents[item.name], recipients))
                new.append(item.name)
            else:
                staged.target(name).unlink(missing_ok=True)
                staged.add(_reference(held_by, name, remote))
                unchanged[item.name] = held_by.id
        staged.meta.update(describe(contents))
        if recipients:
            staged.meta.update(crypto.encryption_meta(recipients))
        staged.meta["deployed"] = ctx.deployed()
        ref = staged.commit()
    return FilesBackup(ref=ref, new=tuple(new), unchanged=unchanged)


def _pull(
    ctx: BackupContext, staged: StagedBackup, item: Wanted, name: str, *, encrypted: bool
) -> tuple[RemoteFile, bytes]:
    """Pull one file: straight to its place, or (encrypted) through a scratch file."""
    target = staged.target(name)
    if not encrypted:
        remote = ctx.transport.pull(
            item.source, target, sudo=True, label=item.source, small=item.small
        )
        return remote, target.read_bytes()
    scratch = staged.path / f".plain-{secrets.token_hex(8)}"
    try:
        remote = ctx.transport.pull(
            item.source, scratch, sudo=True, label=item.source, small=item.small
        )
        return remote, scratch.read_bytes()
    finally:
        scratch.unlink(missing_ok=True)


def _place(
    staged: StagedBackup, pulled: PulledFile, name: str, recipients: Sequence[str]
) -> tuple[RemoteFile, bytes]:
    """A file pulled with others: its bytes go to their place (encrypted ones later)."""
    if not recipients:
        fd = os.open(staged.target(name), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(pulled.data)
            out.flush()
            os.fsync(out.fileno())
    return pulled.remote, pulled.data


def _store_new(
    staged: StagedBackup, name: str, remote: RemoteFile, plaintext: bytes, recipients: Sequence[str]
) -> FileRecord:
    record = record_for(name, remote)
    if not recipients:
        return record
    size, digest = crypto.write_encrypted(staged.target(name), plaintext, recipients)
    return replace(record, size=size, ciphertext_sha256=digest)


def _holder(
    ctx: BackupContext, kind: str, name: str, sha256: str, recipients: Sequence[str]
) -> BackupRef | None:
    """The backup already holding this content; an encrypted one only if to the same keys."""
    held_by = ctx.store.find_by_sha256(ctx.host.name, kind, name, sha256)
    if held_by and recipients and not crypto.same_recipients(held_by.manifest.meta, recipients):
        return None  # keys changed: store a copy the new keys can open
    return held_by


def _reference(held_by: BackupRef, name: str, remote: RemoteFile) -> FileRecord:
    # Size and ciphertext hash are the holder's: they describe the bytes it holds.
    held = held_by.manifest.file(name)
    return replace(
        record_for(name, remote, stored_in=held_by.id),
        size=held.size,
        ciphertext_sha256=held.ciphertext_sha256,
    )


def summary(result: FilesBackup) -> str:
    if not result.new:
        holders = sorted(set(result.unchanged.values()))
        return f"{result.ref.id}: unchanged, content held by {', '.join(holders)}"
    return f"{result.ref.id}: {len(result.new)} new, {len(result.unchanged)} unchanged"
