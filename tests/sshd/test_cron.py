"""backup.cron for real: a throwaway user's crontab, the unattended run, the server's cron file.

The operator side never touches root's crontab: each test creates a user,
edits that user's crontab with the real `crontab` program and deletes the user.
"""

from __future__ import annotations

import os
import secrets
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
import yaml

from fabfile.backup.cron import (
    install_here,
    install_on_server,
    remove_here,
    remove_on_server,
    show_here,
    show_on_server,
)
from fabfile.core import crontab
from fabfile.core.crontab import SERVER_FILE, CrontabError, UserCrontab
from fabfile.core.model import Host, StoreSettings
from fabfile.core.store import Store
from fabfile.core.transport import Transport
from tests.sshd.helpers import CANARY, make_server, write_inventory

pytestmark = pytest.mark.sshd

ROOT = Path(__file__).resolve().parents[2]
FAB = Path(sys.executable).parent / "fab"
# Debian's `crontab -l` shows a carriage return as the two characters "\\r", so none here.
THEIRS = "MAILTO=''\n# my own jobs, café\n*/10 * * * *\techo \"a \\% b\" >/dev/null\n\n"


@dataclass
class Operator:
    """A throwaway user who owns a crontab.

    The venv's Python may live where only root can read (pyenv under /root), so fab
    runs as root with this user's HOME and, first on PATH, a `crontab` that edits this
    user's table: the real program, and root's own crontab is never touched.
    """

    name: str
    home: Path

    def cron_env(self) -> dict[str, str]:
        # What cron gives a job (crontab(5)).
        return {"HOME": str(self.home), "LOGNAME": self.name, "PATH": "/usr/bin:/bin",
                "SHELL": "/bin/sh"}  # fmt: skip

    def fab(self, *args: str, inventory: Path) -> subprocess.CompletedProcess:
        env = {**self.cron_env(), "ZACHOT_INVENTORY": str(inventory)}
        env["PATH"] = f"{self.home / 'bin'}:{env['PATH']}"
        return subprocess.run(
            [str(FAB), *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120
        )

    def run_as_cron(self, command: str) -> subprocess.CompletedProcess:
        """An entry's command the way cron runs it: /bin/sh, cron's bare environment, in HOME."""
        return subprocess.run(
            ["/bin/sh", "-c", command], env=self.cron_env(), cwd=self.home, capture_output=True,
            text=True, timeout=120,
        )  # fmt: skip

    def crontab(self) -> str:
        return UserCrontab(self.name).read()


@pytest.fixture
def operator(sshd, tmp_path) -> Iterator[Operator]:
    """A throwaway login with its own crontab; removed afterwards."""
    real = shutil.which("crontab")
    if real is None:
        message = "backup.cron tests need Debian's cron package (apt-get install cron)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    name = f"zct{secrets.token_hex(4)}"
    home = tmp_path / "home"
    (home / "bin").mkdir(parents=True)
    wrapper = home / "bin" / "crontab"
    wrapper.write_text(f'#!/bin/sh\nexec {real} -u {name} "$@"\n')
    wrapper.chmod(0o755)
    subprocess.run(["useradd", "--no-create-home", "--home-dir", str(home), name], check=True)
    try:
        yield Operator(name, home)
    finally:
        subprocess.run([real, "-u", name, "-r"], capture_output=True)
        subprocess.run(["userdel", name], check=True)


@pytest.fixture
def operator_inventory(sshd, operator, tmp_path) -> tuple[Path, Host]:
    """An inventory for the fake server, a store in the operator's home, a 1 s lock wait."""
    host = replace(
        sshd.host,
        layout=make_server(tmp_path / "server"),
        store=StoreSettings(path=operator.home / "store"),
    )
    path = write_inventory(host, operator.home / "inventory.yml")
    data = yaml.safe_load(path.read_text())
    data["all"]["vars"]["store"]["lock_timeout"] = 1
    path.write_text(yaml.safe_dump(data))
    return path, host


def test_real_crontab_keeps_the_users_own_lines_byte_for_byte(operator, capsys):
    table = UserCrontab(operator.name)
    table.write(THEIRS)
    command = crontab.job_command(
        project=Path("/srv/my ops"), fab=Path("/srv/my ops/.venv/bin/fab"),
        inventory=Path("/srv/my ops/inv.yml"), hosts="prod", log=operator.home / "l og%.txt",
    )  # fmt: skip
    install_here(table, "0 2 * * 0", command, dry_run=True)
    assert table.read() == THEIRS  # a dry run changes nothing...
    assert f"+{crontab.BEGIN}" in capsys.readouterr().out  # ...but shows the change
    install_here(table, "0 2 * * 0", command, dry_run=False)
    install_here(table, "0 2 * * 0", command, dry_run=False)
    assert "already has this entry" in capsys.readouterr().out
    assert table.read() == THEIRS + crontab.render_block("0 2 * * 0", command)
    assert crontab.entry(table.read()) == crontab.Entry("0 2 * * 0", command)
    install_here(table, "30 3 * * 1", command, dry_run=False)
    assert table.read().count(crontab.BEGIN) == 1 and "\n30 3 * * 1 cd " in table.read()
    show_here(table)
    shown = capsys.readouterr().out
    assert "schedule: 30 3 * * 1" in shown and "not written yet" in shown
    remove_here(table, dry_run=False)
    assert table.read() == THEIRS
    remove_here(table, dry_run=False)
    assert "nothing changed" in capsys.readouterr().out


def test_crontab_refusing_the_table_is_one_line_and_changes_nothing(operator):
    table = UserCrontab(operator.name)
    table.write(THEIRS)
    with pytest.raises(CrontabError, match=r"crontab refused the new table .*bad minute"):
        table.write(THEIRS + "99 * * * * true\n")
    assert table.read() == THEIRS


def test_cli_install_run_unattended_show_and_remove(operator, operator_inventory):
    inventory, host = operator_inventory
    UserCrontab(operator.name).write(THEIRS)
    cron = ("backup.cron", "--scheduler", "cron")
    dry = operator.fab("-H", "local", *cron, "--install", "--dry-run", inventory=inventory)
    assert dry.returncode == 0, dry.stderr
    assert operator.crontab() == THEIRS and "+# >>> zachot" in dry.stdout
    for _ in range(2):
        done = operator.fab("-H", "local", *cron, "--install", inventory=inventory)
        assert done.returncode == 0, done.stderr
    found = crontab.entry(operator.crontab())
    log = operator.home / ".local/state/zachot/backup-cron.log"
    assert found.schedule == "0 2 * * 0"
    assert found.command == crontab.job_command(
        project=ROOT, fab=FAB, inventory=inventory, hosts="local", log=log, task="backup.routine"
    )
    assert operator.crontab().startswith(THEIRS)
    assert stat.S_IMODE(log.parent.stat().st_mode) == 0o700

    ran = operator.run_as_cron(found.command)
    assert ran.returncode == 0, log.read_text()
    lines = log.read_text().splitlines()
    assert " backup.routine start (pid " in lines[0]
    assert " backup.routine end: exit 0 after " in lines[-1]
    assert any(ln.startswith("local: env ") for ln in lines)
    text = log.read_text()
    assert "\x1b" not in text and CANARY not in text  # plain, and never a secret
    assert [r.kind for r in Store(host.store.path).list()] == ["env", "units"]
    shown = operator.fab(*cron, "--show", inventory=inventory)
    assert "exit 0 (ok)" in shown.stdout and f"log:      {log}" in shown.stdout
    assert "routine local: last run: " in shown.stdout  # the store's record too

    # A manual run holds the store lock: the cron run waits 1 s, then gives up clearly.
    with Store(host.store.path).lock(timeout=5, purpose="a manual backup.all"):
        locked = operator.run_as_cron(found.command)
    assert locked.returncode == 75
    this_run = log.read_text().splitlines()[len(lines) :]
    assert " backup.routine start " in this_run[0] and " end: exit 75 " in this_run[-1]
    # Every step that needs the store says why, in one line each; prune waits for a backup.
    errors = [ln for ln in this_run if ln.startswith("error:")]
    assert errors and all("locked" in e and "a manual backup.all" in e for e in errors), errors
    table = "\n".join(this_run)
    assert "\nbackup\tFAILED (exit 75)\t" in table and "skipped: backup failed" in table
    shown = operator.fab(*cron, "--show", inventory=inventory)
    assert "exit 75 (FAILED)" in shown.stdout

    gone = operator.fab(*cron, "--remove", inventory=inventory)
    assert gone.returncode == 0, gone.stderr
    assert operator.crontab() == THEIRS


def test_install_needs_hosts_and_names_them(operator, operator_inventory):
    inventory, _ = operator_inventory
    missing = operator.fab("backup.cron", "--install", inventory=inventory)
    assert missing.returncode == 2 and "name a host or group with -H" in missing.stderr
    unknown = operator.fab("-H", "nope", "backup.cron", "--install", inventory=inventory)
    assert unknown.returncode == 2 and "unknown host or group 'nope'" in unknown.stderr
    assert "Traceback" not in missing.stderr + unknown.stderr
    assert operator.crontab() == ""


# --- the server's /etc/cron.d file ---------------------------------------------------


@pytest.fixture
def server(sshd, tmp_path) -> Host:
    return replace(sshd.host, layout=make_server(tmp_path / "server"))


def test_server_cron_file_install_show_and_remove(server, tmp_path, capsys):
    cron_d = tmp_path / "cron.d"
    cron_d.mkdir()
    path = str(cron_d / "zachot-env-backup")
    with Transport(server) as transport:
        assert install_on_server(transport, "0 2 * * 0", path=path, dry_run=True) == (
            "dry run, nothing changed"
        )
        assert not Path(path).exists()
        assert "+0 2 * * 0 root umask 077" in capsys.readouterr().out
        assert install_on_server(transport, "0 2 * * 0", path=path).startswith("installed ")
        assert "already up to date" in install_on_server(transport, "0 2 * * 0", path=path)
        assert show_on_server(transport, path=path) == f"{path} is installed"
        shown = capsys.readouterr().out
    written = Path(path)
    expected = crontab.server_file(
        schedule="0 2 * * 0", env_file=server.layout.env_file,
        backup_dir=server.layout.backup_dir, name="zachot.env",
        managed_by="fab -H local backup.cron --install --server",
    )  # fmt: skip
    assert written.read_text() == expected
    info = written.stat()
    assert stat.S_IMODE(info.st_mode) == 0o644 and (info.st_uid, info.st_gid) == (0, 0)
    assert expected.splitlines()[-1] in shown
    # What cron would run on the server leaves a 0600 copy of the env file.
    job = expected.splitlines()[-1]
    subprocess.run(["/bin/sh", "-c", crontab.unescape_percent(job.split(None, 6)[6])], check=True)
    [copy] = Path(server.layout.backup_dir).iterdir()
    assert copy.read_bytes() == Path(server.layout.env_file).read_bytes()
    assert stat.S_IMODE(copy.stat().st_mode) == 0o600
    with Transport(server) as transport:
        assert (
            remove_on_server(transport, path=path, dry_run=True) == f"dry run: would remove {path}"
        )
        assert written.exists()
        assert remove_on_server(transport, path=path) == f"removed {path}"
        assert not written.exists()
        assert remove_on_server(transport, path=path) == f"no {path}; nothing to remove"
        assert show_on_server(transport, path=path) == f"no {path}"


def test_server_without_cron_or_env_file_fails_clearly(server, tmp_path):
    with Transport(server) as transport:
        no_cron = str(tmp_path / "no-cron.d" / "zachot-env-backup")
        with pytest.raises(CrontabError, match=r"no .*no-cron.d; install cron there"):
            install_on_server(transport, "0 2 * * 0", path=no_cron)
        os.unlink(server.layout.env_file)
        with pytest.raises(CrontabError, match=r"no env file .*check layout.env_file"):
            install_on_server(transport, "0 2 * * 0", path=str(tmp_path / "x"))
    assert not (tmp_path / "x").exists()


@pytest.fixture
def system_cron_file() -> Iterator[Path]:
    """The real /etc/cron.d/zachot-env-backup of this (test) machine, left as found: absent."""
    path = Path(SERVER_FILE)
    if path.exists():
        pytest.fail(f"{path} exists on this machine; refusing to overwrite it in a test")
    made_dir = not path.parent.exists()
    path.parent.mkdir(mode=0o755, exist_ok=True)
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)
        if made_dir:
            path.parent.rmdir()


def test_cli_server_install_show_remove(server, tmp_path, system_cron_file):
    inventory = write_inventory(
        replace(server, store=StoreSettings(tmp_path / "st")), tmp_path / "i.yml"
    )
    env = {**os.environ, "ZACHOT_INVENTORY": str(inventory)}

    def fab(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(FAB), "-H", "local", "backup.cron", *args, "--server"], cwd=ROOT, env=env,
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip

    done = fab("--install", "--schedule", "15 4 * * 6")
    assert done.returncode == 0, done.stderr
    assert "local: installed /etc/cron.d/zachot-env-backup (15 4 * * 6)" in done.stdout
    text = system_cron_file.read_text()
    assert "\n15 4 * * 6 root umask 077 && " in text
    assert stat.S_IMODE(system_cron_file.stat().st_mode) == 0o644
    shown = fab("--show")
    assert shown.returncode == 0 and text.splitlines()[-1] in shown.stdout
    gone = fab("--remove")
    assert gone.returncode == 0 and "removed /etc/cron.d/zachot-env-backup" in gone.stdout
    assert not system_cron_file.exists()
