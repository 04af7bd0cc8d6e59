"""backup.verify's checks on a real local store: flipped bytes, stale backups, test restores."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import tempfile
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pyrage import x25519

from fabfile.backup.verify import show
from fabfile.core import crypto, secrets
from fabfile.core import verify as verify_module
from fabfile.core.errors import LockHeldError
from fabfile.core.manifest import KINDS
from fabfile.core.model import BackupSettings, Host, Layout, StoreSettings
from fabfile.core.store import DELETING_PREFIX, VERIFIED_NAME, BackupRef, Store
from fabfile.core.verify import (
    CHECKS,
    Check,
    Verdict,
    classify_analyze,
    parse_unit_file,
    run_checks,
    unparsable_lines,
    verify_backup,
    verify_host,
)
from tests.unit.test_store import record

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
CANARY = "canary-5d1e0c9a77"
ENV = f"REDIS_URL=redis://127.0.0.1:6379/0\nWORKER_CONCURRENCY=2\nAPI_KEY={CANARY}\n".encode()
API_UNIT = b"[Unit]\nDescription=api\n\n[Service]\nExecStart=/opt/zachot/envs/prod/bin/uvicorn\n"
WORKER_UNIT = b"[Unit]\nDescription=worker\n\n[Service]\nExecStart=/bin/true\n"


def put(
    store: Store,
    kind: str,
    files: dict[str, bytes],
    *,
    at: datetime,
    host: str = "web1",
    meta: dict | None = None,
    refs: dict[str, str] | None = None,
) -> BackupRef:
    """Commit a backup; names in `refs` are stored as references to that backup id."""
    with store.begin(host, kind, now=at) as staged:
        for name, data in files.items():
            if refs and name in refs:
                staged.add(record(name, data, stored_in=refs[name]))
                continue
            staged.target(name).write_bytes(data)
            staged.add(record(name, data))
        staged.meta.update(meta or {})
        return staged.commit()


@pytest.fixture
def host(tmp_path: Path) -> Host:
    return Host(name="web1", store=StoreSettings(path=tmp_path / "store", lock_timeout=0.2))


@pytest.fixture
def store(host: Host) -> Store:
    return Store(host.store.path)


def flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def problems_of(reports, kind: str) -> list[str]:
    return [str(p) for r in reports if r.kind == kind for p in r.problems]


def good_store(store: Store, at: datetime = NOW) -> None:
    put(store, "env", {"zachot.env": ENV}, at=at)
    units = {"zachot-api.service": API_UNIT, "zachot-worker.service": WORKER_UNIT}
    put(store, "units", units, at=at)


# -- the whole run ------------------------------------------------------------------


def test_good_backups_pass_and_are_marked_verified(store, host):
    good_store(store)
    reports = verify_host(host, now=NOW + timedelta(hours=1))
    status = {r.kind: r.status for r in reports}
    assert status == {"env": "ok", "units": "ok", "logs": "absent", "redis": "absent"}
    assert not any(r.failed for r in reports)
    for kind in ("env", "units"):
        ref = store.latest("web1", kind)
        assert store.verified_at(ref) == NOW + timedelta(hours=1)
        marker = ref.path / VERIFIED_NAME
        assert stat.S_IMODE(marker.stat().st_mode) == 0o600
        assert json.loads(marker.read_text())["checks"] == ["files", kind]
    assert store.problems() == []  # the sidecar is not a stray file


def test_a_flipped_byte_fails_and_removes_an_old_verified_mark(store, host):
    good_store(store)
    verify_host(host, now=NOW)
    ref = store.latest("web1", "env")
    assert store.verified_at(ref) is not None
    flip_byte(ref.path / "zachot.env")
    reports = verify_host(host, now=NOW)
    env = next(r for r in reports if r.kind == "env")
    assert env.status == "failed" and env.failed
    assert any(
        "files: " in p and "does not match the manifest" in p for p in map(str, env.problems)
    )
    assert store.verified_at(ref) is None
    assert [p.check for p in verify_backup(store, ref, host)] == ["files", "env"]


def test_the_bytes_are_checked_where_stored_in_leads(store, host):
    holder = put(store, "env", {"zachot.env": ENV}, at=NOW - timedelta(days=7))
    newest = put(store, "env", {"zachot.env": ENV}, at=NOW, refs={"zachot.env": holder.id})
    assert verify_backup(store, newest, host) == []
    flip_byte(holder.path / "zachot.env")
    found = verify_backup(store, newest, host)
    assert found and str(holder.path / "zachot.env") in found[0].message


def test_a_missing_file_is_reported_not_raised(store, host):
    good_store(store)
    (store.latest("web1", "units").path / "zachot-worker.service").unlink()
    reports = verify_host(host, kinds=("units",), now=NOW)
    text = " ".join(problems_of(reports, "units"))
    assert "zachot-worker.service: missing" in text


def test_a_stale_newest_backup_fails_but_stays_restorable(store, host):
    good_store(store, at=NOW - timedelta(days=8))
    reports = verify_host(host, kinds=("env",), now=NOW)
    [env] = reports
    assert env.status == "failed"
    assert [str(p) for p in env.problems] == ["age: newest is 8.0 days old, older than 7 days"]
    ref = store.latest("web1", "env")
    assert verify_backup(store, ref, host) == []  # restore may use an old backup
    assert store.verified_at(ref) is not None


def test_the_age_limit_comes_from_the_inventory(store, host):
    good_store(store, at=NOW - timedelta(days=8))
    patient = replace(host, backup=BackupSettings(max_age_days=10))
    assert verify_host(patient, kinds=("env",), now=NOW)[0].status == "ok"


def test_required_kinds_missing_fail_optional_ones_do_not(store, host):
    put(store, "env", {"zachot.env": ENV}, at=NOW)
    reports = {r.kind: r for r in verify_host(host, now=NOW)}
    assert reports["units"].status == "missing" and reports["units"].failed
    assert [str(p) for p in reports["units"].problems] == [
        "exists: no complete units backup in the store"
    ]
    assert reports["logs"].status == "absent" and not reports["logs"].failed
    assert reports["redis"].status == "absent" and not reports["redis"].failed


def test_store_problems_of_the_host_are_reported(store, host):
    good_store(store)
    ref = store.latest("web1", "env")
    (ref.path / "leftover.txt").write_text("x")
    (ref.path.parent / f"{DELETING_PREFIX}20261101T000000Z-00").mkdir()  # not a problem
    [env] = verify_host(host, kinds=("env",), now=NOW)
    assert env.status == "failed"
    assert [p.check for p in env.problems] == ["store"]
    assert "leftover.txt: stray file" in env.problems[0].message
    assert store.verified_at(ref) is not None  # the backup itself is fine


def test_verify_waits_for_the_store_lock(store, host):
    good_store(store)
    with store.lock(timeout=0, purpose="backup.all"), pytest.raises(LockHeldError, match="web1"):
        verify_host(host, now=NOW)


# -- env --------------------------------------------------------------------------


def test_env_missing_keys_are_named_and_values_never_shown(store, host, capsys):
    env = f"REDIS_URL=redis://x\nAPI_KEY={CANARY}\nthis line is broken\n".encode()
    put(store, "env", {"zachot.env": env}, at=NOW)
    reports = verify_host(host, kinds=("env",), now=NOW)
    assert problems_of(reports, "env") == [
        "env: zachot.env: line 3 does not parse as KEY=value",
        "env: zachot.env: lacks required keys: WORKER_CONCURRENCY",
    ]
    show(reports)
    print(json.dumps([r.as_json() for r in reports]))
    out = capsys.readouterr()
    assert "WORKER_CONCURRENCY" in out.err
    assert CANARY not in out.out + out.err
    assert CANARY in secrets._secrets  # registered, so output would mask it anyway


def test_required_keys_come_from_the_inventory(store, host):
    put(store, "env", {"zachot.env": ENV}, at=NOW)
    strict = replace(host, layout=Layout(required_env_keys=("REDIS_URL", "SENTRY_DSN")))
    found = verify_backup(store, store.latest("web1", "env"), strict)
    assert [p.message for p in found] == ["zachot.env: lacks required keys: SENTRY_DSN"]


def test_unparsable_lines_are_found_by_number():
    assert unparsable_lines(b"A=1\nnot an assignment\n# comment\nB='open\n") == [2, 4]
    assert unparsable_lines(b"\xef\xbb\xbfA=1\nexport B=2\n") == []


def test_an_encrypted_env_is_checked_with_the_identity_and_warned_about_without(
    store, host, tmp_path
):
    identity = x25519.Identity.generate()
    key_file = tmp_path / "key.txt"
    key_file.write_text(f"{identity}\n")
    with store.begin("web1", "env", now=NOW) as staged:
        size, digest = crypto.write_encrypted(
            staged.target("zachot.env.age"), ENV, [str(identity.to_public())]
        )
        staged.add(replace(record("zachot.env.age", ENV), size=size, ciphertext_sha256=digest))
        ref = staged.commit()
    sealed = run_checks(store, ref, host, now=NOW, integrity_only=True)
    assert all(r.ok for r in sealed)
    assert "age_identity is not set" in sealed[1].verdict.warnings[0]
    opened = replace(host, backup=BackupSettings(age_identity=key_file))
    results = run_checks(store, ref, opened, now=NOW, integrity_only=True)
    assert [r.ok for r in results] == [True, True]
    assert results[1].verdict.detail.startswith("3 keys")


# -- units ------------------------------------------------------------------------------


def units_backup(store: Store, api: bytes = API_UNIT, drop_in: bytes | None = None) -> BackupRef:
    files = {"zachot-api.service": api, "zachot-worker.service": WORKER_UNIT}
    if drop_in is not None:
        files["zachot-api.service.d+override.conf"] = drop_in
    return put(store, "units", files, at=NOW)


@pytest.fixture(params=["systemd-analyze", "INI parse"])
def parser(request, monkeypatch):
    if request.param == "INI parse":
        monkeypatch.setattr(verify_module, "systemd_analyze", lambda: None)
    elif verify_module.systemd_analyze() is None:
        pytest.fail("systemd-analyze is not installed here (Debian: apt-get install systemd)")
    return request.param


def units_result(store, host):
    results = run_checks(store, store.latest("web1", "units"), host, now=NOW)
    return next(r for r in results if r.name == "units")


def test_good_units_parse_and_say_which_parser(store, host, parser):
    units_backup(store, drop_in=b"[Service]\nNice=5\n")
    result = units_result(store, host)
    assert result.ok, result.verdict.problems
    assert result.verdict.note == parser
    assert result.verdict.detail.startswith("2 units parsed by")


def test_a_broken_unit_fails_with_either_parser(store, host, parser):
    units_backup(store, api=b"garbage line\n[Service\nExecStart=/bin/true\n")
    result = units_result(store, host)
    assert not result.ok
    assert any("Invalid section header" in p for p in result.verdict.problems)


def test_a_broken_drop_in_is_found_in_its_unit_directory(store, host, parser):
    units_backup(store, drop_in=b"[Service]\nNice=5\n[Bad\n")
    result = units_result(store, host)
    assert any(
        "zachot-api.service.d/override.conf:3" in p and "Invalid section header" in p
        for p in result.verdict.problems
    ), result.verdict.problems


def test_a_configured_unit_absent_from_the_backup_fails(store, host):
    put(store, "units", {"zachot-api.service": API_UNIT}, at=NOW)
    result = units_result(store, host)
    assert "zachot-worker.service is not in this backup" in result.verdict.problems


# Recorded from systemd 252 (Debian 12) on units restored to /tmp/sa.
ANALYZE_MISSING_BINARY = (
    "zachot-api.service: Command /opt/zachot/envs/prod/bin/uvicorn is not executable: "
    "No such file or directory\n"
)
ANALYZE_UNKNOWN_KEY = (
    "/tmp/sa/zachot-api.service:13: Unknown key 'Bogus' in section [Service], ignoring.\n"
)
ANALYZE_BROKEN = (
    "/tmp/sa/bad.service:1: Assignment outside of section. Ignoring.\n"
    "/tmp/sa/bad.service:2: Invalid section header '[Service'\n"
    "Unit bad.service failed to load properly, please adjust/correct and reload service "
    "manager: Bad message\n"
)


def test_classify_systemd_analyze_output():
    # The laptop lacks the service's binaries: that says nothing about the backup.
    assert classify_analyze(ANALYZE_MISSING_BINARY, 1) == ([], [])
    errors, warnings = classify_analyze(ANALYZE_UNKNOWN_KEY, 0)
    assert errors == [] and warnings == [ANALYZE_UNKNOWN_KEY.strip()]
    errors, warnings = classify_analyze(ANALYZE_BROKEN, 1)
    assert len(errors) == 3 and warnings == []
    assert classify_analyze("", 1) == (["systemd-analyze verify exited 1"], [])


def test_ini_parse_of_unit_files():
    assert parse_unit_file(API_UNIT, "a.service") == ([], [])
    continued = b"[Service]\nExecStart=/bin/sh -c \\\n  'echo hi'\n; comment\n"
    assert parse_unit_file(continued, "b.service") == ([], ["b.service: no [Unit] section"])
    errors, _ = parse_unit_file(b"Nice=5\n[Unit]\nDescription=x\n", "c.service")
    assert errors == [
        "c.service:1: Assignment outside of section",
        "c.service: no [Service] section",
    ]
    assert parse_unit_file(b"[Service]\njunk\n", "d.conf")[0] == [
        "d.conf:2: not a section header or KEY=value"
    ]
    assert "e.service:1: not UTF-8 text" in parse_unit_file(b"\xff\xfe", "e.service")[0]


# -- logs --------------------------------------------------------------------------------


def make_archive(tmp_path: Path, files: dict[str, str], name: str) -> bytes:
    source = tmp_path / f"src-{name}"
    source.mkdir()
    for file, text in files.items():
        (source / file).write_text(text)
    program = "zstd -1" if name.endswith(".zst") else "gzip -1"
    done = subprocess.run(
        ["tar", "--create", "--file=-", f"--directory={source}",
         f"--use-compress-program={program}", *files],
        capture_output=True, check=True,
    )  # fmt: skip
    return done.stdout


def index_entry(path: str, archive: str) -> dict:
    return {"path": path, "size": 1, "mtime": 1.0, "archive": archive, "member": path}


def logs_pair(store: Store, tmp_path: Path, *, second_member: str = "api.log") -> BackupRef:
    """Two logs backups: the newest holds api.log and re-indexes the first's api.log.1."""
    first_tar = make_archive(tmp_path, {"api.log.1": "old\n"}, "logs.tar.gz")
    first = put(
        store, "logs", {"logs.tar.gz": first_tar}, at=NOW - timedelta(days=1),
        meta={"archive": "logs.tar.gz", "index": [index_entry("api.log.1", "x")]},
    )  # fmt: skip
    second_tar = make_archive(tmp_path, {"api.log": "new\n"}, "logs.tar.zst")
    index = [index_entry(second_member, "{self}"), index_entry("api.log.1", first.id)]
    with store.begin("web1", "logs", now=NOW) as staged:
        staged.target("logs.tar.zst").write_bytes(second_tar)
        staged.add(record("logs.tar.zst", second_tar))
        for entry in index:
            entry["archive"] = entry["archive"].replace("{self}", staged.id)
        staged.meta.update({"archive": "logs.tar.zst", "index": index})
        return staged.commit()


