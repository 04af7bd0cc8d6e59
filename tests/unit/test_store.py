"""The local backup store: ids, permissions, completeness, selectors, references, manifests."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from fabfile.core import store as store_module
from fabfile.core.errors import BackupNotFoundError, BadSelectorError, StoreError, UsageError
from fabfile.core.manifest import FileRecord, Manifest, id_sort_key
from fabfile.core.store import KINDS, BackupRef, Store

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 24, 15, 15, 0, tzinfo=UTC)
LATER = datetime(2026, 11, 25, 9, 0, 0, tzinfo=UTC)


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "store")


@pytest.fixture
def umask0():
    old = os.umask(0)
    yield
    os.umask(old)


def record(name: str, data: bytes, **extra) -> FileRecord:
    fields = {
        "sha256": hashlib.sha256(data).hexdigest(),
        "size": len(data),
        "source": f"/opt/zachot/{name}",
        "mode": 0o640,
        "owner": "zachot",
        "group": "zachot",
        "mtime": 1764000000.25,
    }
    fields.update(extra)
    return FileRecord(name=name, **fields)


def make_backup(
    store: Store,
    files: dict[str, bytes],
    *,
    host: str = "web1",
    kind: str = "env",
    now: datetime = NOW,
) -> BackupRef:
    with store.begin(host, kind, now=now) as staged:
        for name, data in files.items():
            staged.target(name).write_bytes(data)
            staged.add(record(name, data))
        staged.meta["keys"] = ["REDIS_URL"]
        return staged.commit()


def kind_dir(store: Store, host: str = "web1", kind: str = "env") -> Path:
    return store.root / host / kind


# -- ids ------------------------------------------------------------------------


def test_id_is_utc_timestamp_and_collisions_get_suffixes(store: Store) -> None:
    ids = [make_backup(store, {"a": b"x"}).id for _ in range(3)]
    assert ids == ["20261124T151500Z", "20261124T151500Z-1", "20261124T151500Z-2"]


def test_id_uses_utc_whatever_the_timezone_of_now(store: Store) -> None:
    from datetime import timedelta, timezone

    local = NOW.astimezone(timezone(timedelta(hours=3)))
    assert make_backup(store, {"a": b"x"}, now=local).id == "20261124T151500Z"


def test_naive_now_is_refused(store: Store) -> None:
    with pytest.raises(ValueError):
        store.begin("web1", "env", now=datetime(2026, 11, 24))


def test_ids_sort_chronologically_with_numeric_suffix() -> None:
    ids = ["20261124T151500Z-10", "20261124T151500Z-2", "20261124T151500Z", "20261124T151459Z"]
    assert sorted(ids, key=id_sort_key) == [
        "20261124T151459Z",
        "20261124T151500Z",
        "20261124T151500Z-2",
        "20261124T151500Z-10",
    ]


def test_running_out_of_suffixes_is_an_error(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_module, "MAX_SUFFIX", 1)
    make_backup(store, {"a": b"x"})
    make_backup(store, {"a": b"x"})
    with pytest.raises(StoreError, match="more than 1 backups"):
        store.begin("web1", "env", now=NOW)


def test_list_is_sorted_by_host_kind_and_time(store: Store) -> None:
    make_backup(store, {"a": b"1"}, host="web2", now=NOW)
    make_backup(store, {"a": b"2"}, host="web1", kind="redis", now=NOW)
    make_backup(store, {"a": b"3"}, host="web1", now=LATER)
    make_backup(store, {"a": b"4"}, host="web1", now=NOW)
    got = [(ref.host, ref.kind, ref.id) for ref in store.list()]
    assert got == [
        ("web1", "env", "20261124T151500Z"),
        ("web1", "env", "20261125T090000Z"),
        ("web1", "redis", "20261124T151500Z"),
        ("web2", "env", "20261124T151500Z"),
    ]
    assert [ref.host for ref in store.list(kind="env")] == ["web1", "web1", "web2"]
    assert store.list(host="nosuch") == []


def test_empty_or_missing_store_lists_nothing(store: Store) -> None:
    assert store.list() == []
    assert store.latest("web1", "env") is None
    assert store.problems() == []
    assert not store.root.exists()


@pytest.mark.parametrize("host", ["", "../x", "a/b", ".hidden", "-x", "a b", "a\n", "x" * 300])
def test_bad_host_names_are_refused(store: Store, host: str) -> None:
    with pytest.raises(UsageError):
        store.begin(host, "env")
    with pytest.raises(UsageError):
        store.list(host=host)


def test_unknown_kind_is_refused(store: Store) -> None:
    assert KINDS == ("env", "units", "logs", "redis")
    with pytest.raises(UsageError, match="env, units, logs, redis"):
        store.begin("web1", "secrets")


# -- permissions ----------------------------------------------------------------


def modes_under(root: Path) -> dict[Path, int]:
    return {path: stat.S_IMODE(path.lstat().st_mode) for path in [root, *root.rglob("*")]}


def test_permissions_are_private_even_with_umask_0(tmp_path: Path, umask0: None) -> None:
    store = Store(tmp_path / "a" / "b" / "store")
    with store.begin("web1", "env", now=NOW) as staged:
        target = staged.target("zachot.env")
        # The writer is careless about modes; the store fixes them.
        fd = os.open(target, os.O_WRONLY | os.O_CREAT, 0o666)
        os.write(fd, b"SECRET=1\n")
        os.close(fd)
        staged.add(record("zachot.env", b"SECRET=1\n"))
        staged.commit()
    with store.lock(timeout=0, purpose="test"):
        found = modes_under(tmp_path / "a")
    assert found, "nothing was created"
    for path, mode in found.items():
        expected = 0o700 if path.is_dir() else 0o600
        assert mode == expected, f"{path}: {mode:04o}"


def test_existing_root_is_left_alone(tmp_path: Path) -> None:
    root = tmp_path / "store"
    root.mkdir(mode=0o750)
    os.chmod(root, 0o750)
    make_backup(Store(root), {"a": b"x"})
    assert stat.S_IMODE(root.stat().st_mode) == 0o750


# -- completeness -----------------------------------------------------------------


def test_exception_inside_the_context_discards_the_staging_dir(store: Store) -> None:
    with pytest.raises(RuntimeError), store.begin("web1", "env", now=NOW) as staged:
        staged.target("a").write_bytes(b"partial")
        assert staged.path.name.startswith(".staging-20261124T151500Z-")
        raise RuntimeError("connection dropped")
    assert list(kind_dir(store).iterdir()) == []
    assert store.latest("web1", "env") is None


def test_leaving_without_commit_discards(store: Store) -> None:
    with store.begin("web1", "env", now=NOW) as staged:
        staged.target("a").write_bytes(b"x")
        staged.add(record("a", b"x"))
    assert list(kind_dir(store).iterdir()) == []


def test_staged_backup_is_invisible_until_commit(store: Store) -> None:
    old = make_backup(store, {"a": b"old"})
    with store.begin("web1", "env", now=LATER) as staged:
        staged.target("a").write_bytes(b"new")
        staged.add(record("a", b"new"))
        assert store.latest("web1", "env") == old
        new = staged.commit()
    assert store.latest("web1", "env") == new
    assert (new.path / "manifest.json").is_file()
    assert new.path.name == "20261125T090000Z"


def test_commit_twice_or_add_after_commit_fails(store: Store) -> None:
    with store.begin("web1", "env", now=NOW) as staged:
        staged.commit()
        with pytest.raises(StoreError, match="already committed"):
            staged.commit()
        with pytest.raises(StoreError):
            staged.target("a")


@pytest.mark.parametrize(
    "corrupt",
    [
        pytest.param(lambda d: None, id="no-manifest"),
        pytest.param(lambda d: (d / "manifest.json").write_text('{"format": 1, "id"'), id="trunc"),
        pytest.param(lambda d: (d / "manifest.json").write_text(""), id="empty"),
        pytest.param(lambda d: (d / "manifest.json").write_bytes(b"\xff\xfe"), id="not-utf8"),
        pytest.param(lambda d: (d / "manifest.json").mkdir(), id="manifest-is-dir"),
    ],
)
def test_incomplete_dir_is_never_latest(store: Store, corrupt) -> None:
    good = make_backup(store, {"a": b"x"})
    newer = kind_dir(store) / "20261130T000000Z"
    newer.mkdir()
    (newer / "a").write_bytes(b"x")
    corrupt(newer)
    assert store.latest("web1", "env") == good
    assert [ref.id for ref in store.list()] == [good.id]
    with pytest.raises(BackupNotFoundError):
        store.resolve("web1", "env", "20261130T000000Z")
    assert any(str(newer) in problem for problem in store.problems())


def test_manifest_for_another_directory_is_not_listed(store: Store) -> None:
    good = make_backup(store, {"a": b"x"})
    copy = kind_dir(store) / "20261130T000000Z"
    copy.mkdir()
    (copy / "manifest.json").write_text((good.path / "manifest.json").read_text())
    assert store.latest("web1", "env") == good
    assert any("not this directory" in problem for problem in store.problems())


def test_symlinked_backup_dir_is_not_listed(store: Store, tmp_path: Path) -> None:
    good = make_backup(store, {"a": b"x"})
    os.symlink(good.path, kind_dir(store) / "20261130T000000Z")
    assert store.list() == [good]


def test_stale_staging_dirs_are_cleaned_fresh_ones_kept(store: Store) -> None:
    make_backup(store, {"a": b"x"})
    old = kind_dir(store) / ".staging-20261101T000000Z-0123456789abcdef"
    fresh = kind_dir(store) / ".staging-20261102T000000Z-0123456789abcdef"
    for path in (old, fresh):
        path.mkdir()
        (path / "a").write_bytes(b"x")
    two_hours_ago = time.time() - 7200
    for path in (old / "a", old):
        os.utime(path, (two_hours_ago, two_hours_ago))
    assert any("staging" in problem for problem in store.problems())
    with store.begin("web1", "env", now=NOW):  # begin() sweeps
        pass
    assert not old.exists()
    assert fresh.exists()


def test_staging_id_counts_as_taken(store: Store) -> None:
    with (
        store.begin("web1", "env", now=NOW) as first,
        store.begin("web1", "env", now=NOW) as second,
    ):
        assert (first.id, second.id) == ("20261124T151500Z", "20261124T151500Z-1")


# -- files ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["", ".", "..", "../x", "a/b", "/etc/passwd", "manifest.json", "a\n", " a", "a\x00"]
)
def test_bad_file_names_are_refused(store: Store, name: str) -> None:
    with store.begin("web1", "env", now=NOW) as staged, pytest.raises(StoreError):
        staged.target(name)


def test_names_with_spaces_and_at_are_fine(store: Store) -> None:
    ref = make_backup(store, {"zachot-api@1.service": b"x", "notes 2.txt": b"y"})
    assert store.file_path(ref, "notes 2.txt").read_bytes() == b"y"


def test_add_checks_the_file_was_written_with_that_size(store: Store) -> None:
    with store.begin("web1", "env", now=NOW) as staged:
        with pytest.raises(StoreError, match="missing"):
            staged.add(record("a", b"x"))
        staged.target("a").write_bytes(b"xy")
        with pytest.raises(StoreError, match="size is 2"):
            staged.add(record("a", b"x"))
        staged.add(record("a", b"xy"))
        with pytest.raises(StoreError, match="already added"):
            staged.add(record("a", b"xy"))


def test_commit_refuses_files_that_were_not_added(store: Store) -> None:
    with store.begin("web1", "env", now=NOW) as staged:
        staged.target("a").write_bytes(b"x")
        with pytest.raises(StoreError, match="not added: a"):
            staged.commit()
    assert list(kind_dir(store).iterdir()) == []


def test_commit_refuses_unserialisable_meta(store: Store) -> None:
    with store.begin("web1", "env", now=NOW) as staged:
        staged.meta["when"] = datetime.now()
        with pytest.raises(StoreError, match="cannot write manifest"):
            staged.commit()


# -- selectors --------------------------------------------------------------------


def test_resolve_latest_full_id_and_prefix(store: Store) -> None:
    first = make_backup(store, {"a": b"1"}, now=NOW)
    second = make_backup(store, {"a": b"2"}, now=LATER)
    assert store.resolve("web1", "env", "latest") == second
    assert store.resolve("web1", "env", "20261124T151500Z") == first
    assert store.resolve("web1", "env", "20261124") == first
    assert store.resolve("web1", "env", "20261125T09") == second


def test_full_id_wins_over_longer_ids_it_prefixes(store: Store) -> None:
    first = make_backup(store, {"a": b"1"})
    make_backup(store, {"a": b"2"})
    assert store.resolve("web1", "env", "20261124T151500Z") == first
    assert store.resolve("web1", "env", "20261124T151500Z-1").id == "20261124T151500Z-1"


def test_ambiguous_prefix_lists_the_matches(store: Store) -> None:
    make_backup(store, {"a": b"1"}, now=NOW)
    make_backup(store, {"a": b"2"}, now=NOW.replace(hour=18))
    with pytest.raises(BadSelectorError) as caught:
        store.resolve("web1", "env", "20261124")
    assert "20261124T151500Z" in caught.value.message
    assert "20261124T181500Z" in caught.value.message


def test_nothing_found_says_where_and_how_to_list(store: Store) -> None:
    make_backup(store, {"a": b"1"}, host="web2")
    with pytest.raises(BackupNotFoundError) as caught:
        store.resolve("web1", "env", "latest")
    assert "web1" in caught.value.message and "env" in caught.value.message
    assert "fab backup.list" in caught.value.message
    with pytest.raises(BackupNotFoundError, match=r"fab backup\.list"):
        store.resolve("web2", "env", "20251124")


HOSTILE = [
    "../../etc/shadow",
    "latest;id",
    "$(touch /tmp/x)",
    "",
    "A" * 10240,
    "2" * 10240,
    "20261124*",
    "2026112?",
    "[2]0261124",
    "20261124/..",
    "/20261124",
    "20261124 ",
    " latest",
    "2026 1124",
    "20261124\x00",
    "20261124\n",
    "latest\n",
    "LATEST",
    "2026112",  # fewer than 8 characters
    "20261124T151500Z-1234",
    "20261124T151500Zx",
    "\u0662\u0660\u0662\u0666\u0661\u0661\u0662\u0664",  # Arabic-Indic digits
    None,
]


@pytest.mark.parametrize("selector", HOSTILE, ids=lambda s: repr(s)[:20])
def test_hostile_selectors_are_refused_before_touching_the_fs(
    store: Store, monkeypatch: pytest.MonkeyPatch, selector: str
) -> None:
    def no_fs(*args, **kwargs):
        raise AssertionError("filesystem touched")

    monkeypatch.setattr(os, "scandir", no_fs)
    monkeypatch.setattr(os, "lstat", no_fs)
    monkeypatch.setattr(os, "open", no_fs)
    with pytest.raises(BadSelectorError) as caught:
        store.resolve("web1", "env", selector)
    message = caught.value.message
    assert "latest" in message and "prefix" in message
    assert "\n" not in message and len(message) < 250


# -- unchanged content: references --------------------------------------------------


def test_latest_and_dedup_lookup_read_the_newest_manifests_not_the_history(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """backup.all asks for the newest backup and the holder of unchanged content on every
    run: with a year of history that must stay a directory listing plus a manifest or two."""
    refs = [make_backup(store, {"zachot.env": b"A=%d\n" % (i % 3)}, now=NOW + timedelta(days=i))
            for i in range(40)]  # fmt: skip
    damaged = refs[-1].path / "manifest.json"
    damaged.write_text("{not json")  # the newest is unreadable: skipped, as list() does
    reads = []
    real = store_module._read_manifest
    monkeypatch.setattr(store_module, "_read_manifest", lambda p: reads.append(p) or real(p))
    assert store.latest("web1", "env") == refs[-2]
    sha = hashlib.sha256(b"A=0\n").hexdigest()  # refs[39] (damaged) and refs[36] hold it
    assert store.find_by_sha256("web1", "env", "zachot.env", sha) == refs[36]
    assert len(reads) <= 2 + 4, len(reads)
    assert [ref.id for ref in store.list("web1", "env")] == [ref.id for ref in refs[:-1]]


def test_find_by_sha256_and_references(store: Store) -> None:
    first = make_backup(store, {"zachot.env": b"A=1\n", "other": b"o"}, now=NOW)
    sha = hashlib.sha256(b"A=1\n").hexdigest()
    assert store.find_by_sha256("web1", "env", "zachot.env", sha) == first
    assert store.find_by_sha256("web1", "env", "zachot.env", "0" * 64) is None
    assert store.find_by_sha256("web1", "env", "nosuch", sha) is None

    with store.begin("web1", "env", now=LATER) as staged:
        staged.add(record("zachot.env", b"A=1\n", stored_in=first.id))
        second = staged.commit()
    assert not (second.path / "zachot.env").exists()
    assert store.latest("web1", "env") == second  # references alone make a complete backup
    assert store.file_path(second, "zachot.env") == first.path / "zachot.env"
    assert second.size == 4 and second.stored_size == 0
    # The holder, not the referrer, is returned so references never chain...
    assert store.find_by_sha256("web1", "env", "zachot.env", sha) == first

    # ...and a reference to a referrer is rewritten to the holder.
    with store.begin("web1", "env", now=LATER) as staged:
        staged.add(record("zachot.env", b"A=1\n", stored_in=second.id))
        third = staged.commit()
    assert third.manifest.file("zachot.env").stored_in == first.id
    assert store.problems() == []


def test_reference_must_point_at_matching_content(store: Store) -> None:
    first = make_backup(store, {"a": b"1"})
    with store.begin("web1", "env", now=LATER) as staged:
        with pytest.raises(StoreError, match="lacks that content"):
            staged.add(record("a", b"2", stored_in=first.id))
        with pytest.raises(StoreError, match="no such backup"):
            staged.add(record("a", b"1", stored_in="20200101T000000Z"))
        with pytest.raises(StoreError, match="this backup"):
            staged.add(record("a", b"1", stored_in=staged.id))
        staged.target("a").write_bytes(b"1")
        with pytest.raises(StoreError, match="both written and a reference"):
            staged.add(record("a", b"1", stored_in=first.id))


def test_damaged_holder_is_reported_and_not_reused(store: Store) -> None:
    first = make_backup(store, {"a": b"1"})
    with store.begin("web1", "env", now=LATER) as staged:
        staged.add(record("a", b"1", stored_in=first.id))
        second = staged.commit()
    (first.path / "a").unlink()
    sha = hashlib.sha256(b"1").hexdigest()
    assert store.find_by_sha256("web1", "env", "a", sha) is None
    with pytest.raises(StoreError, match="missing"):
        store.file_path(second, "a")
    assert any("missing" in problem for problem in store.problems())


def test_file_path_of_unknown_file(store: Store) -> None:
    ref = make_backup(store, {"a": b"1"})
    with pytest.raises(BackupNotFoundError):
        store.file_path(ref, "b")
    with pytest.raises(StoreError):
        store.file_path(ref, "../a")


# -- problems ---------------------------------------------------------------------


def test_problems_reports_strays_missing_files_and_loose_modes(store: Store) -> None:
    ref = make_backup(store, {"a": b"1", "b": b"2"})
    (ref.path / "stray").write_bytes(b"?")
    (ref.path / "b").unlink()
    os.chmod(ref.path / "a", 0o644)
    (store.root / "README").write_text("hi")
    (kind_dir(store) / "junk").write_text("hi")
    found = "\n".join(store.problems())
    for expected in ("stray file", "b: missing", "mode 0644", "README", "junk"):
        assert expected in found


# -- manifest ---------------------------------------------------------------------


def sample_manifest() -> Manifest:
    return Manifest(
        format=1,
        id="20261124T151500Z-1",
        host="web1",
        kind="env",
        created="2026-11-24T15:15:00Z",
        files=(
            record("zachot.env", b"A=1\n", mode=0o600),
            record(
                "redis.rdb",
                b"x",
                stored_in="20261124T151500Z",
                ciphertext_sha256="ab" * 32,
                mode=0o4755,
            ),
        ),
        meta={"keys": ["REDIS_URL"], "commit": "abc123"},
    )


def test_manifest_roundtrip_and_octal_mode() -> None:
    manifest = sample_manifest()
    text = manifest.to_json()
    assert Manifest.from_json(text, where="m.json") == manifest
    data = json.loads(text)
    assert [entry["mode"] for entry in data["files"]] == ["0600", "4755"]
    assert manifest.created_at == NOW


def test_truncated_manifest_is_a_store_error_naming_the_file() -> None:
    text = sample_manifest().to_json()
    for cut in range(0, len(text) - 2, 37):
        with pytest.raises(StoreError, match=r"^/x/manifest\.json: bad manifest"):
            Manifest.from_json(text[:cut], where="/x/manifest.json")


def mutate(change):
    data = json.loads(sample_manifest().to_json())
    change(data)
    return json.dumps(data)


MALFORMED = {
    "top-level-list": "[]",
    "nan": sample_manifest().to_json().replace("1764000000.25", "NaN", 1),
    "deep": "[" * 100000,
    "duplicate-key": '{"format": 1, "format": 1}',
    "missing-files": mutate(lambda d: d.pop("files")),
    "missing-sha": mutate(lambda d: d["files"][0].pop("sha256")),
    "unknown-field": mutate(lambda d: d.update(extra=1)),
    "format-2": mutate(lambda d: d.update(format=2)),
    "bad-id": mutate(lambda d: d.update(id="../../x")),
    "id-newline": mutate(lambda d: d.update(id="20261124T151500Z\n")),
    "bad-host": mutate(lambda d: d.update(host="a/b")),
    "bad-kind": mutate(lambda d: d.update(kind="secrets")),
    "naive-created": mutate(lambda d: d.update(created="2026-11-24T15:15:00")),
    "meta-list": mutate(lambda d: d.update(meta=[])),
    "files-object": mutate(lambda d: d.update(files={})),
    "mode-int": mutate(lambda d: d["files"][0].update(mode=384)),
    "mode-not-octal": mutate(lambda d: d["files"][0].update(mode="0800")),
    "size-negative": mutate(lambda d: d["files"][0].update(size=-1)),
    "size-bool": mutate(lambda d: d["files"][0].update(size=True)),
    "size-string": mutate(lambda d: d["files"][0].update(size="4")),
    "sha-upper": mutate(lambda d: d["files"][0].update(sha256="A" * 64)),
    "name-traversal": mutate(lambda d: d["files"][0].update(name="../../etc/passwd")),
    "name-manifest": mutate(lambda d: d["files"][0].update(name="manifest.json")),
    "duplicate-name": mutate(lambda d: d["files"][1].update(name="zachot.env")),
    "stored-in-self": mutate(lambda d: d["files"][1].update(stored_in="20261124T151500Z-1")),
    "stored-in-path": mutate(lambda d: d["files"][1].update(stored_in="../x")),
    "mtime-string": mutate(lambda d: d["files"][0].update(mtime="now")),
    "mtime-huge": mutate(lambda d: d["files"][0].update(mtime=10**400)),
    "format-true": mutate(lambda d: d.update(format=True)),
}


@pytest.mark.parametrize("text", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_manifest_is_a_store_error(text: str) -> None:
    with pytest.raises(StoreError) as caught:
        Manifest.from_json(text, where="/x/manifest.json")
    assert caught.value.message.startswith("/x/manifest.json: bad manifest")
    assert len(caught.value.message) < 300


def test_to_json_refuses_an_invalid_manifest() -> None:
    from dataclasses import replace

    with pytest.raises(ValueError):
        replace(sample_manifest(), id="../x").to_json()
