"""backup.logs: stream a tar of the logs directory; send only what the store lacks.

Nothing is staged on the server: tar writes to the SSH channel. Rotated logs
never change, so a file whose size and mtime are already in the store's index
is not sent again, even when logrotate has renamed it (api.log.1 -> .2.gz keeps
both). The manifest's index says, for every file on the server, which backup's
archive holds it.
"""

from __future__ import annotations

from dataclasses import dataclass

from .. import crypto, facts, service_user
from ..manifest import FileRecord
from ..plan import Step
from .context import BackupContext

COMPRESSORS = (("zstd", "zstd -1 -T0", "logs.tar.zst"), ("gzip", "gzip -1", "logs.tar.gz"))


@dataclass(frozen=True)
class IndexEntry:
    path: str
    size: int
    mtime: float
    archive: str  # backup id whose archive holds the file
    member: str  # its name in that archive

    def as_meta(self) -> dict[str, object]:
        return self.__dict__.copy()


def split_new(
    entries: list[facts.RemoteEntry], previous: list[IndexEntry], *, full: bool
) -> tuple[list[facts.RemoteEntry], list[IndexEntry]]:
    """Which files to send, and which are already held (re-indexed under today's name)."""
    if full:
        return entries, []
    held = {(e.size, e.mtime): e for e in previous}
    send: list[facts.RemoteEntry] = []
    kept: list[IndexEntry] = []
    for entry in entries:
        old = held.get((entry.size, entry.mtime))
        if old is None:
            send.append(entry)
        else:
            kept.append(IndexEntry(entry.name, entry.size, entry.mtime, old.archive, old.member))
    return send, kept


def previous_index(ctx: BackupContext) -> list[IndexEntry]:
    latest = ctx.store.latest(ctx.host.name, "logs")
    if latest is None:
        return []
    return [IndexEntry(**item) for item in latest.manifest.meta.get("index", [])]


def step(ctx: BackupContext, *, full: bool) -> Step:
    logs_dir = ctx.host.layout.logs_dir
    how = "every file" if full else "only files the store does not hold yet"
    return Step(
        "logs",
        "back up the logs",
        (
            f"list regular files under {logs_dir} as {ctx.host.layout.service_user} "
            "(symlinks are not followed; files it cannot read are skipped)",
            f"stream tar | zstd -1 (gzip -1 without zstd) of {how} to the store, tar run as "
            f"{ctx.host.layout.service_user}",
        ),
        run=lambda: run(ctx, full=full),
    )


def run(ctx: BackupContext, *, full: bool) -> str:
    # Listed and read as the service user, who owns the logs: a link or a hard link to a
    # root-only file, or a directory swapped for a link mid-walk, reads nothing it could not.
    layout = ctx.host.layout
    listed = facts.gather(ctx.transport, facts.regular_files(layout.logs_dir, user=layout))
    entries = [e for e in listed if e.readable]
    skipped = [e.name for e in listed if not e.readable]
    send, kept = split_new(entries, previous_index(ctx), full=full)
    with ctx.store.begin(ctx.host.name, "logs", now=ctx.now) as staged:
        index = list(kept)
        if send:
            archive = _stream_archive(ctx, staged, send)
            index += [IndexEntry(e.name, e.size, e.mtime, staged.id, e.name) for e in send]
            staged.meta["archive"] = archive
        staged.meta["index"] = [e.as_meta() for e in sorted(index, key=lambda e: e.path)]
        staged.meta["full"] = full
        ref = staged.commit()
    sent = sum(e.size for e in send)
    said = f"{ref.id}: sent {len(send)} files ({sent} bytes raw), {len(kept)} already held"
    if skipped:
        said += f"; skipped {len(skipped)} {layout.service_user} cannot read: {', '.join(skipped)}"
    return said


def _stream_archive(ctx: BackupContext, staged, send: list[facts.RemoteEntry]) -> str:
    compressor, name = _compressor(ctx)
    argv = service_user.argv(ctx.host.layout, [
        # No -h: links are archived as links, never followed.
        "tar", "--create", "--file=-", f"--directory={ctx.host.layout.logs_dir}",
        f"--use-compress-program={compressor}",
        # Positional: --null and --no-recursion must come before --files-from.
        "--null", "--no-recursion", "--files-from=-",
    ])  # fmt: skip
    names = b"".join(e.name.encode("utf-8", "surrogateescape") + b"\0" for e in send)
    target = staged.target(name)
    result = ctx.transport.pull_stream(argv, target, sudo=True, label="logs", stdin=names)
    record = FileRecord(
        name=name,
        sha256=result.sha256,
        size=result.size,
        source=ctx.host.layout.logs_dir,
        mode=0o600,
        owner="",
        group="",
        mtime=ctx.now.timestamp(),
    )
    # With age recipients the archive is stored encrypted, like every kind.
    record = crypto.seal(staged, record, crypto.recipients_for(ctx.host, "logs"))
    staged.add(record)
    return record.name


def _compressor(ctx: BackupContext) -> tuple[str, str]:
    for program, command, name in COMPRESSORS:
        if facts.gather(ctx.transport, facts.has_command(program)):
            return command, name
    return "cat", "logs.tar"