def logs_result(store, host):
    results = run_checks(store, store.latest("web1", "logs"), host, now=NOW)
    return next(r for r in results if r.name == "logs")


def test_logs_archives_list_with_zstd_and_gzip(store, host, tmp_path):
    logs_pair(store, tmp_path)
    result = logs_result(store, host)
    assert result.ok, result.verdict.problems
    assert result.verdict.detail == "2 files in 2 archives listed"


def test_an_indexed_member_missing_from_its_archive_fails(store, host, tmp_path):
    logs_pair(store, tmp_path, second_member="worker.log")
    [problem] = logs_result(store, host).verdict.problems
    assert "lacks 1 indexed files: worker.log" in problem


def test_an_index_pointing_at_a_pruned_backup_fails(store, host, tmp_path):
    newest = logs_pair(store, tmp_path)
    first = store.list("web1", "logs")[0]
    store.delete(first)
    [problem] = logs_result(store, host).verdict.problems
    assert f"index refers to {first.id}" in problem
    assert newest.id == store.latest("web1", "logs").id


def test_an_archive_that_does_not_list_fails(store, host):
    junk = b"\x1f\x8b" + b"not really gzip" * 10
    meta = {"archive": "logs.tar.gz", "index": [index_entry("a", "20261124T120000Z")]}
    put(store, "logs", {"logs.tar.gz": junk}, at=NOW, meta=meta)
    [problem] = logs_result(store, host).verdict.problems
    assert "does not list as a tar archive" in problem


