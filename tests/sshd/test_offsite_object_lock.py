# ruff: noqa: F811  (the fixtures host and vault come from test_replicate)
"""Object Lock against a server that enforces it: moto's S3 server (tests/sshd/moto_s3.py),
a separate process on loopback. Our code runs as in production (offsite_backend ->
offsite_seal -> offsite_s3, prune.py, the fab task); boto3 is used directly only to read
back what the server holds and to prove that the server itself refuses to delete a locked
version. rclone's server (the sandbox's) keeps retention dates without enforcing them, so
asking it for retention is refused.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import botocore.exceptions as bce
import pytest
import yaml

from fabfile.core import offsite, offsite_backend, offsite_s3
from fabfile.core.errors import UsageError
from fabfile.core.manifest import MANIFEST_NAME
from fabfile.core.model import Host
from fabfile.core.prune import LEFTOVER, prune_offsite_host
from fabfile.core.retention import Policy
from fabfile.core.store import Store
from sandbox import s3 as rclone_s3
from tests.sshd import moto_s3
from tests.sshd.helpers import fab, write_inventory
from tests.sshd.s3_hooks import on_s3_event
from tests.sshd.test_replicate import DAY, backup, host, vault  # noqa: F401

pytestmark = pytest.mark.sshd

RETAIN = 30
KEEP_ONE = Policy(keep_last=1, keep_daily=0, keep_weekly=0, keep_monthly=0)
AWS_VARS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
            "AWS_SHARED_CREDENTIALS_FILE")  # fmt: skip


@pytest.fixture(scope="module")
def moto(tmp_path_factory) -> Iterator[moto_s3.MotoS3]:
    with moto_s3.running(tmp_path_factory.mktemp("moto")) as server:
        yield server


def _s3_host(host: Host, endpoint: str, bucket: str, monkeypatch, env: dict[str, str]) -> Host:
    for name in AWS_VARS:
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = replace(host.backup, offsite_host=None, offsite_s3_endpoint=endpoint,
                       offsite_s3_bucket=bucket, offsite_retain_days=RETAIN)  # fmt: skip
    return replace(host, backup=settings)


@pytest.fixture
def locked(host, moto, monkeypatch) -> Host:
    """The sshd tier's host, its off-site copy in a fresh moto bucket with Object Lock."""
    return _s3_host(host, moto.endpoint, moto.bucket(lock=True), monkeypatch, moto.env())


def replicate(host: Host) -> list[offsite.Row]:
    with offsite_backend.open_offsite(host, None) as backend:
        return offsite.replicate(host, backend)


def versions(moto: moto_s3.MotoS3, host: Host, *parts: str) -> list[dict]:
    """Every version and delete marker the server keeps under the host's prefix."""
    prefix = "/".join([host.backup.offsite_dir, host.name, *parts]) + "/"
    answer = moto.client().list_object_versions(Bucket=host.backup.offsite_s3_bucket,
                                                Prefix=prefix)  # fmt: skip
    return [*answer.get("Versions", ()), *answer.get("DeleteMarkers", ())]


def retention(moto: moto_s3.MotoS3, host: Host, version: dict) -> tuple[str, datetime]:
    """The version's lock as the server reports it (HEAD: moto has no GetObjectRetention)."""
    found = moto.client().head_object(
        Bucket=host.backup.offsite_s3_bucket, Key=version["Key"], VersionId=version["VersionId"]
    )
    return found.get("ObjectLockMode", ""), found["ObjectLockRetainUntilDate"]


@pytest.fixture
def requests(monkeypatch) -> list[tuple[str, dict]]:
    """The S3 operations our back end sends, with their parameters, from here on."""
    calls: list[tuple[str, dict]] = []
    on_s3_event(monkeypatch, "provide-client-params.s3",
                lambda params, model, **_: calls.append((model.name, dict(params))))  # fmt: skip
    return calls


def test_every_object_and_index_version_is_locked_compliance_until_the_date(locked, moto):
    """As the server reads it back: files, manifests and each version of the index; a new
    index version goes over locked earlier ones (a PUT adds a version, deletes nothing)."""
    backup(locked, ["env", "units"])
    start = datetime.now(UTC)
    assert all(r.ok for r in replicate(locked))
    backup(locked, ["env"], at=DAY + timedelta(days=1))
    rows = replicate(locked)
    end = datetime.now(UTC)
    assert [r.result for r in rows] == ["present", "sent+verified", "present"], rows
    stored = versions(moto, locked)
    keys = {v["Key"].split("/", 3)[-1] for v in stored}
    assert {offsite.INDEX_NAME} | {
        f"env/{ref.id}/{MANIFEST_NAME}" for ref in Store(locked.store.path).list("local", "env")
    } <= keys
    assert len([v for v in stored if v["Key"].endswith(offsite.INDEX_NAME)]) == 2
    assert len(keys) >= 7 and not [v for v in stored if "Size" not in v]  # no delete marker
    for version in stored:
        mode, until = retention(moto, locked, version)
        assert mode == "COMPLIANCE", version["Key"]
        low, high = start + timedelta(days=RETAIN, seconds=-1), end + timedelta(days=RETAIN)
        assert low <= until <= high, (version["Key"], until)
    with offsite_backend.open_offsite(locked, None) as backend:
        assert all(s.ok for s in offsite.offsite_status(locked, backend))


