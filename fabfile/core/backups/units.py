"""backup.units: the systemd units, their drop-ins, and drift from the repo's copies."""

from __future__ import annotations

import hashlib
import posixpath

from .. import facts, output
from ..plan import Step
from .context import BackupContext
from .files import Wanted, pull_files, summary

DROP_IN_SEPARATOR = "+"  # store names are flat: zachot-api.service.d+override.conf


def step(ctx: BackupContext) -> Step:
    layout = ctx.host.layout
    actions = [f"read {posixpath.join(layout.unit_dir, u)} and its drop-ins" for u in layout.units]
    if layout.units_repo_dir:
        repo_copy = posixpath.join(layout.repo_dir, layout.units_repo_dir)
        actions.append(f"compare them with the repo's copies in {repo_copy}")
    return Step("units", "back up the systemd units", tuple(actions), run=lambda: run(ctx))


def wanted(ctx: BackupContext) -> list[Wanted]:
    layout = ctx.host.layout
    found: list[Wanted] = []
    for unit in layout.units:
        found.append(Wanted(unit, posixpath.join(layout.unit_dir, unit)))
        drop_in_dir = posixpath.join(layout.unit_dir, f"{unit}.d")
        for entry in facts.gather(
            ctx.transport, facts.regular_files(drop_in_dir, pattern="*.conf", depth=1)
        ):
            name = f"{unit}.d{DROP_IN_SEPARATOR}{entry.name}"
            found.append(Wanted(name, posixpath.join(drop_in_dir, entry.name)))
    return found


def drift(ctx: BackupContext, contents: dict[str, bytes]) -> dict[str, str]:
    """Per unit: same, differs, or missing in the repo (runbook: keep units in infra/)."""
    layout = ctx.host.layout
    if not layout.units_repo_dir:
        return {}
    report: dict[str, str] = {}
    for unit in layout.units:
        path = posixpath.join(layout.repo_dir, layout.units_repo_dir, unit)
        out = ctx.transport.run(["sha256sum", "--", path], sudo=True, check=False)
        if not out.ok:
            report[unit] = "missing in repo"
            continue
        live = hashlib.sha256(contents[unit]).hexdigest()
        report[unit] = "same" if out.stdout.split()[0] == live else "differs"
    return report


def run(ctx: BackupContext) -> str:
    items = wanted(ctx)
    result = pull_files(ctx, "units", items, describe=lambda c: {"drift": drift(ctx, c)})
    drifted = {u: s for u, s in result.ref.manifest.meta["drift"].items() if s != "same"}
    for unit, state in drifted.items():
        output.warn(f"{ctx.host.name}: {unit} drifts from the repo's copy: {state}")
    return summary(result) + (f"; drift: {len(drifted)}" if drifted else "")
