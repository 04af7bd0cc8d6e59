"""status on the edges (issue 13 §6): an empty scratch box is a row, not a failure; a
changed host key exits 5 in status and checklist as in every other task."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.integration

SCRATCH, PROD = "new-box", "prod2"
REKEY = "rm -f /etc/ssh/ssh_host_*; ssh-keygen -A >/dev/null; systemctl restart ssh"


def test_an_empty_scratch_host_is_a_row_and_exit_0(fleet):
    fleet.reset(SCRATCH)  # booted from its layer: no zachot user, code or units
    run = fleet.fab("-H", SCRATCH, "status")
    assert run.returncode == 0, run.stdout + run.stderr
    [row] = [ln.split("\t") for ln in run.stdout.splitlines() if ln.startswith(SCRATCH)]
    assert row[1] == "empty scratch host" and "URLError" not in run.stdout
    doc = json.loads(fleet.fab("-H", SCRATCH, "status", "--json").stdout)
    assert doc[0]["empty_scratch"] is True and doc[0]["ok"] is True


def test_a_changed_host_key_exits_5_in_status_and_checklist(fleet):
    assert fleet.sh(PROD, REKEY).returncode == 0  # healthy or not, the key is what counts
    try:
        for args in (("status",), ("checklist",)):
            run = fleet.fab("-H", PROD, *args)
            assert run.returncode == 5, (args, run.stdout, run.stderr)
            assert "HOST KEY CHANGED" in run.stderr + run.stdout, (args, run.stderr)
    finally:
        fleet.reset(PROD)  # the recorded key again
