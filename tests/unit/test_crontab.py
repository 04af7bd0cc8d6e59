"""backup.cron's pure half: editing crontab text by markers, quoting, unattended runs."""

from __future__ import annotations

import os
import shlex
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from invoke.exceptions import Exit

from fabfile.backup import cron
from fabfile.core import crontab, runner, unattended
from fabfile.core.crontab import BEGIN, END, CrontabError
from fabfile.core.errors import LockHeldError, UsageError
from fabfile.core.model import BackupSettings, Host

pytestmark = pytest.mark.unit

# An operator's crontab with everything that must survive untouched: comments,
# blank lines, env assignments, an escaped %, CRLF, a non-UTF-8 byte, indentation.
THEIRS = (
    "# m h dom mon dow command\n"
    "MAILTO=ops@example.org\n"
    "\n"
    '*/5 * * * * echo "50\\% done" >> /tmp/x\n'
    "@reboot /usr/local/bin/thing\r\n"
    "  15 4 * * * /opt/caf\udce9/run\n"
    "# trailing comment\n"
)
COMMAND = crontab.job_command(
    project=Path("/srv/ops"),
    fab=Path("/srv/ops/.venv/bin/fab"),
    inventory=Path("/srv/ops/inventory.yml"),
    hosts="production",
    log=Path("/var/log/zachot/cron.log"),
)
BLOCK = crontab.render_block("0 2 * * 0", COMMAND)


def test_install_into_an_empty_crontab_is_just_our_block():
    assert crontab.install("", BLOCK) == BLOCK
    assert BLOCK.splitlines() == [BEGIN, f"0 2 * * 0 {COMMAND}", END]


def test_install_appends_and_keeps_every_other_byte():
    after = crontab.install(THEIRS, BLOCK)
    assert after == THEIRS + BLOCK
    # Bytes that are not UTF-8 (read with surrogateescape) go back out unchanged.
    assert b"  15 4 * * * /opt/caf\xe9/run\n" in after.encode("utf-8", "surrogateescape")


def test_install_twice_replaces_in_place_rather_than_duplicating():
    before, after = THEIRS, "0 6 * * * /usr/bin/other\n"
    once = crontab.install(before + after, BLOCK)
    other = crontab.render_block("30 1 * * 1", COMMAND)
    replaced = crontab.install(crontab.install(before + BLOCK + after, BLOCK), other)
    assert crontab.install(once, BLOCK) == once
    assert replaced == before + other + after  # same position, lines after it untouched
    assert replaced.count(BEGIN) == 1


def test_install_adds_the_final_newline_crontab_insists_on():
    assert crontab.install("0 1 * * * a", BLOCK) == "0 1 * * * a\n" + BLOCK


def test_remove_gives_back_the_original_bytes():
    assert crontab.remove(crontab.install(THEIRS, BLOCK)) == THEIRS
    middle = THEIRS + BLOCK + "0 6 * * * /usr/bin/other\n"
    assert crontab.remove(middle) == THEIRS + "0 6 * * * /usr/bin/other\n"
    assert crontab.remove(THEIRS) == THEIRS
    assert crontab.remove("") == ""
    assert crontab.remove(BLOCK) == ""


def test_hand_merged_duplicates_collapse_to_one_block():
    doubled = BLOCK + THEIRS + BLOCK
    assert crontab.install(doubled, BLOCK) == BLOCK + THEIRS
    assert crontab.remove(doubled) == THEIRS


@pytest.mark.parametrize(
    ("text", "line"),
    [
        (THEIRS + BEGIN + "\n0 2 * * 0 x\n", 8),  # opened, never closed
        (THEIRS + END + "\n", 8),  # closed, never opened
        (BEGIN + "\n" + BEGIN + "\n" + END + "\n", 1),  # reopened
    ],
)
def test_broken_markers_refuse_with_the_line_and_change_nothing(text, line):
    for edit in (lambda t: crontab.install(t, BLOCK), crontab.remove, crontab.entry):
        with pytest.raises(CrontabError, match=f"line {line} ") as exc:
            edit(text)
        assert "crontab -e" in exc.value.message and "\n" not in exc.value.message


def test_markers_match_despite_trailing_whitespace_and_crlf():
    text = THEIRS + BEGIN + "  \r\n0 2 * * 0 x\n" + END + "\r\n"
    assert crontab.remove(text) == THEIRS


