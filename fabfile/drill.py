"""drill: rehearse runbook scenario 1 on a scratch host and keep a report of how it went."""

from __future__ import annotations

import sys
from contextlib import nullcontext, redirect_stdout

from invoke import task

from .core import output
from .core.runner import guarded
from .restore.server import HELP as SERVER_HELP

HELP = {
    "source": "the host whose latest backups to restore (default: the host the inventory says "
    "the target replaces; never the target)",
    **{k: SERVER_HELP[k] for k in ("wheelhouse", "find_links", "index_url")},
    "yes": "do not ask before overwriting the scratch host",
    "dry_run": "print the restore plan and change nothing",
    "json": "print the report as JSON on stdout (the plan and tables go to stderr)",
}


@task(help=HELP)
@guarded
def drill(
    c,
    source=None,
    wheelhouse=None,
    find_links=None,
    index_url=None,
    yes=False,
    dry_run=False,
    json=False,
):
    """Restore --source's latest backups onto a scratch host, run the checklist, report RTO/RPO."""
    from .core import drill as core

    failed: core.DrillFailed | None = None
    # With --json, stdout carries one document: the progress and tables go to stderr.
    with redirect_stdout(sys.stderr) if json else nullcontext():
        try:
            report = core.drill(
                c,
                source=source,
                wheelhouse=wheelhouse,
                find_links=find_links,
                index_url=index_url,
                yes=yes,
                dry_run=dry_run,
            )
        except core.DrillFailed as exc:
            failed, report = exc, exc.drill
    if json and report is not None:
        output.emit_json(report.as_json())
    if failed is not None:
        raise failed
