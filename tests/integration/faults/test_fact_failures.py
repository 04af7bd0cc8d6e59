"""Issue 12: a fact whose command fails is an error, not "absent".

Before, facts.gather dropped the exit status: `find` run as the service user on a logs
directory it could not read printed nothing, so `backup.logs` recorded an empty backup and
exited 0. Now the host fails with one line naming the command, its exit code and stderr's
last line; what is truly absent (a subdirectory the service user may not enter) is reported
as skipped.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .lab import Lab, _lab

pytestmark = pytest.mark.integration

FAULT = "a fact's command fails (permission denied)"
LOGS = "/opt/zachot/logs"


@pytest.fixture(name="prod6")
def prod6_lab(fleet, tmp_path) -> Iterator[Lab]:
    yield from _lab(fleet, tmp_path, "prod6")


@pytest.mark.fault(FAULT, checked="logs dir unreadable to the service user: exit 1, one line")
def test_an_unreadable_logs_directory_fails_instead_of_an_empty_backup(prod6: Lab):
    prod6.sh(f"chown root:root {LOGS} && chmod 0700 {LOGS}")
    run = prod6.fab("backup.logs")
    assert run.returncode == 1, run.stdout + run.stderr
    error = run.stderr.strip()
    assert "Traceback" not in error and len(error.splitlines()) == 1, error
    assert "find" in error and "exited 1" in error and "Permission denied" in error
    assert prod6.store.latest("prod6", "logs") is None  # no empty backup that looks fine


@pytest.mark.fault(FAULT, checked="a closed subdirectory is reported skipped; the rest lands")
def test_a_subdirectory_the_service_user_cannot_enter_is_reported_skipped(prod6: Lab):
    prod6.sh(f"mkdir -p {LOGS}/audit && echo x > {LOGS}/audit/a.log && chmod 0700 {LOGS}/audit")
    run = prod6.fab("backup.logs")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "skipped 1 zachot cannot read: audit/" in run.stdout
    assert prod6.store.latest("prod6", "logs") is not None
