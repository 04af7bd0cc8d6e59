"""backup.verify's warning about the age identity (offsite_identity.py, from
offsite.newest_offsite), on both back ends: missing, unset, or not the key the newest
off-site backup was encrypted to."""

from __future__ import annotations

from dataclasses import replace

import pytest

from fabfile.core import offsite
from fabfile.core.offsite_identity import KEEP
from tests.sshd.test_offsite_backends import Site, replicate, s3, s3_env, site  # noqa: F401
from tests.sshd.test_replicate import backup, host, new_key, vault  # noqa: F401 (fixtures)

pytestmark = pytest.mark.sshd


def _warnings(site: Site, capsys, **settings) -> list[str]:  # noqa: F811
    changed = replace(site.host, backup=replace(site.host.backup, **settings))
    capsys.readouterr()
    states = offsite.newest_offsite([changed], site.find)
    lines = capsys.readouterr().err.splitlines()
    return [line for line in lines if "identity" in line] or [s.detail for s in states if not s.ok]


def test_verify_warns_when_the_identity_cannot_read_the_newest_off_site_backup(
    site,  # noqa: F811
    tmp_path,
    capsys,
):
    backup(site.host, ["env", "units"])
    assert all(r.ok for r in replicate(site))
    assert _warnings(site, capsys) == []
    [gone] = _warnings(site, capsys, age_identity=tmp_path / "lost.txt")
    assert "cannot read" in gone and "\n" not in gone
    [unset] = _warnings(site, capsys, age_identity=None)
    assert "backup.age_identity is not set" in unset
    new_key(tmp_path / "stranger.txt")
    [wrong] = _warnings(site, capsys, age_identity=tmp_path / "stranger.txt")
    assert "no matching identity" in wrong
    if site.kind == "sftp":  # plain metadata: verify itself passes, only the warning says it
        assert KEEP in gone and "does not read the off-site copy" in wrong
