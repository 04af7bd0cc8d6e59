"""The store's cache of parsed manifests (core/manifest_cache.py): a listing of a long
history reads no manifest that has not changed, and never serves one that has."""

from __future__ import annotations

import hashlib
import json
import os
import stat
from datetime import timedelta
from pathlib import Path

import pytest

from fabfile.core import store as store_module
from fabfile.core.manifest_cache import CACHE_NAME
from fabfile.core.store import Store
from tests.unit.test_store import NOW, make_backup

pytestmark = pytest.mark.unit


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "store")


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Every manifest file the store reads from disk."""
    seen: list[Path] = []
    real = store_module._read_manifest
    monkeypatch.setattr(store_module, "_read_manifest", lambda p: seen.append(p) or real(p))
    return seen


def history(store: Store, days: int = 30) -> list:
    return [
        make_backup(store, {"zachot.env": b"A=%d\n" % i}, now=NOW + timedelta(days=i))
        for i in range(days)
    ]


def test_a_second_listing_reads_no_manifest(store: Store, reads: list[Path]) -> None:
    history(store)
    first = store.list("web1")
    assert len(reads) == 30
    reads.clear()
    again = store.list("web1")
    assert reads == []
    assert again == first  # the same manifests, field for field
    cache = store.root / "web1" / CACHE_NAME
    assert stat.S_IMODE(cache.stat().st_mode) == 0o600


def test_listing_again_in_one_run_builds_nothing_again(store: Store) -> None:
    """prune and verify list the store many times in one run: the parsed manifests stay."""
    history(store, 3)
    first, again = store.list("web1"), store.list("web1")
    assert all(a.manifest is b.manifest for a, b in zip(first, again, strict=True))
    assert Store(store.root).list("web1")[0].manifest is not first[0].manifest


def test_each_ref_carries_its_manifest_bytes_sha256(store: Store) -> None:
    made = history(store, 3)
    for refs in (store.list("web1"), store.list("web1")):  # read, then from the cache
        for ref in refs:
            data = (ref.path / "manifest.json").read_bytes()
            assert ref.manifest_sha256 == hashlib.sha256(data).hexdigest()
    assert [r.manifest_sha256 for r in made] == [r.manifest_sha256 for r in store.list("web1")]


def test_a_rewritten_manifest_is_read_again_even_with_its_old_size_and_mtime(
    store: Store, reads: list[Path]
) -> None:
    refs = history(store, 5)
    store.list("web1")
    path = refs[2].path / "manifest.json"
    before = path.stat()
    text = path.read_text()
    assert '"REDIS_URL"' in text
    path.write_text(text.replace('"REDIS_URL"', '"REDIS_URI"'))  # same size
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))  # and mtime set back
    reads.clear()
    listed = store.list("web1")
    assert reads == [refs[2].path]  # ctime moved: only that one is read
    assert listed[2].manifest.meta["keys"] == ["REDIS_URI"]


def test_a_damaged_cache_is_ignored_and_rewritten(store: Store, reads: list[Path]) -> None:
    history(store, 4)
    expected = store.list("web1")
    cache = store.root / "web1" / CACHE_NAME
    for junk in ("{not json", '{"version": 1, "manifests": {"env/x": [1]}}', "[]"):
        cache.write_text(junk)
        reads.clear()
        assert Store(store.root).list("web1") == expected  # a new run reads the file
        assert len(reads) == 4
    reads.clear()
    assert Store(store.root).list("web1") == expected and reads == []  # rewritten whole


def test_a_cached_row_from_another_backup_is_not_served(store: Store, reads: list[Path]) -> None:
    """A row under another backup's name (a damaged cache): that manifest is read instead."""
    refs = history(store, 2)
    expected = store.list("web1")
    cache = store.root / "web1" / CACHE_NAME
    data = json.loads(cache.read_text())
    rows = data["manifests"]
    first, second = (f"env/{r.id}" for r in refs)
    rows[second][2] = rows[first][2]  # second's stamp, first's manifest
    cache.write_text(json.dumps(data))
    reads.clear()
    assert Store(store.root).list("web1") == expected
    assert reads == [refs[1].path]


def test_deleted_backups_leave_the_cache(store: Store) -> None:
    refs = history(store, 3)
    store.list("web1")
    with store.lock(timeout=1, purpose="test"):
        store.delete(refs[0])
    assert [r.id for r in store.list("web1")] == [r.id for r in refs[1:]]
    rows = json.loads((store.root / "web1" / CACHE_NAME).read_text())["manifests"]
    assert sorted(rows) == sorted(f"env/{r.id}" for r in refs[1:])


def test_the_store_check_reads_every_manifest(store: Store, reads: list[Path]) -> None:
    """backup.verify's problems() is there to notice a damaged manifest: no cache."""
    history(store, 5)
    store.list("web1")
    reads.clear()
    assert store.problems() == []  # the cache file is not a stray entry
    assert len(reads) == 5
