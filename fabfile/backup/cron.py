"""backup.cron: the weekly unattended backup.all on this machine, or the env snapshot on servers.

fab -H production backup.cron --install      # this user's crontab runs backup.all weekly
fab backup.cron --show                       # the entry and how its last run ended
fab -H prod backup.cron --install --server   # /etc/cron.d/zachot-env-backup on prod
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

from invoke import task

from ..core import crontab, output, unattended
from ..core.backups.env import NAME as ENV_NAME
from ..core.crontab import SERVER_FILE, CrontabError, UserCrontab
from ..core.errors import UsageError
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
from ..core.transport import Transport

PROJECT = Path(__file__).resolve().parents[2]
LOG_LINES = 10

HELP = {
    "install": "add or replace the entry (the -H hosts are the ones it backs up)",
    "remove": "remove the entry; other crontab lines are left as they are",
    "show": "show the entry and the end of its log (the default)",
    "server": f"act on {SERVER_FILE} on each -H host instead (the runbook's env snapshot)",
    "schedule": "five cron fields, e.g. '0 2 * * 0' (default: inventory backup.cron_schedule)",
    "log": "where the entry appends its output (default: ~/.local/state/zachot/backup-cron.log)",
    "dry_run": "print the change as a diff and change nothing",
}


@task(help=HELP, auto_shortflags=False)
@guarded
def cron(
    c, install=False, remove=False, show=False, server=False, schedule=None, log=None,
    dry_run=False,
):  # fmt: skip
    """Install, remove or show the weekly backup.all cron entry (--server: on the hosts)."""
    if not first_call("backup.cron"):
        return
    if install + remove + show > 1:
        raise UsageError("give one of --install, --remove and --show")
    action = "install" if install else "remove" if remove else "show"
    if server:
        _on_servers(c, action, schedule, dry_run=dry_run)
    elif action == "install":
        inventory = load(c)
        when = _schedule(schedule, target_hosts(c, inventory))
        install_here(UserCrontab(), when, _job(c, inventory, log), dry_run=dry_run)
    elif action == "remove":
        remove_here(UserCrontab(), dry_run=dry_run)
    else:
        show_here(UserCrontab())


def _job(c, inventory: Inventory, log: str | None) -> str:
    """backup.all of the same -H hosts and inventory, from this project and venv."""
    pattern = ",".join(p.strip() for p in (requested_hosts(c) or "").split(",") if p.strip())
    fab = Path(sys.prefix) / "bin" / "fab"
    if not fab.exists():
        raise CrontabError(f"no {fab}; run backup.cron from the project's venv")
    return crontab.job_command(
        project=PROJECT, fab=fab, inventory=inventory.path.resolve(), hosts=pattern,
        log=Path(log).expanduser().absolute() if log else default_log(),
    )  # fmt: skip


def _on_servers(c, action: str, schedule: str | None, *, dry_run: bool) -> None:
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
    block = crontab.render_block(schedule, command)

    def make_log_folder() -> None:
        # The shell redirect needs the folder; 0700, the log names hosts and paths.
        if log := crontab.log_path(command):
            Path(log).parent.mkdir(mode=0o700, parents=True, exist_ok=True)

    changed = _change(
        table, lambda old: crontab.install(old, block), dry_run=dry_run, prepare=make_log_folder
    )
    if changed:
        output.info(f"installed: {schedule} {command}")
    elif not dry_run:
        output.info("the crontab already has this entry; nothing changed")


def remove_here(table: UserCrontab, *, dry_run: bool) -> None:
    if _change(table, crontab.remove, dry_run=dry_run):
        output.info("removed the backup.cron entry; the other crontab lines are unchanged")
    elif not dry_run:
        output.info("no backup.cron entry in the crontab; nothing changed")


def show_here(table: UserCrontab) -> None:
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
    log = Path(where)
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


# --- a server's /etc/cron.d ---------------------------------------------------------


def install_on_server(
    transport: Transport, schedule: str, *, path: str = SERVER_FILE, dry_run: bool = False
) -> str:
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
    if dry_run:
        old = crontab.read_server_file(transport, path)
        return f"dry run: would remove {path}" if old is not None else f"no {path}; nothing to do"
    if crontab.remove_server_file(transport, path):
        return f"removed {path}"
    return f"no {path}; nothing to remove"


def show_on_server(transport: Transport, *, path: str = SERVER_FILE) -> str:
    text = crontab.read_server_file(transport, path)
    if text is None:
        return f"no {path}"
    output.info(f"{transport.host.name}:{path}:")
    for line in text.splitlines():
        output.info(f"  {line}")
    return f"{path} is installed"
