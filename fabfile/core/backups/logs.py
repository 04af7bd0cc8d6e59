"""backup.logs: stream a tar of the logs directory; send only what the store lacks.

Nothing is staged on the server: tar writes to the SSH channel. Rotated logs
never change, so a file whose size and mtime are already in the store's index
is not sent again, even when logrotate has renamed it (api.log.1 -> .2.gz keeps
both). The manifest's index says, for every file on the server, which backup's
archive holds it.

The logs are live: written, rotated and compressed while tar walks them. What tar
captured is read from its own listing (tar_report.py), so the index records the
size tar stored, not the size listed a moment before; files rotated away or truncated
mid-read are recorded with the reason (meta "skipped", "partial", "grew").
"""

from __future__ import annotations

from contextlib import suppress
from dataclasses import dataclass, field

from .. import crypto, facts, service_user
from ..errors import TransferError
from ..manifest import FileRecord
from ..plan import Step
from ..store import StagedBackup
from ..transport import LaterInput, StreamResult
from . import tar_report
from .context import BackupContext

# tar starts before anything is known of the box, so the box picks the compressor (zstd, else
# gzip, else none) and the archive is named by its first bytes. One thread: zstd -T0 holds
# its output back for a whole job, and the link, not the compressor, sets the pace.
# tar exits 1 when a live log grows under it: the wrapper always exits 0 (so the stream is
# kept) and reports tar's status last, which tar_report weighs with the warnings.
WRAPPER = (
    'z=cat; for c in "gzip -1" "zstd -1"; do command -v "${c% *}" >/dev/null && z=$c; done; '
    't=$1; shift; LC_ALL=C "$t" --use-compress-program="$z" "$@"; '
    f'echo "{tar_report.EXIT_MARK}$?" >&2'
)
UNNAMED = "logs.tar"  # the archive as it arrives, before its first bytes name it
MAGIC = ((b"\x28\xb5\x2f\xfd", "logs.tar.zst"), (b"\x1f\x8b", "logs.tar.gz"))


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
    user = ctx.host.layout.service_user
    return Step(
        "logs",
        "back up the logs",
        (
            f"list regular files under {logs_dir} as {user} "
            "(symlinks are not followed; files it cannot read are skipped)",
            f"beside the listing, start tar as {user}, waiting for its file list; then stream "
            f"tar | zstd -1 (gzip -1 without zstd) of {how} to the store",
            "record what tar stored: a log written meanwhile up to the size tar saw, one "
            "rotated away before tar reached it as skipped, with the reason",
        ),
        run=lambda: run(ctx, full=full),
    )


def run(ctx: BackupContext, *, full: bool) -> str:
    # Listed and read as the service user, who owns the logs: a link or a hard link to a
    # root-only file, or a directory swapped for a link mid-walk, reads nothing it could not.
    layout = ctx.host.layout
    with ctx.store.begin(ctx.host.name, "logs", now=ctx.now) as staged:
        # tar's exchange (and the box's sudo, python and tar start-up) runs beside the
        # listing and waits for the names: on a far link that is a round trip and more saved.
        names = LaterInput()
        streaming = ctx.transport.background(lambda: _stream(ctx, staged, names))
        try:
            listed = facts.gather(ctx.transport, facts.regular_files(layout.logs_dir, user=layout))
            entries = [e for e in listed if e.readable]
            send, kept = split_new(entries, previous_index(ctx), full=full)
        except BaseException:
            names.give(b"")  # tar archives nothing and ends; the listing's error is the one
            with suppress(Exception):
                streaming.result()
            raise
        asked = [e.name.encode("utf-8", "surrogateescape") for e in send]
        names.give(b"".join(n + b"\0" for n in asked))
        pulled, stored = streaming.result()
        skipped = {e.name: f"{layout.service_user} cannot read" for e in listed if not e.readable}
        index = list(kept)
        outcome = Outcome()
        if send:
            staged.meta["archive"], report = _keep(ctx, staged, pulled, stored, asked)
            outcome = captured(ctx, send, report, staged.id)
            index += outcome.index
        else:
            stored.path.unlink()  # an empty tar: nothing was new
        skipped |= outcome.skipped
        staged.meta["index"] = [e.as_meta() for e in sorted(index, key=lambda e: e.path)]
        staged.meta["full"] = full
        # What the live walk met: files cut where tar stat'ed them, gone, or damaged.
        staged.meta["grew"] = sorted(outcome.grew)
        staged.meta["skipped"] = _reasons(skipped)
        staged.meta["partial"] = _reasons(outcome.partial)
        ref = staged.commit()
    return _summary(ref.id, outcome, len(kept), skipped)


