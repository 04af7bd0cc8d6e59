"""Round trips per S3 upload, against a real `rclone serve s3` (figure 8, issue 11 §5).

botocore asks the server's go-ahead (`Expect: 100-continue`) before every PUT body: one
more round trip per object, which on a 30 ms link doubled a first full copy's time.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.sshd.s3_hooks import on_s3_event
from tests.sshd.test_offsite_backends import replicate, s3, s3_env, s3_site  # noqa: F401
from tests.sshd.test_replicate import DAY, backup, host, vault  # noqa: F401 (fixtures)

pytestmark = pytest.mark.sshd


def test_uploads_do_not_wait_for_a_100_continue(s3_site, monkeypatch):  # noqa: F811
    for day in range(2):
        backup(s3_site.host, ["env", "units"], at=DAY + timedelta(days=day))
    sent: list[tuple[str, str | None]] = []

    def record(request, **_) -> None:
        expect = request.headers.get("Expect")
        sent.append((request.method, expect.decode() if expect else None))

    on_s3_event(monkeypatch, "before-send.s3", record)
    rows = replicate(s3_site)
    assert rows and all(r.ok for r in rows)
    puts = [expect for method, expect in sent if method == "PUT"]
    assert len(puts) >= 4  # every file and manifest, then the index
    assert puts == [None] * len(puts)
