"""backup.logs names its archive by the compressor the box chose, read from the first bytes."""

from __future__ import annotations

import gzip
import io
import tarfile

import pytest

from fabfile.core.backups.logs import archive_name

pytestmark = pytest.mark.unit


def _tar() -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        member = tarfile.TarInfo("api.log")
        member.size = 5
        tar.addfile(member, io.BytesIO(b"line\n"))
    return buffer.getvalue()


def test_gzip_zstd_and_plain_archives_get_their_names():
    forms = {
        "logs.tar.gz": gzip.compress(_tar()),
        "logs.tar.zst": b"\x28\xb5\x2f\xfd" + bytes(60),  # a zstd frame's magic number
        "logs.tar": _tar(),
    }
    for expected, data in forms.items():
        assert archive_name(data[:8]) == expected


def test_an_empty_or_short_stream_is_a_plain_tar():
    for data in (b"", b"\x1f", b"\x28\xb5\x2f"):
        assert archive_name(data) == "logs.tar"
