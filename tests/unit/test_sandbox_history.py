"""The sandbox history generator's pure parts: the cron's cadence, the clones, the store."""

from __future__ import annotations

import hashlib
import io
import tarfile
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest

from fabfile.core.manifest import FileRecord, Manifest
from fabfile.core.store import BackupRef, Store
from sandbox.history import plan_manifests, schedule, tar_stream, write_local

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 30, 8, 0, 0, tzinfo=UTC)


def _template(tmp_path: Path, kind: str, names: list[str]) -> BackupRef:
    backup_id = "20261130T070000Z"
    path = tmp_path / "tpl" / kind / backup_id
    path.mkdir(parents=True)
    records = []
    for name in names:
        data = f"{kind}:{name}".encode()
        (path / name).write_bytes(data)
        sha = hashlib.sha256(data).hexdigest()
        records.append(FileRecord(name, sha, len(data), f"/src/{name}", 0o600, "r", "r", 1.0))
    meta = {"index": [{"path": "a.log", "archive": backup_id}]} if kind == "logs" else {}
    manifest = Manifest(1, backup_id, "prod7", kind, "2026-11-30T07:00:00Z", tuple(records), meta)
    return BackupRef("prod7", kind, backup_id, path, manifest)


def test_schedule_is_a_cron_cadence() -> None:
    counts = Counter(kind for kind, _ in schedule(730, NOW))
    assert counts == {"env": 730, "units": 730, "logs": 105, "redis": 25}
    moments = [moment for _, moment in schedule(730, NOW)]
    assert moments == sorted(moments) and moments[-1] < NOW
    assert (NOW - moments[0]).days == 730  # the first night of the period
    assert (NOW - moments[-1]).days == 1  # ... to last night: today's is the real one


def test_clones_refer_to_the_last_change(tmp_path: Path) -> None:
    templates = {
        "env": _template(tmp_path, "env", ["zachot.env.age"]),
        "logs": _template(tmp_path, "logs", ["logs.tar.zst.age"]),
    }
    planned = plan_manifests(templates, 90, NOW)
    env = [m for m, _ in planned if m.kind == "env"]
    physical = [m for m in env if m.files[0].stored_in is None]
    assert len(env) == 90 and len(physical) == 3  # a change every 30 days
    for m in env:
        held = m.files[0].stored_in
        assert held is None or (held in {p.id for p in physical} and held < m.id)
    logs = [m for m, _ in planned if m.kind == "logs"]
    assert all(m.meta["index"][0]["archive"] == m.id for m in logs)
    assert len({m.id for m, _ in planned if m.kind == "env"}) == 90
    for m, _ in planned:
        Manifest.from_json(m.to_json(), where="test")  # every one valid


def test_written_history_is_a_clean_store(tmp_path: Path) -> None:
    templates = {"units": _template(tmp_path, "units", ["a.service", "b.service"])}
    store = Store(tmp_path / "store")
    for manifest, template in plan_manifests(templates, 200, NOW):
        assert write_local(store, manifest, template)
        assert not write_local(store, manifest, template)  # an id already there is left alone
    refs = store.list("prod7", "units")
    assert len(refs) == 200
    assert store.problems() == []
    newest = refs[-1]
    assert store.file_path(newest, "a.service").read_bytes() == b"units:a.service"


def test_tar_is_private_dirs_and_files() -> None:
    payload = tar_stream([("prod7/env/X/manifest.json", b"{}")], "adv-1")
    with tarfile.open(fileobj=io.BytesIO(payload)) as tar:
        modes = {m.name: (m.isdir(), oct(m.mode)) for m in tar.getmembers()}
    assert modes["adv-1"] == (True, "0o700")
    assert modes["adv-1/prod7/env/X"] == (True, "0o700")
    assert modes["adv-1/prod7/env/X/manifest.json"] == (False, "0o600")
