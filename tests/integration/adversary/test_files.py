"""Holes 3, 4 and 5 of issue 10: root's reads, copies, chowns and chmods beside the files
the service user controls, and the careful attacker's next tries (a link swapped in
mid-task, a FIFO, a directory, a huge file, a hard link to a root file).

Each attack runs as `zachot` on prod6 (hard links are planted as root, as a kernel with
fs.protected_hardlinks=0 would let zachot do). Afterwards the root-only canary and secret
are unchanged and unread, and the task did its job or refused in one line.
"""

from __future__ import annotations

import time

import pytest

from tests.integration.faults.lab import ENV, Lab

from .hostile import (
    BACKUPS,
    CANARY,
    LOGS,
    ROOT_ONLY,
    USER,
    assert_no_secret,
    attacker,
    canary_state,
    env_secrets,
    one_line_error,
    prod6_lab,  # noqa: F401
    setup_canaries,
)

pytestmark = pytest.mark.integration

ENV_DIR = ENV.rsplit("/", 1)[0]


def stored_texts(lab: Lab) -> list[str]:
    """Every file of the lab's store, as text, to look for a leaked secret in."""
    found = []
    for path in lab.store.root.rglob("*"):
        if path.is_file():
            found.append(path.read_bytes().decode("utf-8", "replace"))
    return found


def plant_env(lab: Lab, how: str) -> None:
    """Replace the env file by something that is not the service user's small file."""
    plants = {
        "symlink": f"ln -sfn {ROOT_ONLY} {ENV}",
        "fifo": f"rm -f {ENV} && mkfifo -m 600 {ENV}",
        "directory": f"rm -f {ENV} && mkdir {ENV}",
        "huge": f"truncate -s 2G {ENV}",
    }
    if how == "hardlink":  # as root: protected_hardlinks stops zachot on this kernel
        lab.sh(f"rm -f {ENV} && ln {ROOT_ONLY} {ENV}")
    else:
        attacker(lab, plants[how])


@pytest.mark.attack("symlink to a root-only file", checked="backup.env refuses, secret unread")
def test_env_file_linked_to_a_root_only_file_is_not_read(prod6):
    secret = setup_canaries(prod6)
    plant_env(prod6, "symlink")
    run = prod6.fab("backup.env")
    assert run.returncode != 0, run.stdout + run.stderr
    line = one_line_error(run.stderr)
    assert "link" in line and ENV in line, line
    assert_no_secret([run.stdout, run.stderr, *stored_texts(prod6)], [secret])
    assert prod6.sh(f"ls -A {BACKUPS}").strip() == ""  # no server copy of the secret


@pytest.mark.attack(
    "FIFO, directory or huge file", checked="backup.env fails fast with one line, stores nothing"
)
@pytest.mark.parametrize("how", ["fifo", "directory", "huge"])
def test_env_file_that_is_not_a_small_file_fails_fast(prod6, how):
    setup_canaries(prod6)
    plant_env(prod6, how)
    started = time.monotonic()
    run = prod6.fab("backup.env", timeout=60)
    assert time.monotonic() - started < 30
    assert run.returncode != 0, run.stdout + run.stderr
    line = one_line_error(run.stderr)
    wanted = {"fifo": "FIFO", "directory": "directory", "huge": "MiB"}[how]
    assert wanted in line, line
    assert prod6.store.latest(prod6.box, "env") is None


@pytest.mark.attack("hard link to a root file", checked="backup.env refuses, secret unread")
def test_env_file_hard_linked_to_a_root_file_is_not_read(prod6):
    secret = setup_canaries(prod6)
    plant_env(prod6, "hardlink")
    run = prod6.fab("backup.env")
    assert run.returncode != 0, run.stdout + run.stderr
    assert "hard link" in one_line_error(run.stderr)
    assert_no_secret([run.stdout, run.stderr, *stored_texts(prod6)], [secret])


@pytest.mark.attack(
    "root-owned backup_dir", checked="a zachot-owned backup_dir is refused, naming the fix"
)
def test_backup_dir_owned_by_the_service_user_is_refused(prod6):
    setup_canaries(prod6)
    before = canary_state(prod6)
    # As the runbook's layout leaves it (the sandbox provisions it root's): the service user's.
    prod6.sh(f"chown {USER}:{USER} {BACKUPS} && chmod 0755 {BACKUPS}")
    # The guessable names of the next minutes' server copies, each a link to the canary.
    stamps = " ".join(
        time.strftime("%Y%m%d_%H%M%S", time.gmtime(time.time() + i)) for i in range(-5, 180)
    )
    attacker(prod6, f"for s in {stamps}; do ln -sf {CANARY} {BACKUPS}/zachot.env.$s; done")
    run = prod6.fab("backup.env")
    assert run.returncode != 0, run.stdout + run.stderr
    line = one_line_error(run.stderr)
    assert f"{BACKUPS} is owned by zachot; it must be root-owned 0700" in line, line
    assert f"chown root:root {BACKUPS} && chmod 0700 {BACKUPS}" in line, line
    assert prod6.store.latest(prod6.box, "env") is None  # refused before writing anything
    assert canary_state(prod6) == before


