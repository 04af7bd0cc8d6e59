"""Object Lock on a server that enforces it (AWS S3), with botocore's Stubber: an extra to
the real rclone server in tests/sshd/test_offsite_backends.py, which keeps but does not
enforce retention dates."""

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
    listing = {"Bucket": "b", "Prefix": "d/", "MaxKeys": 1000}
    stub.add_response("list_objects_v2", {"Contents": [{"Key": "d/f.age", "Size": 1}]}, listing)
    errors = [{"Key": "d/f.age", "Code": "AccessDenied", "Message": "locked"}]
    batch = {"Bucket": "b", "Delete": {"Objects": [{"Key": "d/f.age"}], "Quiet": True}}
    stub.add_response("delete_objects", {"Errors": errors}, batch)
    with stub, pytest.raises(TransferError, match=r"d/f.age: not deleted \(AccessDenied\)"):
        s3.delete_backup("d")
