"""backup.routine: the runbook's weekly job as one command, one exit code, one summary.

fab -H production backup.routine               # backup.all, off-site copy, prune, verify
fab -H production backup.routine --if-overdue  # only if the last success is too old

What backup.cron installs runs this. It never prompts (an unattended run), pings the
inventory's backup.healthcheck_url and writes its backup.metrics_file when they are set.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from invoke import task
from invoke.exceptions import Exit

from ..core import output
from ..core.errors import UsageError, ZachotError
from ..core.inventory import Inventory
from ..core.model import Host
from ..core.runner import guarded, load, requested_hosts, target_hosts
from . import prune, pull, replicate, verify

if TYPE_CHECKING:
    from ..core.routine import Step, StepResult

HELP = {
    "if_overdue": "run only when the last successful routine of these hosts is older than "
    "the inventory's backup.routine_overdue_hours (default 168); else exit 0 at once",
}
RESULT = {None: "skipped", 0: "ok"}


@task(help=HELP)
@guarded
def routine(c, if_overdue=False):
    """The weekly job: backup.all, the off-site copy, prune, verify; one exit code."""
    from ..core import unattended

    unattended.run("backup.routine", lambda: _routine(c, if_overdue=if_overdue))


def pattern(c) -> str:
    """The -H value as given, the key of the routine's record."""
    return ",".join(p.strip() for p in (requested_hosts(c) or "").split(",") if p.strip())


def shared(hosts: list[Host], what: str) -> object:
    """One setting for the whole routine (one ping URL, one metrics file, one store)."""
    values = {_setting(h, what) for h in hosts}
    if len(values) > 1:
        raise UsageError(f"the hosts' {what} differ; run backup.routine per group of hosts "
                         "that share it")  # fmt: skip
    return values.pop()


def _setting(host: Host, what: str) -> object:
    return host.store.path if what == "store.path" else getattr(host.backup, what.split(".")[1])


def _steps(c, hosts: list[Host]) -> list[Step]:
    from ..core.offsite_backend import has_offsite
    from ..core.routine import Step

    steps = [Step("backup", lambda: pull.all_(c, offsite=False))]
    if any(has_offsite(h) for h in hosts):
        steps.append(Step("off-site", lambda: replicate.replicate(c)))
    # The runbook's weekly prune, without a prompt; never after a week whose backups failed.
    steps.append(Step("prune", lambda: prune.prune(c, yes=True), needs=("backup", "off-site")))
    steps.append(Step("verify", lambda: verify.verify(c)))
    return steps


def _routine(c, *, if_overdue: bool) -> None:
    from ..core import pings
    from ..core import routine as record
    from ..core.routine import exit_code, run_steps

    inventory = load(c)
    hosts = target_hosts(c, inventory)
    key = pattern(c)
    store = Path(shared(hosts, "store.path"))
    url = shared(hosts, "backup.healthcheck_url")
    if if_overdue and not _overdue(
        store, key, float(shared(hosts, "backup.routine_overdue_hours"))
    ):
        return
    pings.ping(url, "start")
    started = record.now()
    results = run_steps(_steps(c, hosts))
    code = exit_code(results)
    run = record.Run(key, started, record.now(), code, tuple(results))
    record.save(store, run)
    _summary(results, code)
    _write_metrics(shared(hosts, "backup.metrics_file"), hosts, inventory, store, key)
    pings.ping(url, "success" if code == 0 else code)
    if code:
        raise Exit(code=code)


def _overdue(store: Path, key: str, hours: float) -> bool:
    from ..core import routine as record

    found = record.load(store, key)
    for problem in found.problems:
        output.warn(problem)
    if found.overdue(record.now(), hours):
        return True
    ended = found.last_success.ended
    output.info(f"last successful routine of {key} ended {ended:%Y-%m-%d %H:%M} UTC, within "
                f"backup.routine_overdue_hours ({hours:g} h); nothing to do")  # fmt: skip
    return False


def _summary(results: list[StepResult], code: int) -> None:
    rows = [(r.name, RESULT.get(r.exit_code, f"FAILED (exit {r.exit_code})"),
             f"{r.seconds:.1f}", r.note) for r in results]  # fmt: skip
    verdict = "ok" if code == 0 else f"FAILED, exit {code}"
    output.table(f"backup.routine: {verdict}", ["step", "result", "seconds", "note"], rows)


def _write_metrics(target: object, hosts: list[Host], inventory: Inventory, store: Path,
                   key: str) -> None:  # fmt: skip
    from ..core import metrics
    from ..core import routine as record

    if target is None:
        return
    try:
        samples = metrics.collect(hosts, inventory.host, record.load(store, key), record.now())
        metrics.write(Path(str(target)), metrics.render(samples))
    except (OSError, ZachotError) as exc:
        output.warn(f"cannot write backup.metrics_file {target}: {exc}")
