"""Every task against one box whose service user has planted everything at once.

The other modules of this tier each prove one hole closed. This one is the operator's day:
a box where the app's account has poisoned every place it can write (git config and hooks,
the venv's python, links from its logs to a root-only file, escape sequences in its logs),
and the real tasks run one after another, restores and deploys included. Afterwards: no
attacker code ran as root, the root-only canary and secret are untouched and unread, no raw
escape byte and no secret reached the terminal, and every task either did its job or said
what was wrong in one line.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest

from tests.integration.faults.lab import ENV, Lab, _lab

from .hostile import (
    LOGS,
    ROOT_ONLY,
    VENV,
    assert_no_secret,
    attacker,
    canary_state,
    env_secrets,
    payload,
    plant_git_config,
    ran_as_root,
    setup_canaries,
)

pytestmark = pytest.mark.integration

BOX = "prod3"
ESC = "\x1b"

# (task argv, exit codes allowed); None: any exit, as long as it is one clear line.
TASKS: list[tuple[tuple[str, ...], set[int] | None]] = [
    (("status",), None),
    (("status", "--json"), None),
    (("checklist",), None),
    (("checklist", "--json"), None),
    (("backup.env",), {0}),
    (("backup.units",), {0}),
    (("backup.logs", "--full"), {0}),
    (("backup.redis", "--yes"), {0}),
    (("backup.all", "--logs", "--redis", "--yes"), {0}),
    (("backup.verify",), {0}),
    (("restore.env", "--yes"), {0}),
    (("restore.units", "--dry-run"), {0}),
    (("restore.units", "--yes"), {0}),
    (("restore.redis", "--from", "latest", "--yes"), {0}),
    (("deploy.release", "--to=v1.1.0", "--dry-run"), {0}),
    (("deploy.release", "--to=v1.1.0", "--yes"), {0}),
    (("deploy.rollback", "--dry-run"), {0}),
    (("deploy.rollback", "--yes"), {0}),
    (("checklist", "--guided", "--yes"), None),
    (("hosts.exec", "--command", "uptime"), {0}),
]


@pytest.fixture(name="hostile")
def hostile_box(fleet, tmp_path) -> Iterator[Lab]:
    yield from _lab(fleet, tmp_path, BOX)


def poison(lab: Lab) -> None:
    """Everything the service user can plant, all at once."""
    plant_git_config(lab)
    python = f'#!/bin/sh\n{payload("python")}\nexec "$(dirname "$0")/python3" "$@"\n'
    attacker(
        lab,
        f"""
        cd {VENV}/bin && rm -f python && printf '%s' '{python}' > python && chmod +x python
        printf 'ERROR evil \\033]0;pwned\\007 \\033[2J cleared\\n' >> {LOGS}/api.err
        ln -s {ROOT_ONLY} {LOGS}/stolen.log
        ln -s {ROOT_ONLY} {LOGS}/worker.err.9
        """,
    )


@pytest.mark.attack(
    "every task on a poisoned box",
    checked="no attacker code as root; root-only canary and secret untouched and unread; "
    "no raw ESC or secret on the terminal; each task did its job or said why in one line",
)
def test_every_task_on_a_box_the_service_user_poisoned(hostile):
    root_secret = setup_canaries(hostile)
    before = canary_state(hostile)
    secrets = env_secrets(hostile)
    poison(hostile)
    runs: dict[str, subprocess.CompletedProcess[str]] = {}
    for args, codes in TASKS:
        run = hostile.fab(*args)
        said = run.stdout + run.stderr
        runs[" ".join(args)] = run
        assert "Traceback" not in said, (args, said)
        assert codes is None or run.returncode in codes, (args, run.returncode, said)
        if run.returncode:
            assert run.stderr.strip().splitlines()[-1].startswith("error: "), (args, said)
        assert ESC not in said, (args, "a raw escape byte reached the terminal")
        assert root_secret not in said, (args, "the root-only secret was read")
    assert ran_as_root(hostile) == [], "attacker code ran as root"
    assert canary_state(hostile) == before
    assert_no_secret([r.stdout + r.stderr for r in runs.values()], secrets)
    for path in hostile.store.root.rglob("*"):
        if path.is_file():
            assert root_secret.encode() not in path.read_bytes(), path
    # The box still serves: the poisoned venv python is the app's own business.
    assert hostile.fleet.health(BOX)[0] == 200
    assert ENV  # the env file was restored in place, not replaced by a link
    assert hostile.sh(f"stat -c %F {ENV}").strip() == "regular file"
