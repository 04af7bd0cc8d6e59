"""Holes 1 and 2: root running the service user's git or the venv's python.

The repo and the venv belong to the service user, so their config, hooks and binaries are
its code. Each test plants some as `zachot`, runs a real task, and checks that nothing the
attacker wrote ran as root (`ran_as_root`), and that the task still did its job.

Two vectors reach root's git: `core.fsmonitor` (run by any index refresh, e.g. `git status`)
and a lazy fetch (a replace ref to a missing object in a repo that names a promisor remote
with an `ext::` URL: any command that reads that commit runs the URL's command, even
`git describe`). The other keys (`core.pager`, `diff.external`, `core.sshCommand`, hooks) are
planted alongside, so a later change that lets root run them is caught too.
"""

from __future__ import annotations

import pytest

from tests.integration.faults.lab import Lab

from .hostile import (
    REPO,
    ROOT_DIR,
    VENV,
    attacker,
    one_line_error,
    payload,
    plant_git_config,
    prod7_lab,  # noqa: F401
    ran_as_root,
)

pytestmark = pytest.mark.integration

GIT_CHECKED = "no git config, hook or fetch URL of the repo ran as root; the task did its job"
MISSING = "1" * 40  # an object id no repo has


def git_out(lab: Lab, *args: str) -> str:
    return attacker(lab, f"git -C {REPO} {' '.join(args)}").strip()


def plant_lazy_fetch(lab: Lab) -> str:
    """HEAD's commit replaced by a missing object, fetched on demand from an ext:: URL that
    runs the attacker's script: whoever reads HEAD's commit runs it. Returns HEAD."""
    head = git_out(lab, "rev-parse", "HEAD")
    script = f"{ROOT_DIR}/fetch-evil"
    attacker(
        lab,
        f"""
        printf '#!/bin/sh\\n%s\\nexit 1\\n' '{payload("lazy-fetch")}' > {script}
        chmod +x {script}
        cd {REPO}
        git config core.repositoryformatversion 1
        git config extensions.partialClone evil
        git config remote.evil.promisor true
        git config remote.evil.url ext::{script}
        git config protocol.ext.allow always
        mkdir -p .git/refs/replace && echo {MISSING} > .git/refs/replace/{head}
        """,
    )
    return head


def head_of(lab: Lab) -> str:
    return lab.sh(f"runuser -u zachot -- git -C {REPO} --no-replace-objects rev-parse HEAD")


@pytest.mark.attack("git config as root", checked=GIT_CHECKED)
@pytest.mark.parametrize(
    "task",
    [("status",), ("checklist",), ("deploy.release", "--to=v1.1.0", "--dry-run")],
    ids=["status", "checklist", "release-dry-run"],
)
def test_fsmonitor_never_runs_as_root(prod7, task):
    """The issue's reproduction: a plain `status` ran `core.fsmonitor` as root."""
    plant_git_config(prod7)
    run = prod7.fab(*task)
    assert ran_as_root(prod7) == [], "the repo's git config ran as root"
    assert "Traceback" not in run.stderr
    if task[0] == "checklist":
        assert "v1.2.0" in run.stdout, run.stdout  # the code row still names the deployed ref
    else:
        assert run.returncode == 0, run.stderr
        assert "v1.2.0" in run.stdout or "1.1.0" in run.stdout, run.stdout


@pytest.mark.attack("git config as root", checked=GIT_CHECKED)
def test_rollback_on_a_poisoned_repo(prod7):
    released = prod7.fab("deploy.release", "--to=v1.1.0", "--yes")
    assert released.returncode == 0, released.stderr
    plant_git_config(prod7)
    run = prod7.fab("deploy.rollback", "--yes")
    assert ran_as_root(prod7) == [], "the repo's git config or hooks ran as root"
    assert run.returncode == 0, run.stderr
    assert head_of(prod7) == git_out(prod7, "rev-parse", "v1.2.0^{commit}") + "\n"


@pytest.mark.attack("git config as root", checked=GIT_CHECKED)
def test_backup_records_the_deployed_commit_without_running_the_repos_fetch(prod7):
    head = plant_lazy_fetch(prod7)
    run = prod7.fab("backup.env")
    assert ran_as_root(prod7) == [], "a lazy fetch from the repo's config ran as root"
    assert run.returncode == 0, run.stderr
    [backup] = prod7.store.list(prod7.box, "env")
    commit = (backup.manifest.meta.get("deployed") or {}).get("commit")
    assert commit in (None, head)


@pytest.mark.attack("git config as root", checked=GIT_CHECKED)
def test_restore_server_onto_a_box_whose_repo_is_poisoned(prod7):
    backup = prod7.fab("backup.all")
    assert backup.returncode == 0, backup.stderr
    plant_git_config(prod7)
    plant_lazy_fetch(prod7)
    run = prod7.fab("restore.server", "--source", prod7.box, "--force", "--yes")
    assert ran_as_root(prod7) == [], "the repo's git config ran as root"
    if run.returncode:  # the poisoned repo cannot produce the commit: refused, in one line
        line = one_line_error(run.stderr)  # at the clone step, or at the checkout fact's git
        assert "clone the repo" in line or "fatal: replacement" in line, run.stderr


@pytest.mark.attack("venv python as root", checked="the venv's python never ran as root; "
                    "checklist still reports its version")  # fmt: skip
def test_checklist_runs_the_venvs_python_as_the_service_user(prod7):
    python = f'#!/bin/sh\n{payload("venv-python")}\nexec /usr/bin/python3 "$@"\n'
    attacker(prod7, f"cd {VENV}/bin && rm -f python && printf '%s' '{python}' > python "
                    "&& chmod +x python")  # fmt: skip
    run = prod7.fab("checklist")
    assert ran_as_root(prod7) == [], "the venv's python ran as root"
    assert "Traceback" not in run.stderr
    assert "Python 3." in run.stdout, run.stdout
