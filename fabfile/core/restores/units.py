"""restore.units: unit files and drop-ins back, daemon-reload, enable, restart in order."""

from __future__ import annotations

import posixpath

from .. import crypto, secrets, services
from ..backups.units import DROP_IN_SEPARATOR
from ..plan import Plan, Step
from ..store import BackupRef
from . import steps
from .context import RestoreContext
from .diffs import text_diff

RUNBOOK_RTO = "5-10 min"


def target_path(ctx: RestoreContext, name: str) -> str:
    """Where a stored unit file goes on this host (its own unit_dir, not the source's)."""
    unit, _, drop_in = name.removesuffix(crypto.SUFFIX).partition(DROP_IN_SEPARATOR)
    parts = (unit, drop_in) if drop_in else (unit,)
    return posixpath.join(ctx.host.layout.unit_dir, *parts)


def installs(ctx: RestoreContext, ref: BackupRef) -> list[steps.Install]:
    return [
        steps.from_backup(
            ctx, ref, r, target_path(ctx, r.name), mode=r.mode, owner="root", group="root"
        )
        for r in ref.manifest.files
    ]


def install_step(ctx: RestoreContext, ref: BackupRef, *, diff: bool) -> Step:
    files = installs(ctx, ref)
    step = steps.install(ctx, f"put unit backup {ref.id} of {ref.host} in place", files)
    lines: list[str] = []
    if diff:
        for f in files:
            live, backed_up = ctx.remote_bytes(f.remote), f.local.read_bytes()
            # Environment= values are secrets: registered before any diff line is shown.
            secrets.unit_env_values(live or b"")
            secrets.unit_env_values(backed_up)
            lines += text_diff(live, backed_up, f.remote)
    return Step(step.name, step.title, step.actions + tuple(f"diff: {ln}" for ln in lines),
                step.run, step.done)  # fmt: skip


def reload_and_enable(ctx: RestoreContext) -> Step:
    units = [s.unit for s in services.stack(ctx.host)]

    def run() -> str:
        ctx.transport.run(["systemctl", "daemon-reload"], sudo=True)
        ctx.transport.run(["systemctl", "enable", "--quiet", *units], sudo=True)
        return f"daemon-reload; enabled {', '.join(units)}"

    return Step(
        "enable",
        "reload systemd and enable the units",
        ("systemctl daemon-reload", f"systemctl enable {' '.join(units)}"),
        run=run,
    )


def plan(ctx: RestoreContext, selector: str) -> Plan:
    ref = ctx.backup("units", selector)
    # What a unit's EnvironmentFile= holds is masked too, wherever output shows it.
    crypto.register_env_backup(ctx.origin or ctx.host)
    return Plan(
        ctx.host.name,
        f"restore.units from {ref.host}/{ref.id}",
        (
            install_step(ctx, ref, diff=True),
            reload_and_enable(ctx),
            steps.stop(ctx, ("worker", "api")),
            steps.start(ctx, ("redis", "worker", "api")),
        ),
    )
