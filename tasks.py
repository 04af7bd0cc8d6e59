"""Tasks for working on the project itself: test, lint, demo, sandbox.

The backup and recovery tasks live in fabfile/ and run with `fab`.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

from invoke import Collection, task

from sandbox.tasks import ns as sandbox

ROOT = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
SANDBOX_INVENTORY = ROOT / "sandbox" / "inventory.yml"


@task(help={"unit": "only the fast unit tier", "k": "pytest -k expression"})
def test(c, unit=False, k=None):
    """Run the tests: unit, sshd (real OpenSSH) and integration (sandbox fleet)."""
    args = ["-m", "unit"] if unit else []
    args += ["-k", k] if k else []
    # python -m: the fault report plugin is imported from the checkout.
    report = ["-p", "tests.integration.faults.report"]
    with c.cd(str(ROOT)):
        c.run(shlex.join([f"{BIN}/python", "-m", "pytest", *report, *args]), pty=False)


@task
def lint(c):
    """ruff lint and format check."""
    c.run(f"{BIN}/ruff check .")
    c.run(f"{BIN}/ruff format --check .")


@task
def demo(c):
    """Bring the sandbox up, then run the main job on it: back up prod, show the store."""
    from sandbox.tasks import up

    up(c)
    env = {"ZACHOT_INVENTORY": str(SANDBOX_INVENTORY)}
    for command in (
        "-H prod backup.all --logs --offsite",
        "-H prod backup.list",
        "-H prod backup.verify",
    ):
        c.run(f"{BIN}/fab {command}", env=env)


@task(
    help={
        "only": "figures to run, e.g. 2 or 1,3 (default: all five)",
        "quick": "one repetition and a fifth of the data: a smoke run",
        "reps": "repetitions per side (default 3)",
    }
)
def bench(c, only=None, quick=False, reps=None):
    """Benchmarks on the sandbox fleet; tables in bench/results/ (see bench/README.md).

    Exits 1 when a figure misses its target or fails; the table says which."""
    from invoke.exceptions import Exit

    args = [f"{BIN}/python", "-m", "bench"] + (["--only", only] if only else [])
    args += (["--quick"] if quick else []) + (["--reps", str(reps)] if reps else [])
    with c.cd(str(ROOT)):
        result = c.run(shlex.join(args), pty=False, warn=True)
    if result.exited:
        raise Exit(code=result.exited)


@task(help={"k": "pytest -k expression (e.g. sudo)"})
def faults(c, k=None):
    """The fault suite on the sandbox fleet (tests/integration/faults), then its report:
    one row per fault class with the cases tried and survived, in Markdown."""
    from invoke.exceptions import Exit

    args = [f"{BIN}/python", "-m", "pytest", "-p", "tests.integration.faults.report"]
    args += ["tests/integration/faults"] + (["-k", k] if k else [])
    with c.cd(str(ROOT)):  # python -m: the report plugin is imported from the checkout
        result = c.run(shlex.join(args), pty=False, warn=True)
    if result.exited:
        raise Exit(code=result.exited)


ns = Collection(test, lint, demo, bench, faults, sandbox)