def test_large_file_multipart_upload_asks_for_the_lock(
    locked, moto, requests, monkeypatch, tmp_path
):
    """CreateMultipartUpload carries the lock (as AWS documents it); moto 5.2.5 drops it on
    multipart uploads, so here the request is checked, not the server's record."""
    monkeypatch.setattr(offsite_s3, "PART", 5 << 20)  # multipart above 5 MiB (S3's minimum)
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(11 << 20))
    sha = hashlib.sha256(big.read_bytes()).hexdigest()
    directory = f"{locked.backup.offsite_dir}/{locked.name}/logs/x"
    start = datetime.now(UTC)
    with offsite_s3.S3Backend.open(locked.backup) as backend:
        backend.upload(offsite_backend.Upload("big.bin", big, 11 << 20, sha), directory, "t")
    [(_, params)] = [c for c in requests if c[0] == "CreateMultipartUpload"]
    assert params["ObjectLockMode"] == "COMPLIANCE"
    assert params["ObjectLockRetainUntilDate"] - start - timedelta(days=RETAIN) < timedelta(
        seconds=5
    )
    assert [op for op, _ in requests].count("UploadPart") == 3
    assert versions(moto, locked, "logs", "x")  # it landed


def test_prune_keeps_a_locked_backup_sends_no_delete_and_the_server_refuses_one(
    locked, moto, requests, tmp_path
):
    """The policy forgets the middle backup; Object Lock keeps it (and the first one, whose
    bytes it uses), and prune says so instead of failing: a weekly routine with a retention
    longer than what the policy keeps must not fail every week."""
    for day in range(3):
        backup(locked, ["env"], at=DAY + timedelta(days=day))
    assert all(r.ok for r in replicate(locked))
    ids = [ref.id for ref in Store(locked.store.path).list("local", "env")]
    before = versions(moto, locked, "env")
    manifest = next(v for v in before if v["Key"].endswith(f"{ids[1]}/{MANIFEST_NAME}"))
    until = retention(moto, locked, manifest)[1].strftime("%Y-%m-%d %H:%M UTC")
    requests.clear()
    [result] = prune_offsite_host(
        locked, None, KEEP_ONE, kinds=("env",), local_kept={"env": set()}, apply=True
    )
    assert (result.error, result.deleted, result.forget) == ("", (), [])
    reasons = {d.id: d.reasons for d in result.decisions}
    assert f"locked until {until} (Object Lock)" in reasons[ids[1]], reasons
    assert any(r.startswith("used by") for r in reasons[ids[0]]), reasons
    deletes = [(op, p) for op, p in requests if op.startswith("Delete")]
    assert deletes == [], deletes  # our code never tried
    assert versions(moto, locked, "env") == before
    # The server enforces it: deleting a locked version by id is refused, one by one or
    # in a batch; nothing changed.
    client, bucket = moto.client(), locked.backup.offsite_s3_bucket
    with pytest.raises(bce.ClientError, match="AccessDenied"):
        client.delete_object(Bucket=bucket, Key=manifest["Key"], VersionId=manifest["VersionId"])
    batch = [{"Key": v["Key"], "VersionId": v["VersionId"]} for v in before]
    refused = client.delete_objects(Bucket=bucket, Delete={"Objects": batch})["Errors"]
    assert {e["Code"] for e in refused} == {"AccessDenied"} and len(refused) == len(before)
    assert versions(moto, locked, "env") == before
    # The task: exit 0, the lock shown as why the backup is kept, nothing deleted off-site.
    done = fab(inventory(locked, tmp_path), "-H", "local", "backup.prune", "--kind", "env",
               "--yes")  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"locked until {until} (Object Lock)" in done.stdout
    assert versions(moto, locked, "env") == before