@pytest.mark.attack("root-owned backup_dir", checked="backup.env makes a 0600 copy there")
def test_root_owned_backup_dir_gets_its_copy(prod6):
    secrets = env_secrets(prod6)
    run = prod6.fab("backup.env")
    assert run.returncode == 0, run.stdout + run.stderr
    assert_no_secret([run.stdout, run.stderr], secrets)
    said = prod6.sh(f"stat -c '%a %U' {BACKUPS} {BACKUPS}/zachot.env.*").split("\n")
    assert said[0] == "700 root" and said[1].startswith("600 "), said


def _stamps(minutes: int = 3) -> str:
    # restore stamps are local time on the operator's side; cover both readings.
    now = time.time()
    seen = {
        fmt(now + i)
        for i in range(-5, minutes * 60)
        for fmt in (
            lambda t: time.strftime("%Y%m%d_%H%M%S", time.gmtime(t)),
            lambda t: time.strftime("%Y%m%d_%H%M%S", time.localtime(t)),
        )
    }
    return " ".join(sorted(seen))


@pytest.mark.attack(
    "symlink swapped mid-task", checked="restore.env: canary neither chowned nor overwritten"
)
def test_restore_env_never_writes_through_planted_links(prod6):
    setup_canaries(prod6)
    assert prod6.fab("backup.env").returncode == 0
    prod6.sh(f"echo CHANGED_BY_OPS=1 >> {ENV}")  # so the restore keeps a pre-restore copy
    before = canary_state(prod6)
    attacker(
        prod6,
        f"for s in {_stamps()}; do ln -sf {CANARY} {ENV}.pre-restore.$s; done",
    )
    run = prod6.fab("restore.env", "--yes")
    assert canary_state(prod6) == before
    if run.returncode != 0:
        one_line_error(run.stderr)  # refused clearly is fine; following the link is not


@pytest.mark.attack(
    "chown/chmod by path", checked="guided env-perms fix never chowns the linked canary"
)
def test_guided_env_fix_never_follows_a_swapped_link(prod6):
    setup_canaries(prod6)
    before = canary_state(prod6)
    prod6.sh(f"chmod 0644 {ENV}")  # the checklist offers the env-perms fix
    # The attacker keeps swapping the env file for a link to the canary and back.
    swap = (
        f"cp {ENV} {ENV_DIR}/.real; chmod 644 {ENV_DIR}/.real; end=$(($(date +%s)+90)); "
        f"while [ $(date +%s) -lt $end ]; do ln -sfn {CANARY} {ENV_DIR}/.l && "
        f"mv -T {ENV_DIR}/.l {ENV}; cp -p {ENV_DIR}/.real {ENV_DIR}/.r && "
        f"mv -T {ENV_DIR}/.r {ENV}; done"
    )
    # In the box's background, as zachot; it stops itself, or when killed by its pid.
    attacker(
        prod6,
        f"setsid sh -c '{swap}' >/dev/null 2>&1 & echo $! > /tmp/racer.pid",
    )
    try:
        for _ in range(3):
            run = prod6.fab("checklist", "--guided", "--yes", timeout=300)
            assert "Traceback" not in run.stderr
    finally:
        prod6.sh("kill $(cat /tmp/racer.pid) 2>/dev/null; true")
    assert canary_state(prod6) == before


@pytest.mark.attack(
    "symlink to a root-only file", checked="checklist and backup.logs never show it"
)
def test_logs_linked_to_a_root_only_file_are_never_read(prod6):
    secret = setup_canaries(prod6)
    prod6.sh(f"printf 'ERROR %s\\n' \"$(cat {ROOT_ONLY})\" > /root/adversary-err")
    prod6.sh(f"chmod 600 /root/adversary-err && ln /root/adversary-err {LOGS}/hard.err")
    attacker(prod6, f"ln -sf /root/adversary-err {LOGS}/api.err && ln -sf {ROOT_ONLY} {LOGS}/x.log")
    check = prod6.fab("checklist")
    logs = prod6.fab("backup.logs", "--full")
    assert logs.returncode == 0, logs.stdout + logs.stderr
    assert "skipped 1 zachot cannot read: hard.err" in logs.stdout, logs.stdout
    ref = prod6.store.latest(prod6.box, "logs")
    index = [e["path"] for e in ref.manifest.meta["index"]]
    assert "hard.err" not in index and "api.err" not in index
    assert_no_secret([check.stdout, check.stderr, logs.stdout, logs.stderr], [secret])
    assert_no_secret(stored_texts(prod6), [secret])
