"""backup.cron: schedule the weekly backup.routine on this machine, or the env snapshot on
servers.

fab -H production backup.cron --install      # a systemd user timer (or launchd, or crontab)
fab backup.cron --show                       # next run, last run, its result, its log tail
fab -H prod backup.cron --install --server   # /etc/cron.d/zachot-env-backup on prod
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from invoke import task

from ..core import output
from ..core.crontab import SERVER_FILE
from ..core.errors import UsageError, ZachotError
from ..core.inventory import _CHECKS, Inventory
from ..core.model import Host
from ..core.runner import (
    finish,
    first_call,
    for_each_host,
    guarded,
    load,
    requested_hosts,
    target_hosts,
)

if TYPE_CHECKING:
    from ..core import routine as record
    from ..core.crontab import UserCrontab
    from ..core.transport import Transport

PROJECT = Path(__file__).resolve().parents[2]
LOG_LINES = 10

HELP = {
    "install": "add or replace the schedule (the -H hosts are the ones the routine backs up)",
    "remove": "remove it; other crontab lines and units are left as they are",
    "show": "show the schedule, next and last run, its result and log tail (the default)",
    "server": f"act on {SERVER_FILE} on each -H host instead (the runbook's env snapshot)",
    "schedule": "five cron fields, e.g. '0 2 * * 0' (default: inventory backup.cron_schedule)",
    "log": "where the job appends its output (default: ~/.local/state/zachot/backup-cron.log)",
    "scheduler": "auto, systemd (user timer), launchd or cron (default: config "
    "backup.scheduler, auto: launchd on macOS, systemd where a user manager runs, else cron)",
    "dry_run": "print the change and change nothing",
}


@task(help=HELP, auto_shortflags=False)
@guarded
def cron(
    c, install=False, remove=False, show=False, server=False, schedule=None, log=None,
    scheduler=None, dry_run=False,
):  # fmt: skip
    """Install, remove or show the scheduled backup.routine (--server: the hosts' env cron)."""
    from ..core import scheduler as schedulers
    from ..core.crontab import UserCrontab

    if not first_call("backup.cron"):
        return
    if install + remove + show > 1:
        raise UsageError("give one of --install, --remove and --show")
    action = "install" if install else "remove" if remove else "show"
    if server:
        _on_servers(c, action, schedule, dry_run=dry_run)
        return
    backend = schedulers.choose(scheduler or c.config.get("backup", {}).get("scheduler"))
    if action == "install":
        inventory = load(c)
        when = _schedule(schedule, target_hosts(c, inventory))
        command = _job(c, inventory, log, "backup.routine")
        if backend == "cron":
            install_here(UserCrontab(), when, command, dry_run=dry_run)
        else:
            catchup = _job(c, inventory, log, "backup.routine --if-overdue")
            install_units(backend, when, command, catchup, dry_run=dry_run)
    elif action == "remove":
        remove_everywhere(backend, dry_run=dry_run)
    else:
        show_schedule(backend, log)
        show_record(c)


def _job(c, inventory: Inventory, log: str | None, what: str) -> str:
    """`what` of the same -H hosts and inventory, from this project and venv."""
    from ..core import crontab
    from ..core.crontab import CrontabError

    pattern = ",".join(p.strip() for p in (requested_hosts(c) or "").split(",") if p.strip())
    fab = Path(sys.prefix) / "bin" / "fab"
    if not fab.exists():
        raise CrontabError(f"no {fab}; run backup.cron from the project's venv")
    return crontab.job_command(
        project=PROJECT, fab=fab, inventory=inventory.path.resolve(), hosts=pattern,
        log=_log(log), task=what,
    )  # fmt: skip


def _log(option: str | None) -> Path:
    return Path(option).expanduser().absolute() if option else default_log()


def _on_servers(c, action: str, schedule: str | None, *, dry_run: bool) -> None:
    from ..core.transport import Transport

    hosts = target_hosts(c, load(c))
    when = _schedule(schedule, hosts) if action == "install" else ""
    password = c.config.get("sudo", {}).get("password")

    def work(host: Host) -> str:
        with Transport(host, sudo_password=password) as transport:
            if action == "install":
                return install_on_server(transport, when, dry_run=dry_run)
            if action == "remove":
                return remove_on_server(transport, dry_run=dry_run)
            return show_on_server(transport)

    finish(for_each_host(hosts, work, title=f"backup.cron --{action} --server"))


def default_log() -> Path:
    state = os.environ.get("XDG_STATE_HOME") or "~/.local/state"
    return Path(state).expanduser().absolute() / "zachot" / "backup-cron.log"


def _schedule(option: str | None, hosts: list[Host]) -> str:
    if option:
        if problem := _CHECKS[("backup", "cron_schedule")](option):
            raise UsageError(f"--schedule: {problem}")
        return option
    chosen = sorted({h.backup.cron_schedule for h in hosts})
    if len(chosen) > 1:
        raise UsageError(f"the hosts' backup.cron_schedule differ ({' | '.join(chosen)}); "
                         "pass --schedule")  # fmt: skip
    return chosen[0]


# --- this machine -------------------------------------------------------------------


def _change(
    table: UserCrontab,
    new_text: Callable[[str], str],
    *,
    dry_run: bool,
    prepare: Callable[[], None] = lambda: None,
) -> bool:
    """Apply new_text(old) to the crontab (prepare() first); print the diff on a dry run."""
    from ..core import crontab

    old = table.read()
    if "\\r\n" in old:
        output.warn("crontab -l shows carriage returns as the two characters \\r (DOS line "
                    "endings); such lines are written back as shown")  # fmt: skip
    new = new_text(old)
    if dry_run:
        output.info(crontab.diff(old, new, what="crontab").rstrip() or "crontab: no change")
        output.info("dry run: nothing was changed")
        return False
    prepare()
    if new == old:
        return False
    table.write(new)
    return True


def install_here(table: UserCrontab, schedule: str, command: str, *, dry_run: bool) -> None:
    from ..core import crontab

    block = crontab.render_block(schedule, command)
    changed = _change(
        table,
        lambda old: crontab.install(old, block),
        dry_run=dry_run,
        prepare=lambda: _make_log_folder(command),
    )
    if changed:
        output.info(f"installed: {schedule} {command}")
    elif not dry_run:
        output.info("the crontab already has this entry; nothing changed")


def _make_log_folder(command: str) -> None:
    # The shell redirect needs the folder; 0700, the log names hosts and paths.
    from ..core import crontab

    if log := crontab.log_path(command):
        Path(log).parent.mkdir(mode=0o700, parents=True, exist_ok=True)


def install_units(backend: str, schedule: str, command: str, catchup: str, *, dry_run: bool
                  ) -> None:  # fmt: skip
    """The systemd user timer (Persistent=true) or the launchd agents, plus the catch-up."""
    from ..core import crontab
    from ..core import scheduler as schedulers

    if backend == "systemd":
        files = {n: t.encode() for n, t in schedulers.systemd_units(
            schedule=schedule, command=command, catchup=catchup).items()}  # fmt: skip
        folder = schedulers.systemd_dir()
    else:
        log = Path(crontab.log_path(command) or default_log())
        files = schedulers.launchd_plists(schedule=schedule, command=command, catchup=catchup,
                                          log=log)  # fmt: skip
        folder = schedulers.launchd_dir()
    if dry_run:
        for name, data in files.items():
            output.info(f"--- {folder / name}")
            output.info(data.decode().rstrip())
        output.info("dry run: nothing was changed")
        return
    _make_log_folder(command)
    if backend == "systemd":
        schedulers.install_systemd({n: d.decode() for n, d in files.items()}, folder)
        output.info(f"installed {', '.join(schedulers.TIMERS)} in {folder} ({schedule}, "
                    f"OnCalendar={schedulers.on_calendar(schedule)}, Persistent=true; "
                    "catch-up at login with --if-overdue)")  # fmt: skip
    else:
        schedulers.install_launchd(files)
        output.info(f"installed {', '.join(files)} in {folder} ({schedule}; catch-up at login "
                    "with --if-overdue)")  # fmt: skip


def remove_everywhere(backend: str, *, dry_run: bool) -> None:
    """Remove the schedule from the chosen back end and from any other that holds one."""
    from ..core import scheduler as schedulers
    from ..core.crontab import UserCrontab

    if dry_run:
        output.info(f"dry run: would remove the {backend} schedule; nothing was changed")
        return
    removed = []
    if (backend == "systemd" or schedulers.systemd_dir().exists()) and \
            schedulers.remove_systemd():  # fmt: skip
        removed.append("systemd user timers")
    if (backend == "launchd" or schedulers.launchd_dir().exists()) and schedulers.remove_launchd():
        removed.append("launchd agents")
    if backend == "cron":
        remove_here(UserCrontab(), dry_run=False)
        return
    output.info(f"removed the {' and '.join(removed)}" if removed
                else f"no {backend} schedule installed; nothing changed")  # fmt: skip


def show_schedule(backend: str, log: str | None) -> None:
    from ..core import scheduler as schedulers
    from ..core.crontab import UserCrontab

    if backend == "cron":
        show_here(UserCrontab())
        return
    if backend == "systemd":
        folder = schedulers.systemd_dir()
        timer = folder / schedulers.TIMERS[0]
        if not timer.exists():
            output.info("no systemd user timer installed; add one with "
                        "`fab -H <hosts> backup.cron --install`")  # fmt: skip
            return
        calendar = next((ln for ln in timer.read_text().splitlines()
                         if ln.startswith("OnCalendar=")), "?")  # fmt: skip
        output.info(f"scheduler: systemd user timer {timer} ({calendar}, Persistent=true)")
        output.info(f"next run: {schedulers.systemd_next_run() or 'unknown (timer not active)'}")
    else:
        output.info(f"scheduler: launchd agents in {schedulers.launchd_dir()}")
    _show_log(_log(log))


def _show_log(log: Path) -> None:
    from ..core import unattended

    if not log.exists():
        output.info(f"log:      {log} (not written yet: no run so far)")
        return
    lines = unattended.tail(log)
    output.info(f"log:      {log}")
    last = unattended.last_run(lines)
    if last is None:
        output.info("last run: none recorded in the log")
    elif last.ended is None:
        output.info(f"last run: started {last.started}, no end line (still running, or killed)")
    else:
        verdict = "ok" if last.exit_code == 0 else "FAILED"
        output.info(f"last run: {last.started or '?'} to {last.ended}, exit {last.exit_code} "
                    f"({verdict})")  # fmt: skip
    output.info(f"last {min(LOG_LINES, len(lines))} log lines:")
    for line in lines[-LOG_LINES:]:
        output.info(f"  {line}")


def show_record(c) -> None:
    """The routine's own record of its last run, from each store the inventory names."""
    from ..core import routine as record

    try:
        inventory = load(c)
        hosts = target_hosts(c, inventory, required=False)
    except ZachotError as exc:
        output.info(f"last run: unknown ({exc})")
        return
    stores = list(dict.fromkeys(h.store.path for h in hosts))
    if not any(record.keys(store) for store in stores):
        output.info("routine: no run recorded in the store yet")
    for store in stores:
        for key in record.keys(store):
            found = record.load(store, key)
            for problem in found.problems:
                output.warn(problem)
            output.info(f"routine {key}: {_describe(found.last, 'last run')}; "
                        f"{_describe(found.last_success, 'last success')}")  # fmt: skip


def _describe(run: record.Run | None, what: str) -> str:
    if run is None:
        return f"{what}: never"
    if run.ended is None or run.exit_code is None:
        return f"{what}: started {run.started:%Y-%m-%d %H:%M} UTC, no end (running, or killed)"
    verdict = "ok" if run.exit_code == 0 else "FAILED"
    steps = ", ".join(f"{s.name} {_step_result(s.exit_code)}" for s in run.steps)
    return (f"{what}: {run.ended:%Y-%m-%d %H:%M} UTC, exit {run.exit_code} ({verdict}) after "
            f"{run.seconds:.0f} s [{steps}]")  # fmt: skip


def _step_result(code: int | None) -> str:
    return "skipped" if code is None else "ok" if code == 0 else f"exit {code}"


def remove_here(table: UserCrontab, *, dry_run: bool) -> None:
    from ..core import crontab

    if _change(table, crontab.remove, dry_run=dry_run):
        output.info("removed the backup.cron entry; the other crontab lines are unchanged")
    elif not dry_run:
        output.info("no backup.cron entry in the crontab; nothing changed")


def show_here(table: UserCrontab) -> None:
    from ..core import crontab

    found = crontab.entry(table.read())
    if found is None:
        output.info("no backup.cron entry in the crontab; add one with "
                    "`fab -H <hosts> backup.cron --install`")  # fmt: skip
        return
    output.info(f"schedule: {found.schedule}")
    output.info(f"command:  {found.command}")
    where = crontab.log_path(found.command)
    if where is None:
        output.info("log:      unknown (the entry has no `>> file`)")
        return
    _show_log(Path(where))


# --- a server's /etc/cron.d ---------------------------------------------------------


def install_on_server(
    transport: Transport, schedule: str, *, path: str = SERVER_FILE, dry_run: bool = False
) -> str:
    from ..core import crontab
    from ..core.backups.env import NAME as ENV_NAME
    from ..core.crontab import CrontabError

    host = transport.host
    text = crontab.server_file(
        schedule=schedule, env_file=host.layout.env_file, backup_dir=host.layout.backup_dir,
        name=ENV_NAME, managed_by=f"fab -H {host.name} backup.cron --install --server",
    )  # fmt: skip
    old = crontab.read_server_file(transport, path)
    if dry_run:
        output.info(crontab.diff(old or "", text, what=f"{host.name}:{path}").rstrip()
                    or f"{host.name}:{path}: no change")  # fmt: skip
        return "dry run, nothing changed"
    if old == text:
        return f"{path} is already up to date"
    if not transport.run(["test", "-f", host.layout.env_file], sudo=True, check=False).ok:
        raise CrontabError(
            f"{host.name}: no env file {host.layout.env_file}; check layout.env_file"
        )
    crontab.write_server_file(transport, text, path)
    return f"installed {path} ({schedule}): env copies into {host.layout.backup_dir}"


def remove_on_server(
    transport: Transport, *, path: str = SERVER_FILE, dry_run: bool = False
) -> str:
    from ..core import crontab

    if dry_run:
        old = crontab.read_server_file(transport, path)
        return f"dry run: would remove {path}" if old is not None else f"no {path}; nothing to do"
    if crontab.remove_server_file(transport, path):
        return f"removed {path}"
    return f"no {path}; nothing to remove"


def show_on_server(transport: Transport, *, path: str = SERVER_FILE) -> str:
    from ..core import crontab

    text = crontab.read_server_file(transport, path)
    if text is None:
        return f"no {path}"
    output.info(f"{transport.host.name}:{path}:")
    for line in text.splitlines():
        output.info(f"  {line}")
    return f"{path} is installed"
