"""Always encrypted on S3: every object in the bucket is age ciphertext, the manifests and
the per-host index included (offsite_seal.py), against a real `rclone serve s3`."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from fabfile.core import crypto, offsite, offsite_backend
from fabfile.core.errors import UsageError
from fabfile.core.manifest import MANIFEST_NAME
from fabfile.core.store import Store
from tests.sshd.test_offsite_backends import (  # noqa: F401 (fixtures)
    Site,
    _client,
    replicate,
    s3,
    s3_env,
    s3_site,
    status,
)
from tests.sshd.test_replicate import backup, host, vault  # noqa: F401 (fixtures)

pytestmark = pytest.mark.sshd


def _with(site: Site, **settings) -> Site:
    return replace(site, host=replace(site.host, backup=replace(site.host.backup, **settings)))


def test_every_object_in_the_bucket_is_age_ciphertext(s3_site):  # noqa: F811
    backup(s3_site.host, ["env", "units"])
    assert all(r.ok for r in replicate(s3_site))
    objects = sorted(p for p in s3_site.stored().rglob("*") if p.is_file())
    names = {p.name for p in objects}
    assert {offsite.INDEX_NAME, MANIFEST_NAME, "zachot.env.age"} <= names
    plain = [p.name for p in objects if not p.read_bytes().startswith(crypto.MAGIC)]
    assert plain == []
    index = s3_site.stored(offsite.INDEX_NAME).read_bytes()
    data = json.loads(crypto.decrypt(index, s3_site.host.backup.age_identity, what="index"))
    assert data["host"] == s3_site.host.name and len(data["backups"]) == 2
    assert all(s.ok for s in status(s3_site))  # deep: the sealed manifests read back


def test_a_lost_index_is_rebuilt_from_sealed_manifests_without_sending_again(s3_site):  # noqa: F811
    backup(s3_site.host, ["env", "units"])
    replicate(s3_site)
    bucket, key = s3_site.host.backup.offsite_s3_bucket, offsite.index_path(s3_site.host)
    _client(s3_site).delete_object(Bucket=bucket, Key=key)
    rows = replicate(s3_site)
    assert {r.result for r in rows} == {"present"}, rows  # sizes compared in plaintext
    assert s3_site.stored(offsite.INDEX_NAME).read_bytes().startswith(crypto.MAGIC)
    assert {r.result for r in replicate(s3_site, rescan=True)} == {"present"}


def test_no_recipients_for_an_s3_host_is_refused_naming_the_key(s3_site):  # noqa: F811
    plain = _with(s3_site, age_recipients=())
    with pytest.raises(UsageError, match=r"backup\.age_recipients is not set; set it") as caught:
        offsite_backend.locate(plain.host, plain.find)
    assert "\n" not in caught.value.message
    [outcome] = offsite.replicate_hosts([plain.host], plain.find)
    assert not outcome.ok and "backup.age_recipients" in outcome.detail
    assert not s3_site.stored().exists()
    # The per-kind opt-out: those kinds go plain, the metadata with them.
    opted = _with(plain, offsite_plain=("units",))
    backup(opted.host, ["units"])
    assert all(r.ok for r in replicate(opted))
    [ref] = Store(opted.host.store.path).list("local", "units")
    manifest = opted.stored("units", ref.id, MANIFEST_NAME).read_bytes()
    assert manifest == offsite.offsite_manifest(ref)


def test_without_the_identity_replicate_says_which_key_to_set(s3_site):  # noqa: F811
    backup(s3_site.host, ["units"])
    replicate(s3_site)
    lost = _with(s3_site, age_identity=None)
    [outcome] = offsite.replicate_hosts([lost.host], lost.find)
    assert not outcome.ok and "backup.age_identity is not set" in outcome.detail
    assert "\n" not in outcome.detail
