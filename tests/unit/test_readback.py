"""backup.verify's rolling read-back: choosing a bounded share, the read-back log, a full cycle."""

from __future__ import annotations

import json
import os
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from fabfile.core.errors import UsageError
from fabfile.core.model import BackupSettings, Host, StoreSettings
from fabfile.core.readback import Candidate, choose, parse_budget, parse_count, rolling_read_back
from fabfile.core.store import READ_BACK_NAME, ReadBack, Store
from tests.unit.test_verify import put

pytestmark = pytest.mark.unit

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def env(n: int) -> bytes:
    return f"REDIS_URL=redis://localhost/0\nWORKER_CONCURRENCY={n + 1}\n".encode()


def cands(*sizes: int) -> list[Candidate]:
    return [
        Candidate("local", "env", (T0 + timedelta(days=n)).strftime("%Y%m%dT%H%M%SZ"), size)
        for n, size in enumerate(sizes)
    ]


def test_choose_takes_never_read_oldest_first_within_the_budget():
    items = cands(10, 10, 10, 10)
    assert choose(items, {}, 25) == items[:2]
    last = {items[0].key: ReadBack(T0, True), items[1].key: ReadBack(T0, True)}
    assert choose(items, last, 25) == items[2:]


def test_choose_then_the_one_read_back_longest_ago():
    items = cands(1, 1, 1)
    last = {
        c.key: ReadBack(T0 + timedelta(hours=h), True)
        for c, h in zip(items, (5, 1, 3), strict=True)
    }
    assert choose(items, last, 2) == [items[1], items[2]]


def test_choose_always_takes_one_and_never_skips_a_big_one_for_smaller_ones():
    items = cands(100, 1, 1)
    assert choose(items, {}, 10) == items[:1]  # bigger than the budget: still its turn
    last = {items[0].key: ReadBack(T0, True)}
    assert choose(items, last, 10) == items[1:]
    assert choose(items, {}, 0) == []  # a budget of 0 turns the rotation off


def test_over_enough_runs_every_backup_is_read_back_exactly_once():
    items = cands(*(n % 7 + 1 for n in range(40)))
    last: dict = {}
    runs = 0
    while len(last) < len(items):
        runs += 1
        chosen = choose(items, last, 9)
        fresh = [c for c in chosen if c.key not in last]
        # Never-read ones first; a re-read only once every backup has had its turn.
        assert chosen[: len(fresh)] == fresh
        assert len(fresh) == len(chosen) or len(last) + len(fresh) == len(items)
        last.update({c.key: ReadBack(T0 + timedelta(days=runs), True) for c in chosen})
    assert runs <= 40  # progress every run


@pytest.mark.parametrize(
    ("text", "size"),
    [("64MiB", 64 << 20), ("1G", 1 << 30), ("500kB", 500 << 10), ("123", 123), ("0", 0)],
)
def test_budget_sizes(text, size):
    assert parse_budget(text) == size


@pytest.mark.parametrize("text", ["", "lots", "-1M", "5 parsecs"])
def test_bad_budget_is_a_usage_error(text):
    with pytest.raises(UsageError, match="--read-budget must be a size"):
        parse_budget(text)


# -- the read-back log ---------------------------------------------------------------


@pytest.fixture
def host(tmp_path: Path) -> Host:
    return Host(name="web1", store=StoreSettings(path=tmp_path / "store", lock_timeout=0.2))


def test_the_log_is_private_not_a_stray_entry_and_forgets_gone_backups(host):
    store = Store(host.store.path)
    ref = put(store, "env", {"zachot.env": env(1)}, at=T0)
    key, gone = ("local", "env", ref.id), ("offsite", "env", "20250101T000000Z")
    store.record_read_backs("web1", {key: ReadBack(T0, True), gone: ReadBack(T0, False)})
    log = host.store.path / "web1" / READ_BACK_NAME
    assert stat.S_IMODE(os.lstat(log).st_mode) == 0o600
    assert store.read_backs("web1") == {key: ReadBack(T0, True), gone: ReadBack(T0, False)}
    assert store.problems() == []
    store.record_read_backs("web1", {}, alive={key})
    assert store.read_backs("web1") == {key: ReadBack(T0, True)}
    log.write_text(json.dumps({"read_back": [{"where": "../x", "kind": "env", "id": ref.id}]}))
    assert store.read_backs("web1") == {}  # damaged: everything is due again, nothing breaks


def test_rolling_reads_every_older_backup_once_then_starts_over(host):
    store = Store(host.store.path)
    refs = [put(store, "env", {"zachot.env": env(n)}, at=T0 + timedelta(days=n))
            for n in range(5)]  # fmt: skip
    newest = {("local", "env", refs[-1].id): ReadBack(T0, True)}  # this run's newest check
    seen = []
    for run in range(4):
        now = T0 + timedelta(days=10 + run)
        rows = rolling_read_back(host, _no_vault, budget=1, done=newest, now=now)
        assert [(r.where, r.ok) for r in rows] == [("local", True)]
        seen.append(rows[0].id)
    assert seen == [ref.id for ref in refs[:4]]  # oldest first, none twice
    log = store.read_backs("web1")
    assert {key[2] for key in log} == {ref.id for ref in refs}
    assert all(store.verified_at(ref) is not None for ref in refs[:4])
    # A flipped byte in the oldest: caught on its next turn, and its mark is taken back.
    stored = refs[0].path / "zachot.env"
    stored.write_bytes(b"B" + stored.read_bytes()[1:])
    rows = rolling_read_back(host, _no_vault, budget=1, done=newest, now=T0 + timedelta(days=20))
    assert [(r.id, r.ok) for r in rows] == [(refs[0].id, False)]
    assert "does not match the manifest" in rows[0].detail
    assert store.verified_at(refs[0]) is None
    assert store.read_backs("web1")[("local", "env", refs[0].id)].ok is False


def test_rolling_with_an_unreachable_vault_reads_local_and_says_so(host, tmp_path):
    store = Store(host.store.path)
    put(store, "env", {"zachot.env": env(1)}, at=T0)
    put(store, "env", {"zachot.env": env(2)}, at=T0 + timedelta(days=1))
    far = Host(name="web1", store=host.store, backup=BackupSettings(offsite_host="vault"))
    vault = Host(name="vault", address="127.0.0.1", port=1, connect_timeout=2)
    rows = rolling_read_back(far, lambda _n: vault, budget=1 << 20, done={}, now=T0)
    assert [(r.where, r.ok) for r in rows] == [("offsite", False), ("local", True), ("local", True)]


def _no_vault(name: str) -> Host:
    raise AssertionError(f"no vault expected, asked for {name}")


def test_choose_stops_at_the_count_however_small_the_backups():
    items = cands(*[1] * 10)
    assert choose(items, {}, 1 << 30, count=3) == items[:3]
    assert choose(items, {}, 1 << 30, count=0) == []


def test_bad_count_is_a_usage_error():
    assert parse_count("16") == 16
    with pytest.raises(UsageError, match="--read-count must be a whole number"):
        parse_count("-1")
