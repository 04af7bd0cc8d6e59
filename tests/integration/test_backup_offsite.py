"""The store against the sandbox: off-site copies on vault, verify, and two runs at once."""

from __future__ import annotations

import json

import pytest

from fabfile.core.inventory import load_inventory
from fabfile.core.store import Store

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module", autouse=True)
def healthy_prod(fleet) -> None:
    fleet.claim("prod")


def test_offsite_copy_is_encrypted_and_verifies_on_vault(fleet):
    # --logs: the shared store may hold a plain logs backup from before logs were encrypted,
    # which replicate refuses while it is the newest (it stays local once a newer one exists).
    run = fleet.fab("-H", "prod", "backup.all", "--logs", "--offsite")
    assert run.returncode == 0, run.stdout + run.stderr
    verify = fleet.fab("-H", "prod", "backup.verify", "--kind", "env", "--json")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    rows = json.loads(verify.stdout)
    offsite = [r for r in rows if r.get("offsite")]
    newest = next(r["newest"] for r in rows if not r.get("offsite"))
    assert newest in [r["id"] for r in offsite]
    assert {(r["kind"], r["remote"], r["ok"]) for r in offsite} == {("env", "complete", True)}
    # On vault env backups are ciphertext: no key=value line of the env file survives.
    listing = fleet.exec("vault", ["find", "/", "-path", "*/prod/env/*", "-type", "f"])
    files = listing.stdout.split()
    assert any(f.endswith("zachot.env.age") for f in files), files
    for needle in ("REDIS_URL=", "API_SECRET_KEY="):
        leaked = fleet.exec("vault", ["grep", "-lF", needle, *files])
        assert leaked.returncode == 1 and leaked.stdout == "", leaked.stdout


def test_verify_fails_on_a_flipped_byte_off_site(fleet):
    assert fleet.fab("-H", "prod", "backup.all", "--logs", "--offsite").returncode == 0
    inventory = load_inventory(fleet.inventory)
    store = Store(inventory.host("prod").store.path)
    # The newest backup may only refer to an older one that holds the bytes.
    # Units are stored encrypted (age recipients are set): the vault holds the .age file.
    name = "zachot-api.service.age"
    holder = store.file_path(store.latest("prod", "units"), name).parent.name
    found = fleet.exec(
        "vault", ["find", "/", "-path", f"*/prod/units/{holder}/{name}"]
    ).stdout.split()
    [unit] = found
    flip = 'cp -p "$1" "$1.orig" && printf "\\001" | dd of="$1" bs=1 seek=40 conv=notrunc'
    fleet.exec("vault", ["sh", "-c", flip, "sh", unit])
    verify = fleet.fab("-H", "prod", "backup.verify", "--kind", "units")
    assert verify.returncode == 1
    assert "off-site" in verify.stderr
    fleet.exec("vault", ["mv", f"{unit}.orig", unit])
    assert fleet.fab("-H", "prod", "backup.verify", "--kind", "units").returncode == 0


def test_two_backup_runs_at_once_wait_for_each_other_and_both_land(fleet):
    store = Store(load_inventory(fleet.inventory).host("prod").store.path)
    before = {ref.id for ref in store.list("prod", "env")}
    runs = [fleet.fab_started("-H", "prod", "backup.all", "--logs") for _ in range(2)]
    results = [(p.wait(timeout=300), p.communicate()[1]) for p in runs]
    assert [code for code, _ in results] == [0, 0], results
    after = {ref.id for ref in store.list("prod", "env")}
    assert len(after - before) == 2
    assert store.problems("prod") == []