def test_entry_reads_back_schedule_and_command():
    assert crontab.entry(THEIRS) is None
    assert crontab.entry("") is None
    found = crontab.entry(crontab.install(THEIRS, BLOCK))
    assert found == crontab.Entry("0 2 * * 0", COMMAND)
    keyword = crontab.entry(crontab.render_block("@weekly", COMMAND))
    assert keyword == crontab.Entry("@weekly", COMMAND)
    assert crontab.log_path(found.command) == "/var/log/zachot/cron.log"


def test_paths_with_spaces_quotes_and_percent_are_quoted_and_escaped():
    weird = Path("/home/op/my ops/it's 100%")
    command = crontab.job_command(
        project=weird,
        fab=weird / ".venv/bin/fab",
        inventory=weird / "inv $HOME.yml",
        hosts="prod,staging",
        log=weird / "cron log%d.txt",
    )
    line = crontab.render_block("0 2 * * 0", command).splitlines()[1]
    command_field = line.split(None, 5)[5]
    assert "%" not in command_field.replace("\\%", "")  # every % escaped for cron
    # What the shell gets after cron's unescaping splits back into the exact paths.
    words = shlex.split(crontab.unescape_percent(command_field))
    assert words == [
        "cd", str(weird), "&&", f"ZACHOT_INVENTORY={weird}/inv $HOME.yml",
        f"{weird}/.venv/bin/fab", "-H", "prod,staging", "backup.all", "--unattended",
        ">>", f"{weird}/cron log%d.txt", "2>&1",
    ]  # fmt: skip
    assert crontab.entry(crontab.install("", crontab.render_block("0 2 * * 0", command))) == (
        crontab.Entry("0 2 * * 0", command)
    )
    assert crontab.log_path(command) == f"{weird}/cron log%d.txt"


def test_unescape_follows_cron_an_unescaped_percent_ends_the_command():
    assert crontab.unescape_percent("date +\\%F") == "date +%F"
    assert crontab.unescape_percent("cat%line one") == "cat"


@pytest.mark.parametrize("bad", ["0 2 * *", "", "0 2 * * 0\n* * * * * evil", "0 2 * * 0 1 2"])
def test_a_bad_schedule_or_newline_never_reaches_the_crontab(bad):
    with pytest.raises(CrontabError):
        crontab.render_block(bad, COMMAND)
    with pytest.raises(CrontabError, match="one non-empty line"):
        crontab.render_block("0 2 * * 0", "true\n* * * * * evil")


def test_task_schedule_comes_from_the_inventory_or_the_option():
    weekly, daily = (
        Host(name=n, backup=BackupSettings(cron_schedule=s))
        for n, s in (("prod", "0 2 * * 0"), ("staging", "0 3 * * *"))
    )
    assert cron._schedule(None, [weekly]) == "0 2 * * 0"
    assert cron._schedule("@daily", [weekly, daily]) == "@daily"
    with pytest.raises(UsageError, match=r"differ .* pass --schedule"):
        cron._schedule(None, [weekly, daily])
    with pytest.raises(UsageError, match=r"--schedule: .*not a valid cron schedule"):
        cron._schedule("* * *", [weekly])
    with pytest.raises(UsageError):
        cron._schedule("0 2 * * 0 root", [weekly])


def test_diff_shows_the_change_and_nothing_when_equal():
    change = crontab.diff(THEIRS, crontab.install(THEIRS, BLOCK), what="crontab")
    assert f"+{BEGIN}\n" in change and "-MAILTO" not in change
    assert crontab.diff(THEIRS, THEIRS, what="crontab") == ""


def test_server_file_snapshots_the_env_file_as_0600_copies(tmp_path):
    """Run the file's job line the way cron would: `\\%` unescaped, through /bin/sh."""
    env = tmp_path / "etc dir" / "zachot.env"
    env.parent.mkdir()
    env.write_text("REDIS_URL=redis://x\n")
    env.chmod(0o644)  # even a too-open source gives 0600 copies
    backups = tmp_path / "back ups"
    text = crontab.server_file(
        schedule="0 2 * * 0", env_file=str(env), backup_dir=str(backups), name="zachot.env",
        managed_by="test",
    )  # fmt: skip
    assert text.endswith("\n") and "SHELL=/bin/sh\n" in text
    [job] = [ln for ln in text.splitlines() if ln and not ln.startswith(("#", "SHELL", "PATH"))]
    assert job.startswith("0 2 * * 0 root umask 077 && ")
    assert "+\\%Y\\%m\\%d_\\%H\\%M\\%S" in job
    command = crontab.unescape_percent(job.split(None, 6)[6])
    subprocess.run(["/bin/sh", "-c", command], check=True, cwd=tmp_path)
    [copy] = backups.iterdir()
    assert copy.name.startswith("zachot.env.") and len(copy.name) == len("zachot.env.") + 15
    assert copy.read_bytes() == env.read_bytes()
    assert stat.S_IMODE(copy.stat().st_mode) == 0o600
    assert stat.S_IMODE(backups.stat().st_mode) == 0o700


