"""The vault's index: round trips that do not grow with the number of stored backups.

A far vault costs one round trip per SFTP request that waits for its answer, so the
requests replicate, status and verify make are counted with 5 and with 200 stored
backups of each kind: the counts must be the same (issue 12 §4). Pipelined reads and
writes (a prefetch, a pipelined upload) wait for nothing and are counted apart. Then
what the index may hold, and what happens when it is missing, hostile or out of date.
"""

from __future__ import annotations

import json
import secrets
import shutil
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import paramiko
import pytest

from fabfile.core import offsite
from fabfile.core.checklist.status import offsite_ages
from fabfile.core.manifest import MANIFEST_NAME, format_utc
from fabfile.core.model import Host, StoreSettings
from fabfile.core.store import Store
from tests.sshd.helpers import CANARY
from tests.sshd.test_replicate import DAY, backup, host, remote_dir, replicate, vault  # noqa: F401

pytestmark = pytest.mark.sshd

KINDS = ["env", "units"]


@pytest.fixture
def count(monkeypatch) -> Callable[[], Iterator[Counter]]:
    """count() -> a context that counts SFTP requests: 'waits' (round trips) and 'all'."""
    real_request, real_async = paramiko.SFTPClient._request, paramiko.SFTPClient._async_request
    counter: Counter = Counter()

    def request(self, t, *args):
        counter["waits"] += 1
        return real_request(self, t, *args)

    def async_request(self, fileobj, t, *args):
        counter["all"] += 1
        return real_async(self, fileobj, t, *args)

    monkeypatch.setattr(paramiko.SFTPClient, "_request", request)
    monkeypatch.setattr(paramiko.SFTPClient, "_async_request", async_request)

    class Counting:
        def __enter__(self) -> Counter:
            counter.clear()
            return counter

        def __exit__(self, *exc) -> None:
            pass

    return Counting


def with_history(base: Host, box, tmp_path: Path, backups: int) -> Host:
    """A host whose store and vault hold `backups` backups of each kind (copies of one)."""
    own = replace(
        base,
        store=StoreSettings(path=tmp_path / f"store-{backups}"),
        backup=replace(base.backup, offsite_dir=f"t-{secrets.token_hex(4)}/zachot"),
    )
    backup(own, KINDS)
    store = Store(own.store.path)
    for ref in store.list(own.name):
        for hours in range(1, backups):
            copy_backup(ref.path, ref.created - timedelta(hours=hours))
    for ref in Store(own.store.path).list(own.name):  # the vault as replicate left it
        there = remote_dir(own, box, ref.kind, ref.id)
        shutil.copytree(ref.path, there)
        (there / MANIFEST_NAME).write_bytes(offsite.offsite_manifest(ref))
    return own


def copy_backup(source: Path, when) -> None:
    new_id = format_utc(when).replace("-", "").replace(":", "")
    target = source.parent / new_id
    shutil.copytree(source, target)
    data = json.loads((target / MANIFEST_NAME).read_text())
    data["id"], data["created"] = new_id, format_utc(when)
    (target / MANIFEST_NAME).write_text(json.dumps(data))


def round_trips(own: Host, box, count) -> dict[str, int]:
    find = {"vault": box[0]}.__getitem__
    [first] = offsite.replicate_hosts([own], find)  # the first run after an upgrade
    assert first.ok, first.detail
    found = {}
    with count() as counted:
        [outcome] = offsite.replicate_hosts([own], find)
    assert outcome.ok and "0 sent" in outcome.detail, outcome.detail
    found["replicate, nothing to send"] = counted["waits"]
    with count() as counted:
        ages = offsite_ages([own], find)[own.name]
    assert set(ages) == set(KINDS), ages
    found["status"] = counted["waits"]
    with count() as counted:
        states = offsite.newest_offsite([own], find)
    assert {s.kind for s in states} == set(KINDS) and all(s.ok for s in states), states
    found["verify"] = counted["waits"]
    backup(own, ["env"], at=DAY + timedelta(days=1))  # unchanged: a reference and a manifest
    with count() as counted:
        [outcome] = offsite.replicate_hosts([own], find)
    assert outcome.ok and "1 sent" in outcome.detail, outcome.detail
    found["replicate, one new backup"] = counted["waits"]
    return found


