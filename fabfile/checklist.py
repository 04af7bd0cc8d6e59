"""checklist: the runbook's recovery checklist against a host, with the fix for each ✗."""

from __future__ import annotations

import sys

from invoke import task

from .core.errors import UsageError
from .core.runner import finish, first_call, guarded, load, target_hosts

HELP = {
    "guided": "walk the runbook's order and offer the fix at each failing item",
    "yes": "with --guided: run the fixes without asking",
    "json": "print JSON (for monitoring) instead of a table",
}


@task(help=HELP)
@guarded
def checklist(c, guided=False, yes=False, json=False):
    """Check a host against the runbook's recovery checklist (read-only unless --guided)."""
    from .core import checklist as core

    if not first_call("checklist"):
        return
    hosts = target_hosts(c, load(c))
    password = c.config.get("sudo", {}).get("password")
    if not guided:
        if yes:
            raise UsageError("--yes answers --guided's questions; add --guided or leave it out")
        finish(core.check_hosts(hosts, json=json, password=password))
        return
    if json:
        raise UsageError("--guided talks to an operator; leave out --json")
    if len(hosts) != 1:
        names = ", ".join(h.name for h in hosts)
        raise UsageError(f"--guided fixes one host at a time; -H gave {names}")
    if not yes and not sys.stdin.isatty():
        raise UsageError("--guided asks before each fix; run it in a terminal or add --yes")
    timeout = float(c.config.restore.health_timeout)
    outcome = core.guide(hosts[0], yes=yes, health_timeout=timeout, password=password)
    finish([outcome])