def test_server_job_removes_a_failed_copy(tmp_path):
    backups = tmp_path / "bk"
    text = crontab.server_file(
        schedule="@weekly", env_file=str(tmp_path / "missing.env"), backup_dir=str(backups),
        name="zachot.env", managed_by="test",
    )  # fmt: skip
    job = text.splitlines()[-1]
    command = crontab.unescape_percent(job.split(None, 2)[2])
    done = subprocess.run(["/bin/sh", "-c", command], capture_output=True, cwd=tmp_path)
    assert done.returncode != 0
    assert list(backups.iterdir()) == []


# --- unattended runs ---------------------------------------------------------------


def test_unattended_run_brackets_output_with_start_and_end_lines(capsys):
    unattended.run("t.ok", lambda: print("working"))
    lines = capsys.readouterr().out.splitlines()
    assert lines[1] == "working"
    assert " t.ok start (pid " in lines[0]
    assert " t.ok end: exit 0 after " in lines[2]
    found = unattended.last_run(lines)
    assert found.exit_code == 0 and found.started == lines[0].split()[0]
    assert found.ended == lines[2].split()[0]


def test_unattended_run_fails_as_one_line_with_the_errors_exit_code(capsys):
    def locked() -> None:
        raise LockHeldError("store /x is locked by pid 42 (backup.all); try later")

    with pytest.raises(Exit) as exc:
        unattended.run("t.locked", locked)
    assert exc.value.code == 75
    captured = capsys.readouterr()
    assert captured.err == "error: store /x is locked by pid 42 (backup.all); try later\n"
    assert unattended.last_run(captured.out.splitlines()).exit_code == 75
    assert "\x1b" not in captured.out + captured.err


def test_unattended_run_never_prompts_and_is_plain(capsys, monkeypatch):
    monkeypatch.delenv("NO_COLOR", raising=False)
    seen = {}

    def asks() -> None:
        seen["no_color"] = os.environ.get("NO_COLOR")
        seen["stdin_tty"] = sys.stdin.isatty()
        runner.confirm("Back up Redis anyway?", yes=False)

    with pytest.raises(Exit) as exc:
        unattended.run("t.prompt", asks)
    assert exc.value.code == 2
    assert seen == {"no_color": "1", "stdin_tty": False}
    assert "refusing without --yes" in capsys.readouterr().err
    assert "NO_COLOR" not in os.environ  # restored for whatever runs next


def test_unattended_run_happens_once_per_process_like_the_task(capsys):
    calls = []
    unattended.run("t.once", lambda: calls.append(1))
    unattended.run("t.once", lambda: calls.append(2))  # Fabric's call for the next -H host
    assert calls == [1]
    assert capsys.readouterr().out.count(" start (pid ") == 1


def test_last_run_sees_a_run_that_never_ended():
    lines = [
        "2026-11-01T02:00:00+00:00 backup.all start (pid 1)",
        "2026-11-01T02:00:09+00:00 backup.all end: exit 3 after 9.0 s",
        "2026-11-08T02:00:00+00:00 backup.all start (pid 2)",
        "prod: env ok",
    ]
    assert unattended.last_run(lines) == unattended.LastRun("2026-11-08T02:00:00+00:00", None, None)
    assert unattended.last_run(lines[:2]) == unattended.LastRun(
        "2026-11-01T02:00:00+00:00", "2026-11-01T02:00:09+00:00", 3
    )
    assert unattended.last_run(["noise"]) is None


def test_tail_reads_only_the_end_of_a_big_log(tmp_path):
    log = tmp_path / "cron.log"
    log.write_text("".join(f"line {i}\n" for i in range(100_000)))
    lines = unattended.tail(log, max_bytes=1000)
    assert lines[-1] == "line 99999"
    assert all(ln.startswith("line ") and len(ln.split()) == 2 for ln in lines)
    assert len(lines) < 100


def test_default_log_follows_xdg_state_home(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    assert cron.default_log() == tmp_path / "zachot" / "backup-cron.log"
    monkeypatch.delenv("XDG_STATE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert cron.default_log() == tmp_path / ".local/state/zachot/backup-cron.log"


def test_missing_crontab_program_is_one_clear_line(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(CrontabError, match="`crontab` program is missing; install cron"):
        crontab.UserCrontab().read()
