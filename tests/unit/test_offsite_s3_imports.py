"""Start-up of an S3 run: the back end stands on botocore alone. boto3 (and s3transfer,
which it pulls in) adds about 0.4 s of imports to every `fab` run that uses S3, which is
most of a routine replicate's own time (figure 8b)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.unit

PROBE = """
import sys
from fabfile.core import offsite_s3
from fabfile.core.errors import ZachotError
from fabfile.core.model import BackupSettings
settings = BackupSettings(offsite_s3_endpoint="http://127.0.0.1:9", offsite_s3_bucket="b")
try:  # a client made and a request tried (nothing listens on port 9)
    with offsite_s3.S3Backend.open(settings):
        pass
except ZachotError as exc:
    print(type(exc).__name__)
print(sorted(m for m in ("boto3", "s3transfer") if m in sys.modules))
"""


def test_the_s3_back_end_does_not_import_boto3():
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "ZKTEST", "AWS_SECRET_ACCESS_KEY": "not-a-secret"}
    done = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=60, env=env
    )
    assert done.stdout.split("\n")[:2] == ["TransferError", "[]"], done.stderr
