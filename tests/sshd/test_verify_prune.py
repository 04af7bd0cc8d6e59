"""backup.verify and backup.prune end to end: real sshd, real store, the real `fab`."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from fabfile.core.backups.planner import back_up, context_for
from fabfile.core.errors import ExitCode
from fabfile.core.model import BackupSettings, Host, StoreSettings
from fabfile.core.prune import prune_server_safely
from fabfile.core.store import Store
from tests.sshd.helpers import CANARY, ROOT, make_server, write_inventory

pytestmark = pytest.mark.sshd

FAB = Path(sys.executable).parent / "fab"
STAMPS = ["20261101_020000", "20261108_020000", "20261115_020000", "20261122_020000"]


@pytest.fixture
def host(sshd, tmp_path) -> Host:
    layout = make_server(tmp_path / "server")
    return replace(sshd.host, layout=layout, store=StoreSettings(path=tmp_path / "store"))


def inventory(host: Host, path: Path, **backup: object) -> Path:
    write_inventory(host, path)
    data = yaml.safe_load(path.read_text())
    data["all"]["vars"]["backup"] = backup
    path.write_text(yaml.safe_dump(data))
    return path


def fab(inventory_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "ZACHOT_INVENTORY": str(inventory_path), "NO_COLOR": "1"}
    done = subprocess.run(
        [FAB, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert "Traceback" not in done.stderr, done.stderr
    assert CANARY not in done.stdout + done.stderr
    return done


def backup(host: Host, kinds: list[str], at: datetime) -> None:
    back_up(context_for(host, at), kinds)


def test_cli_verify_passes_marks_verified_then_catches_a_flipped_byte(host, tmp_path):
    inv = inventory(host, tmp_path / "inv.yml")
    assert fab(inv, "-H", "local", "backup.all", "--logs").returncode == 0
    done = fab(inv, "backup.verify", "--json")  # no -H: every inventory host
    assert done.returncode == 0, done.stderr
    result = {row["kind"]: row["result"] for row in json.loads(done.stdout)}
    assert result == {"env": "ok", "units": "ok", "logs": "ok", "redis": "absent"}
    listing = json.loads(fab(inv, "backup.list", "--json").stdout)
    assert {row["kind"]: row["verified"] for row in listing} == {
        "env": True, "units": True, "logs": True
    }  # fmt: skip

    env_ref = Store(host.store.path).latest("local", "env")
    stored = env_ref.path / "zachot.env"
    data = bytearray(stored.read_bytes())
    data[0] ^= 0x20
    stored.write_bytes(bytes(data))
    failed = fab(inv, "-H", "local", "backup.verify")
    assert failed.returncode == int(ExitCode.FAILED)
    table = failed.stdout.splitlines()
    assert table[1].split("\t") == ["host", "kind", "newest", "age", "checks", "result"]
    env_row = next(line.split("\t") for line in table if line.startswith("local\tenv\t"))
    assert env_row[2] == env_ref.id and env_row[-1] == "FAILED"
    assert "files FAILED" in env_row[4]
    assert "does not match the manifest" in failed.stderr
    assert failed.stderr.strip().splitlines()[-1].startswith("error: 1 of 4 checks failed")
    listing = json.loads(fab(inv, "backup.list", "--json").stdout)
    assert {row["kind"]: row["verified"] for row in listing}["env"] is False


def server_copies(host: Host) -> list[str]:
    return sorted(p.name for p in Path(host.layout.backup_dir).iterdir())


def test_server_prune_keeps_the_newest_and_only_touches_exact_names(host, tmp_path):
    backups = Path(host.layout.backup_dir)
    backups.mkdir(mode=0o700)
    for stamp in STAMPS:
        (backups / f"zachot.env.{stamp}").write_text("A=1\n")
    strangers = ["zachot.env.bak", "zachot.env.20261101_020000.old", "notes.txt"]
    for name in strangers:
        (backups / name).write_text("keep me\n")
    (tmp_path / "outside").write_text("outside\n")
    (backups / "zachot.env.20200101_000000").symlink_to(tmp_path / "outside")
    (backups / "zachot.env.20190101_000000").mkdir()
    host = replace(host, backup=BackupSettings(server_keep_last=2))
    before = server_copies(host)

    planned = prune_server_safely(host, apply=False, sudo_password=None)
    assert planned.forget == ("zachot.env.20261108_020000", "zachot.env.20261101_020000")
    assert server_copies(host) == before

    done = prune_server_safely(host, apply=True, sudo_password=None)
    assert done.deleted and done.keep == tuple(f"zachot.env.{s}" for s in STAMPS[:1:-1])
    gone = {f"zachot.env.{s}" for s in STAMPS[:2]}
    assert server_copies(host) == sorted(set(before) - gone)
    assert (tmp_path / "outside").read_text() == "outside\n"


def test_cli_prune_is_a_dry_run_until_yes_and_keeps_references(host, tmp_path):
    now = datetime.now(UTC).replace(microsecond=0)
    env_file = Path(host.layout.env_file)
    original = env_file.read_bytes()
    # env: changed, changed back (a reference to the first), changed again, unchanged.
    for days_ago, content in ((4, original), (3, b"REDIS_URL=x\nWORKER_CONCURRENCY=1\n"),
                              (2, original), (1, original)):  # fmt: skip
        env_file.write_bytes(content)
        backup(host, ["env", "units"], now - timedelta(days=days_ago))
    store = Store(host.store.path)
    envs = [ref.id for ref in store.list("local", "env")]
    units = [ref.id for ref in store.list("local", "units")]  # all hold by units[0]
    holder = envs[0]
    assert store.latest("local", "env").manifest.file("zachot.env").stored_in == holder
    copies = server_copies(host)
    # A server copy is made unless the newest copy there already holds this content.
    assert len(copies) == 3
    inv = inventory(
        host, tmp_path / "inv.yml",
        keep_last=1, keep_daily=0, keep_weekly=0, keep_monthly=0, server_keep_last=1,
    )  # fmt: skip

    dry = fab(inv, "-H", "local", "backup.prune")
    assert dry.returncode == 0, dry.stderr
    would = [line for line in dry.stdout.splitlines() if line.startswith("Would prune")]
    assert would == [
        f"Would prune local/env/{envs[2]}",
        f"Would prune local/env/{envs[1]}",
        f"Would prune local/units/{units[2]}",
        f"Would prune local/units/{units[1]}",
        *(f"Would prune local:{host.layout.backup_dir}/{c}" for c in reversed(copies[:-1])),
    ]  # fmt: skip
    assert f"used by {envs[3]}" in dry.stdout
    assert [ref.id for ref in store.list("local", "env")] == envs
    assert server_copies(host) == copies

    done = fab(inv, "-H", "local", "backup.prune", "--yes")
    assert done.returncode == 0, done.stderr
    assert f"Pruned local/env/{envs[1]}" in done.stdout
    assert [ref.id for ref in store.list("local", "env")] == [holder, envs[3]]
    assert [ref.id for ref in store.list("local", "units")] == [units[0], units[3]]
    assert server_copies(host) == copies[-1:]
    assert store.problems() == []
    verified = fab(inv, "-H", "local", "backup.verify", "--kind", "env", "--json")
    assert verified.returncode == 0, verified.stderr
    assert json.loads(verified.stdout)[0]["result"] == "ok"


def test_cli_prune_of_a_dead_host_prunes_the_store_and_fails_clearly(host, tmp_path):
    now = datetime.now(UTC).replace(microsecond=0)
    for days_ago in (3, 2, 1):
        Path(host.layout.env_file).write_text(f"REDIS_URL=x\nWORKER_CONCURRENCY={days_ago}\n")
        backup(host, ["env"], now - timedelta(days=days_ago))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead_port = s.getsockname()[1]  # nothing listens here once closed
    inv = inventory(replace(host, port=dead_port), tmp_path / "inv.yml", keep_last=1,
                    keep_daily=0, keep_weekly=0, keep_monthly=0)  # fmt: skip
    done = fab(inv, "-H", "local", "backup.prune", "--yes", "--kind", "env")
    assert done.returncode == int(ExitCode.UNREACHABLE)
    assert len(Store(host.store.path).list("local", "env")) == 1
    [line] = [ln for ln in done.stderr.splitlines() if ln.startswith("error:")]
    assert "the store was pruned, but the server's env copies failed" in line
    assert "connection refused" in line
