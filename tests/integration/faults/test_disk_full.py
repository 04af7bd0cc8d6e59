"""A full disk on whichever side writes: the operator's store, the server's copy of the env
file in /opt/zachot/backups, and the push of a restore. One clear error, the original
files intact, nothing half-written under a final name, and a retry once there is room."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest

from . import inject
from .lab import ENV, Lab, prod9_lab  # noqa: F401  (fixture)

pytestmark = pytest.mark.integration

FAULT_SERVER = "server disk full"
FAULT_LOCAL = "local disk full"
NO_SPACE = "No space left on device"
BACKUPS = "/opt/zachot/backups"
ENV_DIR = "/opt/zachot/envs/prod/etc"
PAGE = 4096  # tmpfs gives out whole pages: one file of a few hundred bytes takes one


def files_in(lab: Lab, directory: str) -> dict[str, str]:
    """name -> sha256 of every file in a directory on the box, dot files too."""
    script = 'cd "$1" && for f in .[!.]* *; do [ -f "$f" ] && sha256sum "$f"; done; true'
    said = lab.fleet.exec(lab.box, ["sh", "-c", script, "sh", directory]).stdout
    return {name: sha for sha, name in (line.split() for line in said.splitlines())}


def error_line(run) -> str:
    errors = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in run.stderr, run.stderr
    return errors[0]


@pytest.mark.fault(
    FAULT_SERVER, checked="server env copy: clear error, no partial copy, a retry copies"
)
def test_full_server_backup_dir_fails_the_copy_cleanly(prod9):
    env_sha = prod9.sha256(ENV)
    with inject.tmpfs(prod9.fleet, prod9.box, BACKUPS, "16k"):
        inject.fill(prod9.fleet, prod9.box, BACKUPS)
        run = prod9.fab("backup.env")
        assert run.returncode == 1, run.stdout + run.stderr
        assert NO_SPACE in error_line(run) and "env:" in error_line(run)
        assert [n for n in files_in(prod9, BACKUPS) if n.startswith("zachot.env")] == []
        assert prod9.sha256(ENV) == env_sha
        # The store's copy is whole: it was pulled and committed before the server copy.
        stored = prod9.store.latest(prod9.box, "env")
        assert stored is not None and inject.leftovers(prod9.store.root) == []
        assert prod9.fab("backup.verify", "--kind", "env").returncode == 0
        assert inject.store_lock_free(prod9.store.root)

        prod9.sh(f"rm {BACKUPS}/.fault-filler")
        again = prod9.fab("backup.env")
        assert again.returncode == 0, again.stdout + again.stderr
        # The env did not change, but the server still lacked its copy: the retry makes it.
        copies = [
            sha for name, sha in files_in(prod9, BACKUPS).items() if name.startswith("zachot")
        ]
        assert copies == [env_sha]


@pytest.fixture
def changed_env(prod9) -> Iterator[tuple[Lab, str, str]]:
    """A backup of the env file, then the file changed on the box: (lab, backup's sha256,
    changed sha256). A restore of that backup has a file to keep and one to push."""
    assert prod9.fab("backup.env").returncode == 0
    backed_up = prod9.sha256(ENV)
    prod9.sh(f"echo FAULT_EXTRA=1 >> {ENV}")
    yield prod9, backed_up, prod9.sha256(ENV)


@pytest.mark.fault(FAULT_SERVER, checked="restore push: clear error, env intact, no partial file")
@pytest.mark.parametrize(
    ("room", "fails_at"),
    [(0, "the copy kept as *.pre-restore"), (PAGE, "the push of the backup")],
    ids=["no room to keep the old file", "no room for the new file"],
)
def test_full_env_dir_fails_the_restore_and_keeps_the_file(changed_env, room, fails_at):
    lab, backed_up, current = changed_env
    with inject.tmpfs(lab.fleet, lab.box, ENV_DIR, "12k"):  # the file, and room for two
        inject.fill(lab.fleet, lab.box, ENV_DIR, leave=room)
        run = lab.fab("restore.env", "--yes")
        assert run.returncode == 1, run.stdout + run.stderr
        line = error_line(run)
        assert NO_SPACE in line and "step 2 'put env backup" in line, (fails_at, line)
        files = files_in(lab, ENV_DIR)
        assert files.pop("zachot.env") == current
        files.pop(".fault-filler")
        # Whatever else is there is a whole copy of the old file, never a truncated one.
        assert set(files.values()) <= {current}, files
        assert all(".pre-restore." in name for name in files), files
        assert lab.sh(f"stat -c '%a %U:%G' {ENV}").strip() == "600 zachot:zachot"
        assert inject.run_lock_free(lab.fleet, lab.box)

        lab.sh(f"rm {ENV_DIR}/.fault-filler")
        again = lab.fab("restore.env", "--yes")
        assert again.returncode == 0, again.stdout + again.stderr
        assert lab.sha256(ENV) == backed_up
        kept = {sha for name, sha in files_in(lab, ENV_DIR).items() if ".pre-restore." in name}
        assert kept == {current}  # the operator can undo
        assert lab.healthy()


@pytest.fixture
def tiny_store(prod9) -> Iterator[Lab]:
    """prod9's lab with its store on a 1 MB tmpfs on this machine."""
    root = prod9.store.root
    root.mkdir(mode=0o700)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs", str(root)],
                   check=True)  # fmt: skip
    try:
        yield prod9
    finally:
        subprocess.run(["umount", str(root)], check=True)


@pytest.mark.fault(FAULT_LOCAL, checked="store on a full tmpfs: clear error, nothing half-written")
def test_full_local_store_fails_cleanly_and_releases_the_lock(tiny_store):
    lab = tiny_store
    lab.sh("head -c 3M /dev/urandom > /opt/zachot/logs/big.log")  # incompressible
    run = lab.fab("backup.all", "--logs")
    assert run.returncode == 1, run.stdout + run.stderr
    line = error_line(run)
    assert NO_SPACE in line and "on this machine" in line and "connection lost" not in line
    assert lab.store.latest(lab.box, "logs") is None
    assert inject.leftovers(lab.store.root) == []
    assert inject.store_lock_free(lab.store.root)
    # The kinds that fit landed whole and verify.
    assert lab.fab("backup.verify", "--kind", "env").returncode == 0
    again = lab.fab("backup.all")
    assert again.returncode == 0, again.stdout + again.stderr
