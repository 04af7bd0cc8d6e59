"""The lost-laptop drill (issue 11, scenario 5), against each off-site back end.

prod11's routine run sends its backups off-site (the SFTP vault, or a fresh `rclone serve
s3`); the whole local store is then deleted, and `drill` restores new-box from the off-site
copy alone: its plan says where the backups came from, the env is byte-identical, the API
is healthy, and the report (written to the rebuilt store) records the source and holds no
secret. Each case prints the measured RTO from the off-site copy.
"""

from __future__ import annotations

import dataclasses
import json
import re
import secrets
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from fabfile.core.store import Store
from tests.integration.adversary.hostile import env_secrets
from tests.integration.faults.lab import VAULT, VAULT_ROOT, Lab

pytestmark = pytest.mark.integration

BOX, NEW = "prod11", "new-box"
ENV = "/opt/zachot/envs/prod/etc/zachot.env"
VERDICT = re.compile(r"^Drill (\S+): PASS; report: (\S+\.md) and (\S+\.json)$", re.MULTILINE)
RTO = re.compile(r"^Measured RTO: ([0-9.]+) s", re.MULTILINE)
STRIP = (
    "systemctl stop zachot-api zachot-worker; "
    f"rm -f -- {ENV} /etc/systemd/system/zachot-*.service && systemctl daemon-reload"
)


@pytest.fixture(name="prod11", scope="module")
def prod11_lab(fleet, tmp_path_factory) -> Iterator[Lab]:
    """One lab for both back ends: prod11 is only backed up, so it is used as found (unless
    unhealthy); new-box is reset before and after, its own offsite_dir removed after."""
    fleet.claim(BOX)
    fleet.reset(NEW)
    tmp = tmp_path_factory.mktemp("offsite-drill")
    private = dataclasses.replace(fleet, inventory=tmp / "inventory.yml")
    lab = Lab(private, BOX, tmp, Store(tmp / "store"), f"drill-{secrets.token_hex(4)}",
              fleet.inventory)  # fmt: skip
    try:
        yield lab
    finally:
        fleet.reset(NEW)
        fleet.exec(VAULT, ["rm", "-rf", "--", f"{VAULT_ROOT}/{lab.offsite_dir}"])


@pytest.fixture
def lab(prod11: Lab) -> Lab:
    """An empty store, and a new-box with no env, no units and no zachot running, so the
    drill must restore them from the off-site copy. A second drill keeps the first one's
    code and venv (a full reset costs a pip install): its RTO leaves those steps out."""
    prod11.sh(STRIP, box=NEW)
    shutil.rmtree(prod11.store.root, ignore_errors=True)
    return prod11


@pytest.mark.parametrize("backend", ["sftp", "s3"])
def test_drill_from_an_empty_store_restores_new_box_from_off_site(
    lab: Lab, backend: str, request, record_property
):
    if backend == "s3":
        s3 = request.getfixturevalue("s3")
        on_s3 = {"offsite_host": None, "offsite_s3_endpoint": s3.endpoint,
                 "offsite_s3_bucket": s3.bucket}  # fmt: skip
        lab.configure(offsite=True, hosts={BOX: {"backup": on_s3}})
        named = f"s3://{s3.bucket}"
    else:
        lab.configure(offsite=True)  # the vault, in this lab's own offsite_dir
        named = lab.host().backup.offsite_host
    run = lab.fab("backup.all", "--offsite")
    assert run.returncode == 0, run.stdout + run.stderr
    wanted = {kind: lab.store.latest(BOX, kind).id for kind in ("env", "units")}

    shutil.rmtree(lab.store.root)  # the laptop is gone; the inventory and identity are not
    wheels = ("--wheelhouse", str(lab.fleet.paths.wheels))
    plan = lab.fab("drill", "--source", BOX, "--dry-run", *wheels, hosts=NEW)
    assert plan.returncode == 0, plan.stdout + plan.stderr
    for kind, backup_id in wanted.items():  # the fetch is in the plan, as a command
        assert f"would fetch {kind} {backup_id} (" in plan.stdout, plan.stdout
    assert f"would fetch from off-site ({named})" in plan.stdout, plan.stdout
    assert not lab.store.root.exists()  # and a dry run fetched nothing

    drill = lab.fab("drill", "--source", BOX, "--yes", *wheels, hosts=NEW)
    out = drill.stdout + drill.stderr
    assert drill.returncode == 0, out
    assert f"fetched from off-site ({named})" in drill.stdout, drill.stdout
    assert lab.sha256(ENV, box=NEW) == lab.sha256(ENV)
    assert lab.fleet.health(NEW)[0] == 200

    found = VERDICT.search(drill.stdout)
    assert found, drill.stdout
    md = Path(found[2])
    js = md.with_name(found[3])
    assert md.parent == lab.store.drills_dir(BOX)  # in the rebuilt store
    doc = json.loads(js.read_text())
    assert doc["pass"] is True, doc["failures"]
    assert doc["fetched"]["from"] == named, doc["fetched"]
    assert doc["fetched"]["backups"] == {kind: [i] for kind, i in wanted.items()}
    assert doc["steps"][0]["name"] == "fetch" and doc["steps"][0]["result"] == "ok"
    assert f"restored from the off-site copy ({named})" in md.read_text()
    for path in lab.store.root.rglob("*"):  # the rebuilt store is private
        mode = stat.S_IMODE(path.lstat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), f"{path}: {mode:o}"
    for text in (drill.stdout, drill.stderr, md.read_text(), js.read_text()):
        for secret in env_secrets(lab):
            assert secret not in text, f"secret {secret[:4]}… leaked"
    seconds = float(RTO.search(drill.stdout)[1])
    record_property(f"offsite_drill_rto_{backend}", seconds)
    print(f"drill of {BOX} onto {NEW} from off-site ({backend}): measured RTO {seconds} s")