@dataclass
class Outcome:
    """What one archive holds, by the names the listing gave."""

    index: list[IndexEntry] = field(default_factory=list)
    grew: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    partial: dict[str, str] = field(default_factory=dict)


def captured(
    ctx: BackupContext, send: list[facts.RemoteEntry], report: tar_report.TarReport, archive: str
) -> Outcome:
    """Index what tar really archived, at the size and mtime it saw; fail on anything else.

    A file that grew is indexed at the size tar stored (a prefix of an append-only log),
    one rotated away is skipped with the reason, one truncated mid-read is archived
    zero-padded and not indexed. Any other complaint means a promised file is missing."""
    if not report.ok:
        raise TransferError(
            f"{ctx.host.name}: logs: {report.problems[0]}; the backup was not kept, run it again"
        )
    out = Outcome()
    for entry in send:
        key = entry.name.encode("utf-8", "surrogateescape")
        if key in report.skipped:
            out.skipped[entry.name] = report.skipped[key]
        elif key in report.partial:
            out.partial[entry.name] = report.partial[key]
        elif (got := report.captured.get(key)) is None:
            raise TransferError(
                f"{ctx.host.name}: logs: tar did not archive {entry.name!r} and said nothing; "
                "the backup was not kept, run it again"
            )
        else:
            same = got.size == entry.size and abs(got.mtime - entry.mtime) < 1e-6
            size, mtime = (entry.size, entry.mtime) if same else (got.size, got.mtime)
            out.index.append(IndexEntry(entry.name, size, mtime, archive, entry.name))
            if key in report.grew or not same:
                out.grew.append(entry.name)
    return out


def _reasons(found: dict[str, str]) -> list[dict[str, str]]:
    return [{"path": name, "reason": why} for name, why in sorted(found.items())]


def _summary(backup_id: str, outcome: Outcome, held: int, skipped: dict[str, str]) -> str:
    sent = sum(e.size for e in outcome.index)
    said = f"{backup_id}: sent {len(outcome.index)} files ({sent} bytes raw), {held} already held"
    if outcome.grew:
        said += f"; {len(outcome.grew)} changed while read, kept as tar saw them"
    forms = (("skipped {n} {why}", skipped), ("{n} {why}, not indexed", outcome.partial))
    for form, found in forms:
        by_reason: dict[str, list[str]] = {}
        for name, why in sorted(found.items()):
            by_reason.setdefault(why, []).append(name)
        for why, names in by_reason.items():
            said += "; " + form.format(n=len(names), why=why) + ": " + ", ".join(names)
    return said


def _stream(
    ctx: BackupContext, staged: StagedBackup, names: LaterInput
) -> tuple[StreamResult, crypto.StoredStream]:
    """tar of the names given later (NUL-separated on stdin) into the staged UNNAMED file,
    age-encrypted as it arrives when the host has recipients, like every kind."""
    tar = [
        # No -h: links are archived as links, never followed.
        "tar", "--create", "--file=-", f"--directory={ctx.host.layout.logs_dir}",
        *tar_report.TAR_FLAGS,
        # Positional: --null and --no-recursion must come before --files-from.
        "--null", "--no-recursion", "--files-from=-",
    ]  # fmt: skip
    argv = service_user.argv(ctx.host.layout, ["sh", "-c", WRAPPER, "sh", *tar])
    recipients = crypto.recipients_for(ctx.host, "logs")
    with crypto.stored_stream(staged.target(UNNAMED), recipients) as stored:
        pulled = ctx.transport.stream_to(
            argv, stored.write, where=stored.path, sudo=True, label="logs", stdin=names
        )
    return pulled, stored


def _keep(
    ctx: BackupContext,
    staged: StagedBackup,
    pulled: StreamResult,
    stored: crypto.StoredStream,
    asked: list[bytes],
) -> tuple[str, tar_report.TarReport]:
    """Name the archive by its compression, record it and read what tar said it stored."""
    plain = FileRecord(
        name=archive_name(stored.head),
        sha256=pulled.sha256,
        size=pulled.size,
        source=ctx.host.layout.logs_dir,
        mode=0o600,
        owner="",
        group="",
        mtime=ctx.now.timestamp(),
    )
    record = stored.record(plain)
    stored.path.rename(staged.target(record.name))
    if stored.encrypted:
        staged.meta.update(crypto.encryption_meta(stored.recipients))
    staged.add(record)
    return record.name, tar_report.parse(pulled.stderr, asked)


def archive_name(head: bytes) -> str:
    """logs.tar.zst, logs.tar.gz or logs.tar, by the compressor's magic number."""
    return next((name for magic, name in MAGIC if head.startswith(magic)), UNNAMED)
