"""Choosing the off-site back end from the inventory (offsite_backend.locate)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from fabfile.core.errors import UsageError
from fabfile.core.inventory import load_inventory
from fabfile.core.model import BackupSettings, Host
from fabfile.core.offsite_backend import grouped, has_offsite, locate
from sandbox.config import Paths, fleet_specs
from sandbox.inventory import write_inventory

pytestmark = pytest.mark.unit

S3 = BackupSettings(offsite_s3_endpoint="http://127.0.0.1:9333", offsite_s3_bucket="zachot")


def test_sandbox_hosts_use_the_vault_and_an_s3_host_is_grouped_apart(tmp_path: Path):
    """No sandbox host is on S3 by default (a test that wants S3 configures its own host), so
    every task's off-site copy needs no S3 credentials; an S3 host forms its own group."""
    paths = Paths(tmp_path)
    path = write_inventory(paths, fleet_specs(10), "http://x/zachot.git", tmp_path / "inv.yml")
    inventory = load_inventory(path)
    prod10, prod9 = inventory.host("prod10"), inventory.host("prod9")
    assert {prod10.backup.offsite_host, prod9.backup.offsite_host} == {"vault"}
    assert prod10.backup.offsite_s3_bucket is None
    on_s3 = replace(prod10, backup=replace(prod10.backup, offsite_host=None,
                                           offsite_s3_endpoint=S3.offsite_s3_endpoint,
                                           offsite_s3_bucket=S3.offsite_s3_bucket))  # fmt: skip
    groups, errors = grouped([on_s3, prod9], inventory.host)
    assert sorted(groups) == ["s3:http://127.0.0.1:9333/zachot", "vault"] and not errors


def test_each_missing_or_conflicting_setting_is_named():
    def find(name):
        return Host(name=name)

    with pytest.raises(UsageError, match=r"set backup\.offsite_host"):
        locate(Host(name="a"), find)
    both = replace(S3, offsite_host="vault")
    with pytest.raises(UsageError, match=r"either backup\.offsite_host .* not both"):
        locate(Host(name="a", backup=both), find)
    half = BackupSettings(offsite_s3_bucket="zachot")
    with pytest.raises(UsageError, match=r"needs backup\.offsite_s3_endpoint too"):
        locate(Host(name="a", backup=half), find)
    assert has_offsite(Host(name="a", backup=S3)) and not has_offsite(Host(name="a"))


def test_s3_hosts_share_a_session_only_when_sealed_to_the_same_keys():
    def host(name: str, *keys: str) -> Host:
        return Host(name=name, backup=replace(S3, age_recipients=keys))

    hosts = [host("a", "age1x"), host("b", "age1x"), host("c", "age1y"), host("d")]
    groups, errors = grouped(hosts, host)
    members = {key: [h.name for h in group] for key, (_, group) in groups.items()}
    s3 = "s3:http://127.0.0.1:9333/zachot"
    assert members == {s3: ["a", "b"], f"{s3} #2": ["c"]}
    assert "backup.age_recipients is not set; set it" in errors["d"].message
