"""atomic.write_file: the one whole-file writer of the operator's side (store records,
the routine's record, the Prometheus textfile, systemd user units)."""

from __future__ import annotations

import os
import stat

import pytest

from fabfile.core import atomic

pytestmark = pytest.mark.unit


def test_the_mode_is_the_one_asked_for_whatever_the_umask(tmp_path):
    old = os.umask(0o077)
    try:
        atomic.write_file(tmp_path / "zachot.prom", b"a 1\n", mode=0o644)
    finally:
        os.umask(old)
    os.umask(0)
    try:
        atomic.write_file(tmp_path / "record.json", b"{}\n")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "zachot.prom").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "record.json").stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["record.json", "zachot.prom"]


def test_a_failed_rename_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "record.json"
    target.write_bytes(b"old\n")
    (tmp_path / "busy").mkdir()
    with pytest.raises(IsADirectoryError):
        atomic.write_file(tmp_path / "busy", b"new\n")  # rename onto a directory fails
    atomic.write_file(target, b"new\n")
    assert target.read_bytes() == b"new\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["busy", "record.json"]


def test_a_planted_link_at_the_temp_name_is_not_followed(tmp_path, monkeypatch):
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep\n")
    monkeypatch.setattr(atomic.secrets, "token_hex", lambda n: "fixed")
    (tmp_path / ".record.json.tmp-fixed").symlink_to(victim)
    with pytest.raises(FileExistsError):
        atomic.write_file(tmp_path / "record.json", b"new\n")
    assert victim.read_bytes() == b"keep\n"
