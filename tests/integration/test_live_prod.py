"""A live prod (sandbox/load.py): backup.logs while the logs are written, rotated, compressed.

prod5 runs the load: API calls and Dramatiq jobs (delayed ones too), log lines appended
continuously, logrotate. Before the fix, `backup.logs --full` failed on it with `tar exited 1
(tar: api.log: file changed as we read it)`. Each test gets prod5 reset before and after.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tarfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator

import pytest

from fabfile.core import crypto
from fabfile.core.store import BackupRef
from sandbox import load
from sandbox.config import API_PORT
from tests.integration.faults.lab import Lab, _lab

pytestmark = pytest.mark.integration

BOX = "prod5"
LOGS = "/opt/zachot/logs"
# Read first (names sort before api.*): keeps tar busy while logrotate runs. Not a *.log,
# so logrotate leaves it alone.
BULK = f"{LOGS}/aaa-bulk.dat"
# logrotate (rotate 14) deletes the 14th copy: listed, then gone before tar reaches it.
OLDEST = ("api.log.14.gz", "worker.log.14.gz")
RENAME_CONF = f"{load.HOME}/rename.conf"


@pytest.fixture(name="live")
def live_lab(fleet, tmp_path) -> Iterator[Lab]:
    for lab in _lab(fleet, tmp_path, BOX):
        run = load.in_box(BOX)
        load.start(run)  # whatever ZACHOT_SANDBOX_LOAD says: this test is about a live box
        _wait_for_traffic(run)
        yield lab


def _wait_for_traffic(run: load.Exec, timeout: float = 30) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if load.stats(run).get("lines", 0) > 0 and load.running(run):
            return
        time.sleep(0.5)
    pytest.fail(f"the load did not start on {BOX}: {load.stats(run)}")


def _as_zachot(lab: Lab, script: str) -> None:
    lab.sh(f"runuser -u zachot -- sh -c '{script}'")


def _members(lab: Lab, ref: BackupRef) -> dict[str, int]:
    """Regular members of a logs archive (decrypted) and their sizes, as tar -tv says."""
    data = crypto.open_backup_file(lab.store, ref, ref.manifest.meta["archive"], lab.host())
    plain = lab.tmp / "logs.tar.zst"
    plain.write_bytes(data)
    unzstd = [shutil.which("zstd") or "zstd", "-dcq", str(plain)]
    with (
        subprocess.Popen(unzstd, stdout=subprocess.PIPE) as out,
        tarfile.open(fileobj=out.stdout, mode="r|") as tar,
    ):
        return {m.name: m.size for m in tar if m.isfile()}


def _check_backup(lab: Lab, run: subprocess.CompletedProcess[str]) -> BackupRef:
    """Exit 0, and the archive holds exactly what the index and the table say it holds."""
    assert run.returncode == 0, run.stdout + run.stderr
    ref = lab.store.latest(BOX, "logs")
    meta = ref.manifest.meta
    index = {e["path"]: e for e in meta["index"] if e["archive"] == ref.id}
    partial = {e["path"] for e in meta["partial"]}
    members = _members(lab, ref)
    assert set(members) == set(index) | partial
    assert all(members[name] == entry["size"] for name, entry in index.items())
    sent = re.search(r"sent (\d+) files \((\d+) bytes raw\)", run.stdout)
    assert sent and int(sent[1]) == len(index)
    assert int(sent[2]) == sum(e["size"] for e in index.values())
    for skipped in meta["skipped"]:
        assert skipped["path"] not in members and skipped["reason"] in run.stdout
    return ref


def test_backup_logs_full_succeeds_three_times_on_a_live_prod(live: Lab) -> None:
    # A live log of a few MB: reading it spans several of the load's writes.
    _as_zachot(live, f"base64 -w 100 /dev/urandom | head -c 8000000 >> {LOGS}/api.log")
    grew = 0
    for _ in range(3):
        ref = _check_backup(live, live.fab("backup.logs", "--full"))
        grew += bool(ref.manifest.meta["grew"])
    assert grew >= 1, "the load never wrote during a backup: is it running?"
    stats = load.stats(load.in_box(BOX))
    assert stats["failed"] < stats["ok"] / 10, stats  # the API and Redis kept answering


@pytest.mark.parametrize("style", ["copytruncate", "rename"])
def test_a_rotation_in_the_middle_of_a_backup(live: Lab, style: str) -> None:
    run = load.in_box(BOX)
    run(["systemctl", "stop", load.UNITS[1]])  # only our rotation below, at a known moment
    _as_zachot(live, f"base64 -w 100 /dev/urandom | head -c 150000000 > {BULK}")
    for name in OLDEST:
        _as_zachot(live, f"echo old | gzip > {LOGS}/{name}")
    conf = "/etc/logrotate.d/zachot" if style == "copytruncate" else RENAME_CONF
    backup = live.started("backup.logs", "--full")
    _wait_for_tar(live)
    live.sh(f"logrotate -f -s /tmp/rotate.status {conf}")
    assert _tar_running(live), "the rotation finished after the backup: make BULK larger"
    stdout, stderr = backup.communicate(timeout=300)
    result = subprocess.CompletedProcess(backup.args, backup.returncode, stdout, stderr)
    ref = _check_backup(live, result)
    skipped = {e["path"]: e["reason"] for e in ref.manifest.meta["skipped"]}
    for name in OLDEST:
        assert "rotated away" in skipped[name]
    said = re.search(r"skipped \d+ rotated away before tar read them: ([^;\n]*)", stdout)
    assert said and set(OLDEST) <= set(said[1].split(", ")), stdout


def _tar_running(lab: Lab) -> bool:
    return lab.fleet.exec(BOX, ["pgrep", "-u", "zachot", "-x", "tar"]).returncode == 0


def _wait_for_tar(lab: Lab, timeout: float = 60) -> None:
    end = time.monotonic() + timeout
    while not _tar_running(lab):
        assert time.monotonic() < end, "backup.logs never started tar"
        time.sleep(0.02)


def test_quiet_stops_the_load(live: Lab) -> None:
    run = load.in_box(BOX)
    load.quiet_box(BOX)
    assert not load.running(run)
    size = live.sh(f"stat -c %s {LOGS}/api.log")
    time.sleep(1)
    assert live.sh(f"stat -c %s {LOGS}/api.log") == size


def test_the_load_is_steady_and_light(live: Lab) -> None:
    run = load.in_box(BOX)
    before = load.stats(run)
    share = load.cpu_share(run, seconds=20)
    after = load.stats(run)
    assert share < 0.05, f"the load uses {share:.1%} of a core"
    assert after["delayed"] > before["delayed"] and after["jobs"] > before["jobs"]
    assert (after["lines"] - before["lines"]) / 20 >= 200  # hundreds of log lines a second
    assert live.fleet.job_processed(BOX)  # the worker keeps up


def _post_job(url: str, job_id: str) -> int | None:
    request = urllib.request.Request(
        f"{url}/jobs", data=json.dumps({"id": job_id}).encode(), method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            return answer.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return None


def _done(url: str, job_id: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/jobs/{job_id}", timeout=5) as answer:
            return bool(json.loads(answer.read())["done"])
    except (OSError, ValueError, KeyError):
        return False


def test_jobs_enqueued_during_restore_redis_are_refused_set_aside_or_run(live):
    """What happens to messages producers enqueue while restore.redis runs (README, "A live
    prod"): while Redis is down the API refuses them (503), so the caller knows; those
    accepted before Redis stopped are set aside with the rest of the queue in the moved-aside
    dump; every one accepted after the restore is processed. None is silently dropped by
    the API's answer."""
    url = f"http://{live.fleet.addresses[BOX]}:{API_PORT}"
    sent: list[tuple[float, str, int | None]] = []
    stop = threading.Event()

    def produce() -> None:
        while not stop.is_set():
            job = f"probe-{uuid.uuid4().hex[:10]}"
            sent.append((time.monotonic(), job, _post_job(url, job)))
            time.sleep(0.05)

    producer = threading.Thread(target=produce, daemon=True)
    producer.start()
    time.sleep(1.0)
    run = live.fab("restore.redis", "--yes")
    finished = time.monotonic()
    time.sleep(3.0)
    stop.set()
    producer.join(timeout=30)
    assert run.returncode == 0, run.stdout + run.stderr
    codes = {code for _, _, code in sent}
    assert codes <= {202, 503}, codes  # accepted, or refused with a clear status
    assert 503 in codes, "no request met the window in which Redis was down"
    after = [job for at, job, code in sent if code == 202 and at > finished]
    assert after, "nothing was enqueued after the restore"
    deadline = time.monotonic() + 60
    while not all(_done(url, job) for job in after) and time.monotonic() < deadline:
        time.sleep(1)
    assert all(_done(url, job) for job in after)
    # The queue as Redis left it, jobs accepted just before it stopped included, is kept.
    aside = live.sh("ls /var/lib/redis/ | grep -c 'dump.rdb.pre-restore' || true").strip()
    assert int(aside) >= 1
