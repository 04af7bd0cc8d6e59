"""The vault's index on the sandbox: prod12 and a private directory on the shared vault.

A routine `backup.all --offsite` leaves `<offsite_dir>/prod12/index.json` on the vault
(names, sizes and ciphertext hashes: no secret), `status` reads the off-site ages from it,
and a replicate with nothing to send is a handful of SFTP round trips however long the
history (the count against history size is tests/sshd/test_offsite_requests.py).
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import paramiko
import pytest

from fabfile.core import offsite
from fabfile.core.inventory import load_inventory
from tests.integration.adversary.hostile import env_secrets
from tests.integration.faults.lab import VAULT, VAULT_ROOT, Lab, _lab

pytestmark = pytest.mark.integration

BOX = "prod12"


@pytest.fixture(name="prod12")
def prod12_lab(fleet, tmp_path) -> Iterator[Lab]:
    yield from _lab(fleet, tmp_path, BOX)


def waits(monkeypatch) -> list[int]:
    """Counts SFTP requests that wait for their answer (round trips) from now on."""
    counted = [0]
    real = paramiko.SFTPClient._request

    def request(self, t, *args):
        counted[0] += 1
        return real(self, t, *args)

    monkeypatch.setattr(paramiko.SFTPClient, "_request", request)
    return counted


def test_routine_offsite_run_keeps_an_index_that_status_reads(prod12: Lab, monkeypatch):
    prod12.configure(offsite=True)
    for _ in range(2):
        run = prod12.fab("backup.all", "--offsite")
        assert run.returncode == 0, run.stdout + run.stderr
    path = f"{VAULT_ROOT}/{prod12.offsite_dir}/{BOX}/index.json"
    text = prod12.fleet.exec(VAULT, ["cat", path]).stdout
    stored = {(ref.kind, ref.id) for ref in prod12.store.list(BOX)}
    assert {(b["kind"], b["id"]) for b in json.loads(text)["backups"]} == stored
    for value in [*env_secrets(prod12), "REDIS_URL", "API_SECRET_KEY"]:
        assert value not in text, f"{value[:4]}… is in the vault's index"

    status = prod12.fab("status", "--json")
    [row] = json.loads(status.stdout)
    assert set(row["backups_offsite"]) == {"env", "units"}, row["backups_offsite"]

    inventory = load_inventory(prod12.inventory)
    counted = waits(monkeypatch)
    [outcome] = offsite.replicate_hosts([inventory.host(BOX)], inventory.host)
    assert outcome.ok and outcome.detail.startswith("0 sent"), outcome.detail
    assert counted[0] <= 5, counted[0]  # one read of the index, nothing per backup

    verify = prod12.fab("backup.verify")
    assert verify.returncode == 0, verify.stdout + verify.stderr
