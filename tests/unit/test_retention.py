"""Retention: restic's forget semantics as a pure function, then pruning a real local store."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from fabfile.core.errors import LockHeldError, StoreError
from fabfile.core.manifest import KINDS, FileRecord, Manifest, format_utc
from fabfile.core.model import BackupSettings, Host, StoreSettings
from fabfile.core.prune import (
    KEPT_LOCALLY,
    NEWEST_READ_BACK,
    NEWEST_VERIFIED,
    ServerPruneFailed,
    decide_offsite,
    id_time,
    offsite_pins,
    prune_offsite_host,
    select_server_copies,
)
from fabfile.core.prune import prune_store as prune_store_
from fabfile.core.retention import Decision, Policy, Snapshot, apply_policy, protect
from fabfile.core.store import DELETING_PREFIX, ReadBack, Store
from tests.unit.test_verify import put

pytestmark = pytest.mark.unit


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def snaps(*times: str) -> list[Snapshot]:
    return [Snapshot(f"s{n}", at(t)) for n, t in enumerate(times)]


def kept(decisions: list[Decision]) -> dict[str, tuple[str, ...]]:
    return {d.id: d.reasons for d in decisions if d.keep}


# -- the policy -------------------------------------------------------------------


def test_keep_last_keeps_the_newest_n_whatever_the_input_order():
    items = snaps(*(f"2026-11-{day:02d}T12:00" for day in range(1, 8)))
    shuffled = random.Random(4).sample(items, len(items))
    decisions = apply_policy(shuffled, Policy(keep_last=3))
    assert [d.id for d in decisions] == ["s6", "s5", "s4", "s3", "s2", "s1", "s0"]  # newest first
    assert kept(decisions) == {"s6": ("last 3",), "s5": ("last 3",), "s4": ("last 3",)}


def test_daily_keeps_the_newest_of_each_day_and_counts_only_days_with_a_backup():
    items = snaps(
        "2026-11-01T10:00",
        "2026-11-02T09:00",
        "2026-11-02T18:00",  # the newest of the 2nd
        "2026-11-05T12:00",  # days 3 and 4 have none: they do not use up the count
        "2026-11-09T08:00",
        "2026-11-09T23:59",
    )
    decisions = apply_policy(items, Policy(keep_daily=3))
    assert kept(decisions) == {"s5": ("daily",), "s3": ("daily",), "s2": ("daily",)}


def test_a_bucket_with_counts_left_also_keeps_the_oldest_like_restic():
    items = snaps("2026-11-01T08:00", "2026-11-01T12:00", "2026-11-01T16:00")
    decisions = apply_policy(items, Policy(keep_daily=2))
    assert kept(decisions) == {"s2": ("daily",), "s0": ("daily (oldest)",)}
    # With the count used up, the oldest goes like any other.
    assert kept(apply_policy(items, Policy(keep_daily=1))) == {"s2": ("daily",)}


def test_weekly_uses_iso_weeks_across_the_new_year():
    items = snaps(
        "2026-12-28T12:00",  # Monday of ISO week 2026-W53
        "2026-12-31T12:00",  # Thursday, same week
        "2027-01-01T12:00",  # Friday: still 2026-W53
        "2027-01-04T12:00",  # Monday: 2027-W01
    )
    decisions = apply_policy(items, Policy(keep_weekly=2))
    assert kept(decisions) == {"s3": ("weekly",), "s2": ("weekly",)}


def test_monthly_keeps_the_newest_of_each_month():
    items = snaps("2026-09-30T12:00", "2026-10-01T12:00", "2026-10-31T12:00", "2026-11-15T12:00")
    assert kept(apply_policy(items, Policy(keep_monthly=2))) == {
        "s3": ("monthly",),
        "s2": ("monthly",),
    }


def test_reasons_name_every_bucket_that_keeps_a_backup():
    # The runbook's weekly cron: a backup every Sunday for 10 weeks.
    sundays = [at("2026-09-06T02:00") + timedelta(weeks=n) for n in range(10)]
    items = [Snapshot(f"w{n}", t) for n, t in enumerate(sundays)]
    decisions = apply_policy(
        items, Policy(keep_last=2, keep_daily=3, keep_weekly=4, keep_monthly=3)
    )
    got = kept(decisions)
    assert got["w9"] == ("last 2", "daily", "weekly", "monthly")
    assert got["w8"] == ("last 2", "daily", "weekly")
    assert got["w7"] == ("daily", "weekly", "monthly")  # the newest of October
    assert got["w6"] == ("weekly",)
    assert [t.month for t in sundays[3:5]] == [9, 10]
    assert got["w3"] == ("monthly",)  # the newest of September
    # Every count is used up before w0, so the oldest is not kept.
    assert set(got) == {"w9", "w8", "w7", "w6", "w3"}


def test_empty_policy_keeps_everything():
    items = snaps("2026-11-01T12:00", "2026-11-02T12:00")
    decisions = apply_policy(items, Policy())
    assert Policy().empty and all(d.keep for d in decisions)
    assert decisions[0].reasons == ("policy is empty",)


def test_no_snapshots_no_decisions():
    assert apply_policy([], Policy(keep_last=3)) == []


@pytest.mark.parametrize("bad", [-1, 1.5, True, "3"])
def test_policy_counts_must_be_whole_numbers(bad):
    with pytest.raises(ValueError, match="keep_daily"):
        Policy(keep_daily=bad)


def test_policy_from_inventory_with_command_line_overrides():
    settings = BackupSettings(keep_last=5, keep_daily=0, keep_weekly=2, keep_monthly=1)
    assert Policy.from_settings(settings) == Policy(5, 0, 2, 1)
    assert Policy.from_settings(settings, keep_last=1, keep_daily=None) == Policy(1, 0, 2, 1)
    assert Policy(1, 0, 2, 0).describe() == "last 1, weekly 2"


# -- protection: the newest verified, and references --------------------------------


def test_pinned_backup_is_kept_with_its_reason():
    items = snaps("2026-11-01T12:00", "2026-11-02T12:00", "2026-11-03T12:00")
    decisions = protect(apply_policy(items, Policy(keep_last=1)), pinned={"s0": "newest verified"})
    assert kept(decisions) == {"s2": ("last 1",), "s0": ("newest verified",)}


def test_a_kept_backup_keeps_what_it_refers_to_through_chains():
    items = snaps("2026-11-01T12:00", "2026-11-02T12:00", "2026-11-03T12:00", "2026-11-04T12:00")
    refs = {"s3": {"s1"}, "s1": {"s0"}, "s2": {"gone-already"}}
    decisions = protect(apply_policy(items, Policy(keep_last=1)), references=refs)
    assert kept(decisions) == {"s3": ("last 1",), "s1": ("used by s3",), "s0": ("used by s1",)}


def test_forgotten_backups_do_not_keep_their_references():
    items = snaps("2026-11-01T12:00", "2026-11-02T12:00", "2026-11-03T12:00")
    decisions = protect(apply_policy(items, Policy(keep_last=1)), references={"s1": {"s0"}})
    assert kept(decisions) == {"s2": ("last 1",)}


def test_several_users_are_summed_up():
    items = snaps("2026-11-01T12:00", "2026-11-02T12:00", "2026-11-03T12:00")
    refs = {"s2": {"s0"}, "s1": {"s0"}}
    decisions = protect(apply_policy(items, Policy(keep_last=2)), references=refs)
    assert kept(decisions)["s0"] == ("used by s2 and 1 more",)


def test_a_pinned_backup_keeps_its_references_too():
    items = snaps("2026-11-01T12:00", "2026-11-02T12:00", "2026-11-03T12:00")
    decisions = protect(
        apply_policy(items, Policy(keep_last=1)),
        pinned={"s1": "newest verified"},
        references={"s1": {"s0"}},
    )
    assert kept(decisions)["s0"] == ("used by s1",)


# -- server env copies --------------------------------------------------------------


def test_server_copies_keep_the_newest_and_touch_only_the_exact_pattern():
    names = [
        "zachot.env.20261101_020000",
        "zachot.env.20261108_020000",
        "zachot.env.20261115_020000",
        "zachot.env.bak",
        "zachot.env.20261101_020000.old",
        "zachot.env.2026110_020000",
        "other.env.20261101_020000",
        "zachot.env.20261101_02000x",
        "zachot.env.20261101_020000\n",
    ]
    keep, forget = select_server_copies(names, 2)
    assert keep == ["zachot.env.20261115_020000", "zachot.env.20261108_020000"]
    assert forget == ["zachot.env.20261101_020000"]
    assert select_server_copies(names, 10)[1] == []
    # A second copy within one second is stamped -1 (agent.py), and is the newer.
    same_second = ["zachot.env.20261115_020000", "zachot.env.20261115_020000-1"]
    assert select_server_copies(same_second, 1) == (same_second[1:], same_second[:1])
    assert select_server_copies(["zachot.env.20261115_020000-10"], 1) == ([], [])


# -- pruning a real store ---------------------------------------------------------------


def day(n: int) -> datetime:
    # Noon UTC: the same local day in any timezone the tests may run in.
    return datetime(2026, 11, n, 12, 0, tzinfo=UTC)


@pytest.fixture
def host(tmp_path: Path) -> Host:
    return Host(name="web1", store=StoreSettings(path=tmp_path / "store", lock_timeout=0.2))


def prune_store(host: Host, policy: Policy, **kwargs):
    return {r.kind: r for r in prune_store_(host, policy, **kwargs)}


def ids(store: Store, kind: str = "env") -> list[str]:
    return [ref.id for ref in store.list("web1", kind)]


def test_dry_run_deletes_nothing_and_yes_deletes_what_it_said(host):
    store = Store(host.store.path)
    for n in range(1, 6):
        put(store, "env", {"zachot.env": f"A={n}\n".encode()}, at=day(n))
    before = ids(store)
    planned = prune_store(host, Policy(keep_last=2), apply=False)["env"]
    assert ids(store) == before
    assert [d.id for d in planned.forget] == before[:3][::-1]
    assert planned.deleted == ()
    done = prune_store(host, Policy(keep_last=2), apply=True)["env"]
    assert sorted(done.deleted) == before[:3]
    assert ids(store) == before[3:]
    assert store.problems() == []


def test_an_unchanged_backup_keeps_the_one_that_holds_its_bytes(host):
    store = Store(host.store.path)
    holder = put(store, "env", {"zachot.env": b"A=1\n"}, at=day(1))
    put(store, "env", {"zachot.env": b"A=2\n"}, at=day(2))
    newest = put(store, "env", {"zachot.env": b"A=1\n"}, at=day(3), refs={"zachot.env": holder.id})
    assert newest.references() == {holder.id}
    done = prune_store(host, Policy(keep_last=1), apply=True)["env"]
    reasons = {d.id: d.reasons for d in done.decisions}
    assert reasons[holder.id] == (f"used by {newest.id}",)
    assert ids(store) == [holder.id, newest.id]
    assert store.file_path(store.latest("web1", "env"), "zachot.env").read_bytes() == b"A=1\n"
    assert store.problems() == []


def test_logs_archives_named_by_a_kept_index_are_kept(host):
    store = Store(host.store.path)
    first = put(store, "logs", {"logs.tar.gz": b"x"}, at=day(1), meta={"archive": "logs.tar.gz"})
    put(store, "logs", {"logs.tar.gz": b"y"}, at=day(2), meta={"archive": "logs.tar.gz"})
    entry = {"path": "api.log.1", "size": 1, "mtime": 1.0, "archive": first.id, "member": "a"}
    newest = put(store, "logs", {}, at=day(3), meta={"index": [entry]})
    assert newest.references() == {first.id}
    prune_store(host, Policy(keep_last=1), kinds=("logs",), apply=True)
    assert ids(store, "logs") == [first.id, newest.id]


def test_the_newest_verified_backup_is_never_deleted(host):
    store = Store(host.store.path)
    refs = [put(store, "units", {"a.service": f"[Service]\n#{n}\n".encode()}, at=day(n))
            for n in range(1, 5)]  # fmt: skip
    store.mark_verified(refs[0], day(5), ["files"])
    store.mark_verified(refs[1], day(5), ["files"])
    done = prune_store(host, Policy(keep_last=1), kinds=("units",), apply=True)["units"]
    assert ids(store, "units") == [refs[1].id, refs[3].id]
    assert {d.id: d.reasons for d in done.decisions if d.keep}[refs[1].id] == ("newest verified",)


def test_an_interrupted_delete_leaves_nothing_listed_or_complained_about(host):
    store = Store(host.store.path)
    old = put(store, "env", {"zachot.env": b"A=1\n"}, at=day(1))
    put(store, "env", {"zachot.env": b"A=2\n"}, at=day(2))
    aside = old.path.with_name(f"{DELETING_PREFIX}{old.id}-0123456789abcdef")
    old.path.rename(aside)  # as if the process died between rename and rmtree
    assert old.id not in ids(store) and len(ids(store)) == 1
    assert store.problems() == []
    assert aside in store.cleanup_staging()
    assert not aside.exists()


def test_delete_refuses_a_ref_that_is_not_in_this_store(host, tmp_path):
    store = Store(host.store.path)
    ref = put(store, "env", {"zachot.env": b"A=1\n"}, at=day(1))
    victim = tmp_path / "precious"
    victim.mkdir()
    with pytest.raises(StoreError, match="not a backup in the store"):
        store.delete(replace(ref, path=victim))
    assert victim.exists()


def test_deleting_waits_for_the_store_lock(host):
    store = Store(host.store.path)
    for n in (1, 2):
        put(store, "env", {"zachot.env": f"A={n}\n".encode()}, at=day(n))
    with store.lock(timeout=0, purpose="backup.all"), pytest.raises(LockHeldError):
        prune_store(host, Policy(keep_last=1), apply=True)
    assert len(ids(store)) == 2
    # A dry run only reads: it does not need the lock.
    with store.lock(timeout=0, purpose="backup.all"):
        assert len(prune_store(host, Policy(keep_last=1), apply=False)["env"].forget) == 1


# -- the command line ------------------------------------------------------------------


def fab(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "ZACHOT_INVENTORY"}
    root = Path(__file__).resolve().parents[2]
    return subprocess.run(
        [Path(sys.executable).parent / "fab", *args],
        cwd=root, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-H", "prod", "backup.prune", "--yes", "--dry-run"], "give one of them"),
        (["-H", "prod", "backup.prune", "--keep-last=-1"], "--keep-last must be a whole number"),
        (["-H", "prod", "backup.prune", "--keep-daily=two"], "--keep-daily must be a whole"),
        (["-H", "prod", "backup.prune", "--kind=secrets"], "--kind must be one of"),
        (["backup.verify", "--kind=secrets"], "--kind must be one of"),
    ],
)
def test_bad_arguments_are_one_line_and_exit_2(args, message):
    done = fab(*args)
    assert done.returncode == 2
    [line] = done.stderr.strip().splitlines()
    assert message in line and "Traceback" not in done.stderr


# -- the off-site copy: the same rules, decided from one listing --------------------------


def offsite_manifest(backup_id: str, refs: dict[str, str] | None = None) -> Manifest:
    name = "zachot.env.age"
    held = (refs or {}).get(name)
    files = (FileRecord(name, "0" * 64, 1, "/env", 0o600, "root", "root", 0.0, stored_in=held),)
    return Manifest(1, backup_id, "web1", "env", format_utc(id_time(backup_id)), files)


def stamp(n: int) -> str:
    return day(n).strftime("%Y%m%dT%H%M%SZ")


def test_offsite_keeps_what_the_store_keeps_the_pins_and_what_kept_ones_use(host):
    """Off-site only: days 1-4 (3 and 4 hold their bytes in 1); local: days 5-7."""
    store = Store(host.store.path)
    local = {}
    for n in (5, 6, 7):
        ref = put(store, "env", {"zachot.env": f"A={n}\n".encode()}, at=day(n))
        local[ref.id] = ref
    remote = {stamp(1): offsite_manifest(stamp(1)), stamp(2): offsite_manifest(stamp(2))}
    for n in (3, 4):
        remote[stamp(n)] = offsite_manifest(stamp(n), {"zachot.env.age": stamp(1)})
    ids_there = [*remote, *local]
    read: list[str] = []

    def fetch(backup_id: str) -> Manifest:
        read.append(backup_id)
        return remote[backup_id]

    decisions = decide_offsite(
        ids_there,
        Policy(keep_last=1),
        local=local,
        local_kept={stamp(6), stamp(7)},
        pinned={stamp(3): NEWEST_READ_BACK},
        read=fetch,
    )
    reasons = {d.id: d.reasons for d in decisions}
    assert [d.id for d in decisions] == sorted(ids_there, reverse=True)  # newest first
    assert reasons == {
        stamp(7): ("last 1", KEPT_LOCALLY),
        stamp(6): (KEPT_LOCALLY,),
        stamp(5): (),
        stamp(4): (),  # it refers to day 1, but it is not kept itself
        stamp(3): (NEWEST_READ_BACK,),
        stamp(2): (),
        stamp(1): (f"used by {stamp(3)}",),
    }
    # Only kept backups that are not local are read: their references decide what else stays.
    assert sorted(read) == [stamp(1), stamp(3)]


def test_offsite_pins_are_the_newest_read_back_and_the_newest_verified(host):
    store = Store(host.store.path)
    refs = [put(store, "env", {"zachot.env": f"A={n}\n".encode()}, at=day(n)) for n in (1, 2, 3)]
    store.mark_verified(refs[0], day(4), ["files"])
    key = ("offsite", "env", stamp(2))
    store.record_read_backs("web1", {key: ReadBack(day(4), True)})
    store.record_read_backs("web1", {("offsite", "env", stamp(3)): ReadBack(day(4), False)})
    there = [stamp(1), stamp(2), stamp(3)]
    assert offsite_pins(store, "web1", "env", there) == {
        stamp(1): NEWEST_VERIFIED,
        stamp(2): NEWEST_READ_BACK,  # 3 was read back damaged: not a pin
    }


def test_an_unreachable_vault_says_the_store_was_pruned(host):
    far = replace(host, backup=BackupSettings(offsite_host="vault"))
    vault = Host(name="vault", address="127.0.0.1", port=1, connect_timeout=2)
    with pytest.raises(ServerPruneFailed, match="the store was pruned, but the off-site copy"):
        prune_offsite_host(
            far, lambda _n: vault, Policy(keep_last=1), kinds=KINDS, local_kept={}, apply=True
        )
