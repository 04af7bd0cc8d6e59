"""Object Lock as AWS S3 answers it, with botocore's Stubber: an extra to the real server
that enforces it (moto's) in tests/sshd/test_offsite_object_lock.py."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import boto3
import pytest
from botocore.stub import ANY, Stubber

from fabfile.core.errors import TransferError
from fabfile.core.model import BackupSettings
from fabfile.core.offsite_backend import Upload
from fabfile.core.offsite_s3 import S3Backend

pytestmark = pytest.mark.unit

SETTINGS = BackupSettings(
    offsite_s3_endpoint="https://s3.example", offsite_s3_bucket="b", offsite_retain_days=30
)


def backend() -> tuple[S3Backend, Stubber]:
    client = boto3.client(
        "s3", region_name="us-east-1", aws_access_key_id="k", aws_secret_access_key="s"
    )
    return S3Backend(SETTINGS, client), Stubber(client)


def test_uploads_carry_a_retention_date_and_locked_backups_are_reported():
    s3, stub = backend()
    data = b"ciphertext"
    put = {"Bucket": "b", "Key": "z/h/env/1/f.age", "Body": data, "ChecksumSHA256": ANY,
           "ContentMD5": ANY, "ObjectLockMode": "COMPLIANCE",
           "ObjectLockRetainUntilDate": ANY}  # fmt: skip
    enabled = {"ObjectLockConfiguration": {"ObjectLockEnabled": "Enabled"}}
    stub.add_response("get_object_lock_configuration", enabled, {"Bucket": "b"})
    stub.add_response("put_object", {"ETag": '"x"'}, put)
    until = datetime.now(UTC) + timedelta(days=30)
    head = {"Bucket": "b", "Key": "z/h/env/1/manifest.json"}
    stub.add_response("head_object", {"ObjectLockRetainUntilDate": until}, head)
    stub.add_response(
        "head_object", {"ObjectLockRetainUntilDate": datetime(2020, 1, 1, tzinfo=UTC)}, head
    )
    with stub:
        item = Upload("f.age", None, len(data), hashlib.sha256(data).hexdigest(), data)
        s3.upload(item, "z/h/env/1", "t")
        assert s3.locked_until("z/h/env/1") == until.strftime("%Y-%m-%d %H:%M UTC")
        assert s3.locked_until("z/h/env/1") is None  # retention over: prune may delete
    stub.assert_no_pending_responses()


def test_a_delete_refused_by_the_lock_is_one_line():
    s3, stub = backend()
    stub.add_response("delete_object", {}, {"Bucket": "b", "Key": "d/manifest.json"})
    # Multipart uploads a dead link left open are aborted with the backup (none here).
    stub.add_response("list_multipart_uploads", {}, {"Bucket": "b", "Prefix": "d/"})
    # A versioned bucket (Object Lock implies it): every version goes, by its id.
    stub.add_response("get_bucket_versioning", {"Status": "Enabled"}, {"Bucket": "b"})
    listing = {"Bucket": "b", "Prefix": "d/", "MaxKeys": 1000}
    found = {"Versions": [{"Key": "d/f.age", "VersionId": "v1"}]}
    stub.add_response("list_object_versions", found, listing)
    errors = [{"Key": "d/f.age", "Code": "AccessDenied", "Message": "locked"}]
    objects = [{"Key": "d/f.age", "VersionId": "v1"}]
    batch = {"Bucket": "b", "Delete": {"Objects": objects, "Quiet": True}}
    stub.add_response("delete_objects", {"Errors": errors}, batch)
    with (
        stub,
        pytest.raises(
            TransferError,
            match=r"d/f.age: not deleted \(AccessDenied\); Object Lock still retains it",
        ),
    ):
        s3.delete_backup("d")