def test_once_the_retention_ends_prune_deletes_every_version(locked, moto, monkeypatch):
    """The two oldest backups go up with a retain-until date seconds ahead (our clock moved
    back RETAIN days while uploading them; the server checks its own clock), the next two
    with the full retention. Once the short one passes, prune deletes the two oldest for
    good, every version (not only behind a delete marker), and keeps the locked third."""
    env_file = Path(locked.layout.env_file)
    original = env_file.read_text()
    real_now = offsite_s3._now
    monkeypatch.setattr(offsite_s3, "_now", lambda: real_now() - timedelta(days=RETAIN, seconds=-3))
    for day in range(4):
        env_file.write_text(f"{original}EXTRA=version-{day}\n")  # no backup uses another's
        backup(locked, ["env"], at=DAY + timedelta(days=day))
        if day == 1:
            assert all(r.ok for r in replicate(locked))
            short = max(retention(moto, locked, v)[1] for v in versions(moto, locked, "env"))
            monkeypatch.setattr(offsite_s3, "_now", real_now)
    assert all(r.ok for r in replicate(locked))
    assert short < real_now() + timedelta(seconds=10)
    time.sleep(max(0.0, (short - real_now()).total_seconds()) + 1.1)
    ids = [ref.id for ref in Store(locked.store.path).list("local", "env")]
    [result] = prune_offsite_host(
        locked, None, KEEP_ONE, kinds=("env",), local_kept={"env": set()}, apply=True
    )
    assert (result.error, result.deleted) == ("", (ids[1], ids[0]))
    reasons = {d.id: d.reasons for d in result.decisions}
    assert any(r.endswith("(Object Lock)") for r in reasons[ids[2]]), reasons
    for gone in ids[:2]:
        assert versions(moto, locked, "env", gone) == []  # no version, no delete marker
    assert versions(moto, locked, "env", ids[2]) and versions(moto, locked, "env", ids[3])
    with offsite_backend.open_offsite(locked, None) as backend:
        states = offsite.offsite_status(locked, backend)
    remote = {s.id: s.remote for s in states}  # the two oldest were pruned off-site only
    assert remote == {
        ids[0]: "missing",
        ids[1]: "missing",
        ids[2]: "complete",
        ids[3]: "complete",
    }, states


@pytest.mark.parametrize("server", ["moto", "rclone"])
def test_retention_on_a_bucket_without_object_lock_is_one_clear_error(
    server, host, moto, monkeypatch, tmp_path
):
    """moto: a bucket created without Object Lock; rclone: a server that would keep the
    date without enforcing it. Either way nothing is sent and the message names the fix."""
    if server == "moto":
        site = _s3_host(host, moto.endpoint, moto.bucket(lock=False), monkeypatch, moto.env())
        client = moto.client()
    else:
        rclone = rclone_s3.start(tmp_path / "rclone")
        site = _s3_host(host, rclone.endpoint, rclone.bucket, monkeypatch, rclone.env())
        client = None
    try:
        backup(site, ["units"])
        rows = replicate(site)
        assert rows and not any(r.ok for r in rows)
        fix = "has no Object Lock; create the bucket with Object Lock enabled, or set " \
              "backup.offsite_retain_days: 0"  # fmt: skip
        assert all(fix in r.detail and "\n" not in r.detail for r in rows), rows
        with pytest.raises(UsageError, match=fix), offsite_s3.S3Backend.open(site.backup) as b:
            b.upload(offsite_backend.Upload("x", Path("x"), 1, "0" * 64, b"x"), "d", "t")
        if client is not None:
            answer = client.list_objects_v2(Bucket=site.backup.offsite_s3_bucket)
            assert answer.get("KeyCount", 0) == 0  # nothing sent
        else:
            assert not list((rclone.root / rclone.bucket).rglob("*.age"))
        without = replace(site, backup=replace(site.backup, offsite_retain_days=0))
        assert all(r.ok for r in replicate(without))  # the fix it names works
    finally:
        if server == "rclone":
            rclone_s3.stop(tmp_path / "rclone")


def inventory(host: Host, tmp_path: Path) -> Path:
    path = write_inventory(host, tmp_path / "inv.yml")
    data = yaml.safe_load(path.read_text())
    data["all"]["vars"]["backup"].update(keep_last=1, keep_daily=0, keep_weekly=0,
                                         keep_monthly=0)  # fmt: skip
    path.write_text(yaml.safe_dump(data))
    return path


def test_a_locked_leftover_is_kept_and_said_so(locked, moto, requests):
    """An interrupted upload whose backup the store no longer has: no manifest, its files
    locked. Prune keeps it, says why, and sends no delete (rather than fail every run)."""
    for day in range(2):
        backup(locked, ["env"], at=DAY + timedelta(days=day))
    assert all(r.ok for r in replicate(locked))
    stray = f"{locked.backup.offsite_dir}/{locked.name}/env/20261020T000000Z"
    with offsite_backend.open_offsite(locked, None) as backend:
        data = b"half an upload"
        item = offsite_backend.Upload("zachot.env.age", Path("x"), len(data),
                                      hashlib.sha256(data).hexdigest(), data)  # fmt: skip
        backend.upload(item, stray, "t")
    [version] = versions(moto, locked, "env", "20261020T000000Z")
    until = retention(moto, locked, version)[1].strftime("%Y-%m-%d %H:%M UTC")
    requests.clear()
    [result] = prune_offsite_host(
        locked, None, KEEP_ONE, kinds=("env",), local_kept={"env": set()}, apply=True
    )
    assert (result.error, result.leftovers, result.deleted) == ("", (), ())
    reasons = {d.id: d.reasons for d in result.decisions}
    assert reasons["20261020T000000Z"] == (f"{LEFTOVER}; locked until {until} (Object Lock)",)
    assert not [op for op, _ in requests if op.startswith("Delete")]
    assert versions(moto, locked, "env", "20261020T000000Z") == [version]