def test_round_trips_do_not_grow_with_the_number_of_backups(host, vault, tmp_path, count):  # noqa: F811
    few = round_trips(with_history(host, vault, tmp_path, 5), vault, count)
    many = round_trips(with_history(host, vault, tmp_path, 200), vault, count)
    print(f"SFTP requests that wait, 5 vs 200 backups of each kind: {few} {many}")
    assert many == few
    assert few["replicate, nothing to send"] <= 5 and few["status"] <= 5, few


def index_file(own: Host, box) -> Path:
    return remote_dir(own, box) / offsite.INDEX_NAME


def test_index_lists_what_was_sent_and_nothing_secret(host, vault):  # noqa: F811
    backup(host, ["env", "units"])
    replicate(host, vault)
    backup(host, ["env"], at=DAY + timedelta(days=1))
    replicate(host, vault)
    store = Store(host.store.path)
    path = index_file(host, vault)
    assert path.stat().st_mode & 0o077 == 0
    text = path.read_text()
    data = json.loads(text)
    assert [(b["kind"], b["id"]) for b in data["backups"]] == [
        (ref.kind, ref.id) for ref in store.list(host.name)
    ]
    env = store.latest(host.name, "env")
    assert set(data["backups"][1]["files"]) == {MANIFEST_NAME}  # the bytes are in the holder
    # Names, sizes and ciphertext hashes only: no plaintext hash, no key name, no value.
    for ref in store.list(host.name):
        for record in ref.manifest.files:
            assert record.sha256 not in text, record.name
    for needle in (CANARY, "REDIS_URL", "API_KEY", *env.manifest.meta["keys"]):
        assert needle not in text


HOSTILE = {
    "format": 1,
    "host": "local",
    "backups": [
        {"kind": "env", "id": "20261101T000000Z",
         "files": {"manifest.json": [1, None], "../../escape": [1, None]}}
    ],
}  # fmt: skip


def sizes(index: bytes) -> dict[tuple[str, str], dict[str, int]]:
    backups = json.loads(index)["backups"]
    return {(b["kind"], b["id"]): {n: s for n, (s, _) in b["files"].items()} for b in backups}


@pytest.mark.parametrize(
    "damage",
    [None, b"{not json", json.dumps(HOSTILE).encode()],
    ids=["missing", "not-json", "hostile"],
)
def test_missing_or_bad_index_is_rebuilt_once_and_said(host, vault, capsys, damage):  # noqa: F811
    backup(host, ["env", "units"])
    replicate(host, vault)
    path = index_file(host, vault)
    good = path.read_bytes()
    if damage is None:
        path.unlink()
    else:
        path.write_bytes(damage)
    capsys.readouterr()
    rows = replicate(host, vault)
    assert {r.result for r in rows} == {"present"}, rows
    assert "rebuilt it from a listing of 2 backups" in capsys.readouterr().err
    assert sizes(path.read_bytes()) == sizes(good)  # hashes come back as they are sent
    replicate(host, vault)
    assert "rebuilt" not in capsys.readouterr().err  # once


def test_index_out_of_date_is_caught_by_verify_and_mended_by_rescan(host, vault):  # noqa: F811
    backup(host, ["units"])
    replicate(host, vault)
    ref = Store(host.store.path).latest(host.name, "units")
    gone = remote_dir(host, vault, "units", ref.id, "zachot-worker.service.age")
    gone.unlink()  # behind the index's back
    find = {"vault": vault[0]}.__getitem__
    [state] = offsite.newest_offsite([host], find)
    assert not state.ok and "zachot-worker.service.age" in state.detail
    [row] = replicate(host, vault)
    assert row.result == "present"  # the index says so: replicate does not list
    [row] = replicate(host, vault, rescan=True)
    assert (row.action, row.result) == ("repair", "sent+verified")
    assert gone.exists()
    [state] = offsite.newest_offsite([host], find)
    assert state.ok, state


def test_table_sums_up_backups_already_there(host, vault, tmp_path, capsys):  # noqa: F811
    own = with_history(host, vault, tmp_path, 4)
    find = {"vault": vault[0]}.__getitem__
    offsite.replicate_hosts([own], find)
    capsys.readouterr()
    offsite.replicate_hosts([own], find)
    short = capsys.readouterr().out
    assert "4 backups" in short and short.count("present") == 2, short
    offsite.replicate_hosts([own], find, verbose=True)
    assert capsys.readouterr().out.count("present") == 8
