"""The lost laptop, on S3: prod10's routine run sends its backups to a real S3 server
(`rclone serve s3`, started as sandbox.up starts it: sandbox/s3.py), every object age
ciphertext; the store is then deleted, restore.server rebuilds new-box from the off-site
copy alone (it fetches what it needs, and says so), and `backup.fetch` brings back the
rest: a store that verifies and decrypts."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

from fabfile.core import crypto
from fabfile.core.store import Store
from tests.integration.adversary.hostile import env_secrets
from tests.integration.faults.lab import Lab, _lab

pytestmark = pytest.mark.integration

BOX, NEW = "prod10", "new-box"
ENV = "/opt/zachot/envs/prod/etc/zachot.env"


@pytest.fixture(name="prod10")
def prod10_lab(fleet, tmp_path) -> Iterator[Lab]:
    fleet.reset(NEW)  # restored from the bucket below
    try:
        yield from _lab(fleet, tmp_path, BOX)
    finally:
        fleet.reset(NEW)


def test_routine_run_to_s3_then_fetch_rebuilds_the_lost_store(prod10: Lab, s3):
    on_s3 = {"offsite_host": None, "offsite_s3_endpoint": s3.endpoint,
             "offsite_s3_bucket": s3.bucket}  # fmt: skip
    prod10.configure(offsite=True, hosts={BOX: {"backup": on_s3}})
    run = prod10.fab("backup.all", "--offsite")
    assert run.returncode == 0, run.stdout + run.stderr
    objects = [p for p in (s3.root / s3.bucket).rglob("*") if p.is_file()]
    assert any(p.name == "index.json" for p in objects)
    assert all(p.read_bytes().startswith(crypto.MAGIC) for p in objects)  # manifests too
    stored = b"".join(p.read_bytes() for p in objects)
    for value in [*env_secrets(prod10), "API_SECRET_KEY", "REDIS_URL"]:
        assert value.encode() not in stored, f"{value[:4]}… is in the bucket"
    kept = {(ref.kind, ref.id) for ref in prod10.store.list(BOX)}
    env = prod10.store.latest(BOX, "env")
    plaintext = crypto.open_backup_file(prod10.store, env, "zachot.env", prod10.host())

    shutil.rmtree(prod10.store.root)  # the laptop is gone; the inventory and identity are not
    wheels = ("--wheelhouse", str(prod10.fleet.paths.wheels))
    restore = prod10.fab("restore.server", "--source", BOX, *wheels, "--yes", hosts=NEW)
    assert restore.returncode == 0, restore.stdout + restore.stderr
    assert f"fetched from off-site (s3://{s3.bucket})" in restore.stdout, restore.stdout
    assert prod10.sha256(ENV, box=NEW) == prod10.sha256(ENV)
    assert prod10.fleet.health(NEW)[0] == 200
    fetch = prod10.fab("backup.fetch")  # the rest: redis and logs
    assert fetch.returncode == 0, fetch.stdout + fetch.stderr
    store = Store(prod10.store.root)
    assert {(ref.kind, ref.id) for ref in store.list(BOX)} == kept
    assert store.problems() == []
    fetched = store.latest(BOX, "env")
    assert crypto.open_backup_file(store, fetched, "zachot.env", prod10.host()) == plaintext
    again = prod10.fab("backup.replicate")  # the fetched store agrees with the bucket
    assert again.returncode == 0 and "sent+verified" not in again.stdout, again.stdout
