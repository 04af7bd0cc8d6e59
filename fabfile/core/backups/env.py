"""backup.env: the env file into the store and beside it on the server (runbook §1)."""

from __future__ import annotations

import posixpath

from .. import crypto, output, secrets
from ..plan import Step
from .context import BackupContext
from .files import Wanted, pull_files, summary

NAME = "zachot.env"


def server_copy_path(ctx: BackupContext) -> str:
    return posixpath.join(ctx.host.layout.backup_dir, f"{NAME}.{ctx.server_stamp}")


def step(ctx: BackupContext) -> Step:
    layout = ctx.host.layout
    recipients = crypto.recipients_for(ctx.host, "env")
    stored = crypto.stored_name(NAME, encrypted=bool(recipients))
    how = f"age-encrypted to {len(recipients)} recipient(s)" if recipients else "0600"
    return Step(
        name="env",
        title="back up the env file",
        actions=(
            f"read {layout.env_file} with sudo, streamed (no copy left on the server)",
            f"store it as {ctx.store.root}/{ctx.host.name}/env/<new id>/{stored} ({how})",
            f"copy it on the server to {server_copy_path(ctx)} (0600), unless the newest "
            "copy there is the same",
            "record key names (never values) and the deployed commit",
        ),
        run=lambda: run(ctx),
    )


def run(ctx: BackupContext) -> str:
    required = ctx.host.layout.required_env_keys

    def describe(contents: dict[str, bytes]) -> dict[str, object]:
        parsed = secrets.parse_env(contents[NAME], required)
        return {"keys": list(parsed.keys), "missing_required": list(parsed.missing)}

    result = pull_files(ctx, "env", [Wanted(NAME, ctx.host.layout.env_file)], describe=describe)
    missing = result.ref.manifest.meta["missing_required"]
    if missing:
        output.warn(f"{ctx.host.name}: env file lacks required keys: {', '.join(missing)}")
    # Asked of the server, not the store: a copy that failed (disk full) is made by
    # the next run even though the store already holds this content.
    copy_on_server(ctx)
    return summary(result)


def copy_on_server(ctx: BackupContext) -> None:
    # umask 077 and no --preserve=mode: the copy is 0600 from the moment it exists, even
    # when the env file itself is world-readable (cp -p would copy that); a failed copy is
    # removed.
    script = (
        'umask 077 && mkdir -p -- "$2" && newest= && '
        'for f in "$2/$4".[0-9]*; do [ -f "$f" ] && newest=$f; done; '
        '[ -n "$newest" ] && cmp -s -- "$1" "$newest" && exit 0; '
        '{ cp --preserve=ownership,timestamps -- "$1" "$3" || { rm -f -- "$3"; exit 1; }; }'
    )
    layout = ctx.host.layout
    copy = server_copy_path(ctx)
    argv = ["sh", "-c", script, "sh", layout.env_file, layout.backup_dir, copy, NAME]
    ctx.transport.run(argv, sudo=True)
