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
            f"check that {layout.backup_dir} is root-owned 0700 (made so if absent)",
            f"read {layout.env_file} with sudo, streamed (no copy left on the server), "
            "never through a link the service user could plant",
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

    ctx.ask_deployed()  # read-only, as the service user: it may run beside the checks
    # Checked first, so a backup_dir the service user could steer refuses before anything
    # is written anywhere (one round trip, ~10 ms on a LAN).
    ctx.transport.ensure_private_dir(ctx.host.layout.backup_dir)
    wanted = [Wanted(NAME, ctx.host.layout.env_file, small=True)]
    # The pull and the server's copy side by side (one wait on a far link, not two). The copy
    # is asked of the server, not the store: one that failed (disk full) is made by the next
    # run, and its failure is raised only once the pull has landed in the store.
    result, _ = ctx.transport.together(
        lambda: pull_files(ctx, "env", wanted, describe=describe),
        lambda: copy_on_server(ctx),
    )
    missing = result.ref.manifest.meta["missing_required"]
    if missing:
        output.warn(f"{ctx.host.name}: env file lacks required keys: {', '.join(missing)}")
    return summary(result)


def copy_on_server(ctx: BackupContext) -> None:
    """The runbook's copy beside the env file's backups, unless the newest is the same.

    Made by the agent: backup_dir must be root-owned 0700, the env file is opened
    without following a planted link, the copy is created O_EXCL|O_NOFOLLOW, 0600, with
    the env file's owner and times; a failed copy is removed."""
    layout = ctx.host.layout
    ctx.transport.copy_file(
        layout.env_file, server_copy_path(ctx), private=True, same_as=f"{NAME}."
    )
