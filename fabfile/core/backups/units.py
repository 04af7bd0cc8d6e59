"""backup.units: the systemd units, their drop-ins, and drift from the repo's copies."""

from __future__ import annotations

import posixpath
from collections.abc import Mapping

from .. import output, secrets
from ..plan import Step
from ..transport import PulledFile
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


def unit_paths(ctx: BackupContext) -> dict[str, str]:
    return {u: posixpath.join(ctx.host.layout.unit_dir, u) for u in ctx.host.layout.units}


def repo_paths(ctx: BackupContext) -> dict[str, str]:
    layout = ctx.host.layout
    if not layout.units_repo_dir:
        return {}
    return {u: posixpath.join(layout.repo_dir, layout.units_repo_dir, u) for u in layout.units}


def wanted(ctx: BackupContext, pulled: Mapping[str, PulledFile]) -> list[Wanted]:
    """Each unit, then the drop-ins the server had for it."""
    found: list[Wanted] = []
    for unit, path in unit_paths(ctx).items():
        found.append(Wanted(unit, path))
        drop_ins = sorted(p for p in pulled if posixpath.dirname(p) == f"{path}.d")
        found += [
            Wanted(f"{unit}.d{DROP_IN_SEPARATOR}{posixpath.basename(p)}", p) for p in drop_ins
        ]
    return found


def drift(ctx: BackupContext, pulled: Mapping[str, PulledFile]) -> dict[str, str]:
    """Per unit: same, differs, or missing in the repo (runbook: keep units in infra/)."""
    live = unit_paths(ctx)
    report: dict[str, str] = {}
    for unit, path in repo_paths(ctx).items():
        if path not in pulled:
            report[unit] = "missing in repo"
        else:
            same = pulled[path].remote.sha256 == pulled[live[unit]].remote.sha256
            report[unit] = "same" if same else "differs"
    return report


def _pack(ctx: BackupContext) -> dict[str, PulledFile]:
    """One round trip: the units, their drop-ins and the repo's copies (read-only)."""
    globs = [f"{path}.d/*.conf" for path in unit_paths(ctx).values()]
    return ctx.transport.pull_small_files(
        list(unit_paths(ctx).values()), [*globs, *repo_paths(ctx).values()], sudo=True
    )


def start(ctx: BackupContext) -> None:
    """Read the units beside the steps before this one (backup.all: the env's exchanges)."""
    ctx.early("units", lambda: _pack(ctx))


def run(ctx: BackupContext) -> str:
    pulled = ctx.answer("units", lambda: _pack(ctx))
    for found in pulled.values():
        secrets.unit_env_values(found.data)  # Environment= secrets: masked from here on
    report = drift(ctx, pulled)
    result = pull_files(
        ctx, "units", wanted(ctx, pulled), describe=lambda _c: {"drift": report}, fetched=pulled
    )
    drifted = {u: s for u, s in report.items() if s != "same"}
    for unit, state in drifted.items():
        output.warn(f"{ctx.host.name}: {unit} drifts from the repo's copy: {state}")
    return summary(result) + (f"; drift: {len(drifted)}" if drifted else "")
