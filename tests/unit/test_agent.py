"""The server-side agent, run here on a temp dir that a non-root user (this one, or
`nobody` when run as root) owns: what root must refuse there (issue 10, holes 3-5)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fabfile.core.agent import SOURCE, TRAILER

pytestmark = pytest.mark.unit


def agent(*argv: str, stdin: bytes = b"") -> tuple[int, bytes, dict]:
    done = subprocess.run(
        [sys.executable, "-I", "-c", SOURCE, *argv],
        input=stdin,
        capture_output=True,
        timeout=20,
    )
    line = [ln for ln in done.stderr.decode().splitlines() if ln.startswith(TRAILER)][-1]
    return done.returncode, done.stdout, json.loads(line[len(TRAILER) :])


@pytest.fixture
def theirs(tmp_path: Path) -> Path:
    """A directory the service user (not root) owns, with a root-only secret beside it."""
    (tmp_path / "secret").write_text("ROOT-ONLY\n")
    (tmp_path / "secret").chmod(0o600)
    mine = tmp_path / "theirs"
    mine.mkdir()
    (mine / "env").write_text("KEY=value\n")
    if os.geteuid() == 0:
        os.chown(mine, 65534, 65534)
    return mine


def test_read_refuses_a_link_planted_in_their_directory(theirs):
    (theirs / "link").symlink_to(theirs.parent / "secret")
    code, out, said = agent("read", str(theirs / "link"))
    assert code != 0 and out == b"" and said["error"] == "link"
    assert "not followed" in said["message"]


def test_read_refuses_a_link_in_the_middle_of_the_path(theirs):
    (theirs / "dir").symlink_to(theirs.parent)
    code, out, said = agent("read", str(theirs / "dir" / "secret"))
    assert code != 0 and out == b"" and said["error"] == "link"


@pytest.mark.parametrize("kind", ["fifo", "dir", "huge"])
def test_read_refuses_what_is_not_a_small_regular_file(theirs, kind):
    target = theirs / kind
    if kind == "fifo":
        os.mkfifo(target)
    elif kind == "dir":
        target.mkdir()
    else:
        with target.open("wb") as f:
            f.truncate(64 << 20)  # sparse
    code, out, said = agent("read", str(target), str(16 << 20))
    assert code != 0 and out == b""
    assert said["error"] == ("toobig" if kind == "huge" else "notfile"), said


def test_read_sends_a_regular_file(theirs):
    code, out, said = agent("read", str(theirs / "env"), str(16 << 20))
    assert code == 0 and out == b"KEY=value\n" and said["ok"]


def test_copy_never_writes_through_a_planted_link(theirs):
    (theirs / "env.pre-restore.1").symlink_to(theirs.parent / "secret")
    code, _, said = agent("copy", str(theirs / "env"), str(theirs / "env.pre-restore.1"))
    assert code != 0 and "File exists" in said["message"]
    assert (theirs.parent / "secret").read_text() == "ROOT-ONLY\n"


def test_copy_into_a_private_dir_needs_it_root_owned_0700(theirs, tmp_path):
    code, _, said = agent("copy", str(theirs / "env"), str(theirs / "zachot.env.1"), "1")
    assert code != 0 and said["error"] == "private"
    assert "it must be root-owned 0700: chown root:root" in said["message"]


@pytest.mark.skipif(os.geteuid() != 0, reason="a root-owned directory needs root")
def test_private_dir_is_made_root_0700_and_copies_skip_the_same_bytes(theirs, tmp_path):
    backups = tmp_path / "backups"
    first = agent("copy", str(theirs / "env"), str(backups / "zachot.env.1"), "1", "zachot.env.")
    again = agent("copy", str(theirs / "env"), str(backups / "zachot.env.2"), "1", "zachot.env.")
    assert first[2]["copied"] and not again[2]["copied"]
    st = backups.stat()
    assert (st.st_uid, st.st_mode & 0o7777) == (0, 0o700)
    assert (backups / "zachot.env.1").stat().st_mode & 0o777 == 0o600
    (theirs / "env").write_text("KEY=changed\n")  # compared with the newest, then copied whole
    agent("copy", str(theirs / "env"), str(backups / "zachot.env.3"), "1", "zachot.env.")
    assert (backups / "zachot.env.3").read_text() == "KEY=changed\n"


@pytest.mark.skipif(os.geteuid() != 0, reason="a root-owned directory needs root")
def test_a_second_copy_stamped_the_same_second_gets_a_suffix(theirs, tmp_path):
    """Two backup.env runs within one second collided on the stamped name (File exists)."""
    backups, stamp = tmp_path / "backups", "zachot.env.20261130_191804"
    agent("copy", str(theirs / "env"), str(backups / stamp), "1", "zachot.env.")
    (theirs / "env").write_text("KEY=changed\n")
    code, _, said = agent("copy", str(theirs / "env"), str(backups / stamp), "1", "zachot.env.")
    assert code == 0 and said["copied"] and said["name"] == stamp + "-1", said
    assert (backups / (stamp + "-1")).read_text() == "KEY=changed\n"
    again = agent("copy", str(theirs / "env"), str(backups / stamp), "1", "zachot.env.")
    assert not again[2]["copied"]  # the suffixed copy is the newest, and it is the same


def test_own_refuses_a_link_and_write_replaces_it(theirs, tmp_path):
    (theirs / "env").unlink()
    (theirs / "env").symlink_to(theirs.parent / "secret")
    code, _, said = agent("own", str(theirs / "env"), "644", "", "")
    assert code != 0 and said["error"] == "link"
    assert (theirs.parent / "secret").stat().st_mode & 0o777 == 0o600
    import hashlib

    data = b"NEW=1\n"
    code, _, said = agent(
        "write", str(theirs / "env"), "600", "", "", hashlib.sha256(data).hexdigest(), stdin=data
    )
    assert code == 0 and not (theirs / "env").is_symlink()
    assert (theirs / "env").read_bytes() == data
    assert (theirs.parent / "secret").read_text() == "ROOT-ONLY\n"
