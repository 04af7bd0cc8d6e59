"""backup.logs on live logs: reading what GNU tar captured (recorded tar 1.34 output)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from fabfile.core.backups import logs, tar_report
from fabfile.core.errors import TransferError
from fabfile.core.facts import RemoteEntry

pytestmark = pytest.mark.unit

# tar -vv --full-time --utc --numeric-owner --quoting-style=escape --ignore-failed-read,
# LC_ALL=C, while a writer appended to gr:ow.log and logrotate ran mid-walk. tar pads each
# time stamp to the widest printed so far, so a name may follow several spaces.
LIVE = b"""\
-rw-r----- 999/999              4 2026-11-30 08:05:32.190243389 a b.log
tar: api.log.2: Warning: Cannot stat: No such file or directory
-rw-r----- 999/999      300057392 2026-11-30 08:05:42.153079294 gr:ow.log
tar: gr\\:ow.log: file changed as we read it
-rw-r----- 999/999      300000000 2026-11-30 08:05:37.69606016  big.log
tar: big.log: File shrank by 257842432 bytes; padding with zeros
-rw-r----- 999/999              5 2026-11-30 08:05:32.1          lead.log
-rw-r----- 999/999              1 2026-11-30 08:05:37.69606016  we\\nird:\\351\\\\.log
lrwxrwxrwx 999/999              0 2026-11-30 08:16:21.612079636 link.log -> /root/secret
ZACHOT-AGENT:{"ok": true}
zachot-tar-exit 1
"""
ASKED = [
    b"a b.log", b"api.log.2", b"gr:ow.log", b"big.log", b" lead.log", b"we\nird:\xe9\\.log",
    b"link.log",
]  # fmt: skip


def test_a_live_walk_is_understood_file_by_file() -> None:
    report = tar_report.parse(LIVE, ASKED)
    assert report.ok and report.exit_code == 1
    assert report.captured[b"gr:ow.log"].size == 300057392
    assert report.captured[b"we\nird:\xe9\\.log"].size == 1
    assert report.captured[b" lead.log"].size == 5  # its own leading space, not tar's padding
    assert report.captured[b"a b.log"].mtime == pytest.approx(1796025932.190243389, abs=1e-6)
    assert report.grew == {b"gr:ow.log"}
    assert set(report.skipped) == {b"api.log.2", b"link.log"}
    assert "rotated away" in report.skipped[b"api.log.2"]
    assert "copytruncate" in report.partial[b"big.log"]


@pytest.mark.parametrize(
    ("stderr", "problem"),
    [
        (b"tar: api.log: Read error at byte 0: Input/output error\nzachot-tar-exit 0\n", "Read"),
        (b"tar: Exiting with failure status due to previous errors\nzachot-tar-exit 2\n", "exit"),
        (b"-rw-r----- 999/999 1 2026-11-30 08:05:32.1 x.log\n", "how it ended"),
        (b"tar: other.log: file changed as we read it\nzachot-tar-exit 1\n", "other.log"),
        (b"zachot-tar-exit 1\nzstd: error 70 : Write error\n", "zstd"),
        (  # a listing line not padded as tar pads: never guess where the name starts
            b"-rw-r----- 9/9 5 2026-11-30 08:05:32.190243389 api.log\n"
            b"-rw-r----- 9/9 5 2026-11-30 08:05:32.1 api.log\nzachot-tar-exit 0\n",
            "not as expected",
        ),
    ],
)
def test_anything_not_understood_fails_the_backup(stderr: bytes, problem: str) -> None:
    report = tar_report.parse(stderr, [b"api.log"])
    assert not report.ok
    assert problem in " ".join(report.problems)


def test_unquote_reverses_tars_escape_style() -> None:
    assert tar_report.unquote(r"we\nird\:\351\\.log") == b"we\nird:\xe9\\.log"
    assert tar_report.unquote("plain name.log") == b"plain name.log"


def _ctx() -> SimpleNamespace:
    return SimpleNamespace(host=SimpleNamespace(name="prod"))


def test_the_index_holds_what_tar_stored_not_what_find_listed() -> None:
    send = [
        RemoteEntry("a b.log", 4, 1796025932.1902434),  # unchanged: the listing's exact mtime
        RemoteEntry("gr:ow.log", 300000000, 1796025930.5),  # grew after the listing
        RemoteEntry("api.log.2", 10, 1.0),  # rotated away
        RemoteEntry("big.log", 300000000, 1796025937.69606016),  # truncated mid-read
        RemoteEntry("we\nird:\udce9\\.log", 1, 1796025937.69606016),
        RemoteEntry("link.log", 3, 1.0),
    ]
    out = logs.captured(_ctx(), send, tar_report.parse(LIVE, ASKED), "20261130T080500Z")
    indexed = {e.path: e for e in out.index}
    assert set(indexed) == {"a b.log", "gr:ow.log", "we\nird:\udce9\\.log"}
    assert indexed["a b.log"].mtime == 1796025932.1902434
    assert indexed["gr:ow.log"].size == 300057392
    assert out.grew == ["gr:ow.log"]
    assert set(out.skipped) == {"api.log.2", "link.log"} and set(out.partial) == {"big.log"}
    said = logs._summary("id", out, 0, out.skipped)
    assert "skipped 1 rotated away before tar read them: api.log.2;" in said
    assert "1 changed while read" in said
    assert "1 truncated while tar read them (copytruncate), zero-padded, not indexed: big" in said


def test_a_file_tar_silently_left_out_fails() -> None:
    send = [RemoteEntry("api.log", 4, 1.0)]
    with pytest.raises(TransferError, match=r"did not archive 'api\.log'"):
        logs.captured(_ctx(), send, tar_report.parse(b"zachot-tar-exit 0\n", [b"api.log"]), "x")


def test_a_failed_tar_fails_in_one_line() -> None:
    said = b"tar: api.log: Cannot open: Input/output error\nzachot-tar-exit 2\n"
    report = tar_report.parse(said, [b"api.log"])
    with pytest.raises(TransferError, match=r"^prod: logs: api\.log: Cannot open"):
        logs.captured(_ctx(), [RemoteEntry("api.log", 4, 1.0)], report, "x")
