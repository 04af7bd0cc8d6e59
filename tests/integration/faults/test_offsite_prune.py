"""backup.prune on the off-site copy, cut mid-way: the vault's sshd session serving the
prune is killed (kill -9) right after the first backup's manifest is removed.

The vault's link is slowed to 64 kbit/s with a one-packet burst during the prune, so each
SFTP request takes tens of milliseconds and the test stops the client right after the
first manifest goes. On loopback, with TCP_NODELAY, a request takes well under a
millisecond and the whole prune could finish before the test saw the first one.

The env history on prod13 goes A B A C C, so the third backup holds its bytes in the
first and the fifth in the fourth; `--keep-last 1` keeps the fifth and the fourth it
uses, and forgets the first three, deleted newest first. Afterwards no complete backup
on the vault refers to a deleted one, the vault's index lists none being deleted, the
newest verifies off-site, and a re-run finishes the prune.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.integration.adversary.hostile import prod13_lab  # noqa: F401  (fixture)

from . import inject
from .lab import ENV, VAULT, VAULT_ROOT, Lab

pytestmark = pytest.mark.integration

FAULT = "interrupted off-site prune"
KEEP = ("--kind", "env", "--keep-last", "1", "--keep-daily", "0", "--keep-weekly", "0",
        "--keep-monthly", "0")  # fmt: skip


def env_history(lab: Lab) -> list[str]:
    lab.sh(f"cp -p {ENV} /root/env.orig")
    for tag in "ABACC":
        lab.sh(f"cp /root/env.orig {ENV} && echo FAULT_PRUNE={tag} >> {ENV}")
        done = lab.fab("backup.env")
        assert done.returncode == 0, done.stdout + done.stderr
    ids = [ref.id for ref in lab.store.list(lab.box, "env")]
    newest, holder = lab.store.list(lab.box, "env")[-1], lab.store.list(lab.box, "env")[2]
    assert newest.references() == {ids[3]} and holder.references() == {ids[0]}
    return ids


def vault_state(lab: Lab) -> dict[str, dict | None]:
    """env backup id on the vault -> its manifest (None: incomplete, no manifest)."""
    base = f"{VAULT_ROOT}/{lab.offsite_dir}/{lab.box}/env"
    script = (
        f"cd {base} && for d in *; do printf '%s\\t' \"$d\"; "
        'if [ -f "$d/manifest.json" ]; then tr -d "\\n" < "$d/manifest.json"; fi; echo; done'
    )
    found = {}
    for line in lab.sh(script, box=VAULT).splitlines():
        name, _, manifest = line.partition("\t")
        found[name] = json.loads(manifest) if manifest else None
    return found


def dangling(state: dict[str, dict | None]) -> list[str]:
    return [f"{i} -> {f['stored_in']}" for i, m in state.items() if m for f in m["files"]
            if f.get("stored_in") and not state.get(f["stored_in"])]  # fmt: skip


def indexed(lab: Lab) -> set[str]:
    path = f"{VAULT_ROOT}/{lab.offsite_dir}/{lab.box}/index.json"
    data = json.loads(lab.sh(f"cat {path}", box=VAULT))
    return {b["id"] for b in data["backups"] if b["kind"] == "env"}


def stop_when_gone(process: subprocess.Popen[str], path: Path, timeout: float = 120) -> bool:
    """Spin until `path` is removed, then SIGSTOP the client at once (it gets no further
    than a few requests when the machine is loaded). False if it ended first."""
    deadline = time.monotonic() + timeout
    while path.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            return False
    os.kill(process.pid, signal.SIGSTOP)
    return True


@pytest.mark.fault(
    FAULT,
    checked="vault session killed after the first manifest goes: no complete backup refers "
    "to a deleted one, the index lists none being deleted, newest verifies, re-run finishes",
)
def test_offsite_prune_cut_after_the_first_manifest(prod13: Lab):
    prod13.configure(offsite=True)
    ids = env_history(prod13)
    sent = prod13.fab("backup.replicate")
    assert sent.returncode == 0, sent.stdout + sent.stderr
    assert set(vault_state(prod13)) == set(ids)

    # The vault's files as the host sees them: its overlay root is mounted here.
    vault_root = prod13.fleet.paths.box_dir(VAULT) / "root" / VAULT_ROOT.lstrip("/")
    first = vault_root / prod13.offsite_dir / prod13.box / "env" / ids[2] / "manifest.json"
    assert first.exists()
    slow = inject.slow_link(prod13.fleet, VAULT, rate="64kbit", burst="1600", latency="2s")
    with slow:
        process = prod13.started("backup.prune", *KEEP, "--yes")
        try:
            assert stop_when_gone(process, first), process.communicate()
            inject.kill_sessions(prod13.fleet, VAULT, process.pid)  # the link dies mid-prune
            os.kill(process.pid, signal.SIGCONT)
            stdout, stderr = process.communicate(timeout=300)
        finally:
            if process.poll() is None:
                os.kill(process.pid, signal.SIGCONT)
                process.kill()
                process.communicate()
    assert process.returncode != 0, stdout
    assert "Traceback" not in stderr
    [error] = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert "off-site prune on vault stopped at env" in error, error
    assert "run it again to finish" in error, error

    state = vault_state(prod13)
    assert state.get(ids[2]) is None  # its manifest went first (its files may be gone too)
    # On a loaded machine the client may get through a few more requests before SIGSTOP
    # lands, so the next forgotten backup may be incomplete too; what must hold is that the
    # kept ones are whole, the oldest (forgotten last) is still there, and nothing dangles.
    assert all(state[i] for i in (ids[3], ids[4])), state.keys()
    assert ids[0] in state, state.keys()  # cut mid-way: the re-run below has work to do
    assert dangling(state) == []
    assert indexed(prod13) == {ids[3], ids[4]}  # dropped before anything was deleted
    checked = prod13.fab("backup.verify", "--kind", "env", "--read-budget", "0")
    assert checked.returncode == 0, checked.stdout + checked.stderr

    again = prod13.fab("backup.prune", *KEEP, "--yes")
    assert again.returncode == 0, again.stdout + again.stderr
    assert vault_state(prod13).keys() == {ids[3], ids[4]}
    assert dangling(vault_state(prod13)) == []
    assert [ref.id for ref in prod13.store.list(prod13.box, "env")] == ids[3:]
    rolled = prod13.fab("backup.verify", "--kind", "env", "--read-budget", "1GiB")
    assert rolled.returncode == 0, rolled.stdout + rolled.stderr