# -- redis, scratch and the extension point ---------------------------------------------


def test_redis_dump_needs_the_rdb_header(store, host):
    put(store, "redis", {"dump.rdb": b"REDIS0011\xfa\x09redis-ver"}, at=NOW)
    assert verify_backup(store, store.latest("web1", "redis"), host) == []
    put(store, "redis", {"dump.rdb": b"<html>not a dump</html>"}, at=NOW + timedelta(hours=1))
    found = verify_backup(store, store.latest("web1", "redis"), host)
    assert [str(p) for p in found] == ["redis: dump.rdb is not an RDB file (no REDIS header)"]


def test_test_restores_happen_in_a_private_dir_that_is_removed(store, host, monkeypatch, tmp_path):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    good_store(store)
    seen = {}

    def spy(subject) -> Verdict:
        seen["mode"] = stat.S_IMODE(subject.scratch.stat().st_mode)
        seen["files"] = sorted(
            str(p.relative_to(subject.scratch)) for p in subject.scratch.rglob("*")
        )
        seen["env mode"] = stat.S_IMODE((subject.scratch / "env/zachot.env").stat().st_mode)
        return Verdict(detail="spied")

    checks = [*CHECKS, Check("spy", spy, kinds=("env",))]
    results = run_checks(store, store.latest("web1", "env"), host, now=NOW, checks=checks)
    assert [r.name for r in results] == ["files", "env", "age", "store", "spy"]
    assert seen == {"mode": 0o700, "files": ["env", "env/zachot.env"], "env mode": 0o600}
    assert os.listdir(tmp_path / "tmp") == []


def test_a_check_that_breaks_is_a_failed_check_not_a_crash(store, host):
    good_store(store)

    def broken(subject) -> Verdict:
        raise OSError(5, "Input/output error", "/dev/sdz")

    checks = [Check("disk", broken)]
    [result] = run_checks(store, store.latest("web1", "env"), host, now=NOW, checks=checks)
    assert result.verdict.problems == ("/dev/sdz: Input/output error",)


def test_every_kind_has_an_integrity_check_beyond_files():
    covered = {kind for check in CHECKS if check.integrity and check.name != "files"
               for kind in check.kinds}  # fmt: skip
    assert covered == set(KINDS)
