"""The off-site tests, once per back end: the SFTP vault (an SFTP-only sshd) and S3
(a real `rclone serve s3` on loopback, sandbox/s3.py). The decisions are one code path;
these prove both back ends give them the same answers. S3-only faults follow.

Both servers keep files in a local directory, so `stored(...)` finds an object's bytes
there for damage and leftover checks.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path

import boto3
import pytest

from fabfile.core import crypto, offsite, offsite_backend, offsite_fetch, offsite_s3
from fabfile.core.errors import StoreError, TransferError, UsageError
from fabfile.core.manifest import MANIFEST_NAME
from fabfile.core.model import Host
from fabfile.core.store import Store
from sandbox import s3 as s3server
from tests.sshd.cuttable import Link
from tests.sshd.helpers import CANARY, ROOT, write_inventory
from tests.sshd.s3_hooks import on_s3_event
from tests.sshd.test_replicate import DAY, backup, host, vault  # noqa: F401 (fixtures)

pytestmark = pytest.mark.sshd


@dataclass
class Site:
    """One back end under test: the host set up for it, how to open it, where its bytes are."""

    kind: str
    host: Host
    find: object
    files: Path  # the directory the back end's paths are relative to

    @contextlib.contextmanager
    def open(self) -> Iterator[offsite_backend.Backend]:
        with offsite_backend.open_offsite(self.host, self.find) as backend:
            yield backend

    def stored(self, *parts: str) -> Path:
        return self.files / self.host.backup.offsite_dir / self.host.name / Path(*parts)


@pytest.fixture(scope="module")
def s3(tmp_path_factory) -> Iterator[s3server.S3Server]:
    state = tmp_path_factory.mktemp("s3")
    server = s3server.start(state)
    yield server
    s3server.stop(state)


@pytest.fixture
def s3_env(s3, monkeypatch) -> s3server.S3Server:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    for name, value in s3.env().items():
        monkeypatch.setenv(name, value)
    return s3


@pytest.fixture(params=["sftp", "s3"])
def site(request, host, vault) -> Site:  # noqa: F811
    if request.param == "sftp":
        return Site("sftp", host, lambda _name: vault[0], vault[1])
    server = request.getfixturevalue("s3_env")
    settings = replace(
        host.backup,
        offsite_host=None,
        offsite_s3_endpoint=server.endpoint,
        offsite_s3_bucket=server.bucket,
    )
    return Site("s3", replace(host, backup=settings), None, server.root / server.bucket)


def opened(site: Site, path: Path) -> bytes:
    """A manifest or index as the decisions read it: sealed (age) on S3, plain on SFTP."""
    data = path.read_bytes()
    if site.kind == "sftp":
        return data
    return crypto.decrypt(data, site.host.backup.age_identity, what=str(path))


def replicate(site: Site, **kwargs) -> list[offsite.Row]:
    with site.open() as backend:
        return offsite.replicate(site.host, backend, **kwargs)


def status(site: Site, **kwargs) -> list[offsite.OffsiteState]:
    with site.open() as backend:
        return offsite.offsite_status(site.host, backend, **kwargs)


# -- the same suite on both back ends ---------------------------------------------------


def test_replicate_sends_verifies_and_is_incremental(site):
    backup(site.host, ["env", "units"])
    store = Store(site.host.store.path)
    assert {r.result for r in replicate(site, dry_run=True)} == {"would send"}
    assert not site.stored().exists()
    rows = replicate(site)
    assert [(r.kind, r.result) for r in rows] == [
        ("env", "sent+verified"),
        ("units", "sent+verified"),
    ]
    for ref in store.list("local"):
        there = site.stored(ref.kind, ref.id)
        assert opened(site, there / MANIFEST_NAME) == offsite.offsite_manifest(ref)
        for record in ref.manifest.files:
            assert (there / record.name).read_bytes() == (ref.path / record.name).read_bytes()
    assert (site.stored(offsite.INDEX_NAME)).exists()
    backup(site.host, ["env"], at=DAY + timedelta(days=1))
    again = replicate(site)
    assert [(r.kind, r.result) for r in again] == [
        ("env", "present"),
        ("env", "sent+verified"),
        ("units", "present"),
    ]
    assert all(state.ok for state in status(site)), status(site)


def test_flipped_byte_off_site_is_caught(site):
    backup(site.host, ["units"])
    replicate(site)
    ref = Store(site.host.store.path).latest("local", "units")
    target = site.stored("units", ref.id, "zachot-worker.service.age")
    data = bytearray(target.read_bytes())
    data[3] ^= 0x01
    target.write_bytes(bytes(data))
    [deep] = status(site)
    assert (deep.ok, deep.remote) == (False, "complete")
    assert "zachot-worker.service.age: checksum mismatch" in deep.detail


def test_interrupted_upload_never_looks_complete_and_resumes(site, monkeypatch):
    backup(site.host, ["units"])
    real_open = offsite_backend.open_local
    calls = []

    def dying(path: Path):
        calls.append(path)
        if len(calls) == 2:
            raise OSError(5, "Input/output error")
        return real_open(path)

    monkeypatch.setattr(offsite_backend, "open_local", dying)
    [row] = replicate(site)
    assert (row.ok, row.result) == (False, "FAILED") and "Input/output error" in row.detail
    ref = Store(site.host.store.path).latest("local", "units")
    assert not (site.stored("units", ref.id, MANIFEST_NAME)).exists()
    [state] = status(site)
    assert state.remote in ("incomplete", "missing") and not state.ok
    monkeypatch.setattr(offsite_backend, "open_local", real_open)
    [row] = replicate(site)
    assert (row.ok, row.action, row.result) == (True, "resume", "sent+verified")
    assert all(s.ok for s in status(site))


def test_large_file_round_trip_and_a_damaged_local_file_is_not_sent(site, monkeypatch, tmp_path):
    monkeypatch.setattr(offsite_s3, "PART", 5 << 20)  # multipart above 5 MiB (S3's minimum)
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(12 << 20))
    sha = hashlib.sha256(big.read_bytes()).hexdigest()
    directory = f"{site.host.backup.offsite_dir}/{site.host.name}/logs/x"
    with site.open() as backend:
        backend.makedirs(directory)
        backend.upload(offsite_backend.Upload("big.bin", big, 12 << 20, sha), directory, "t")
        out = io.BytesIO()
        assert backend.get(f"{directory}/big.bin", out, 12 << 20, "t") == sha
        assert out.getvalue() == big.read_bytes()
        wrong = offsite_backend.Upload("bad.bin", big, 12 << 20, "0" * 64)
        with pytest.raises(StoreError, match="does not match its manifest"):
            backend.upload(wrong, directory, "t")
        assert backend.probe(directory).files == {"big.bin": 12 << 20}
        backend.delete_backup(directory)
        assert backend.probe(directory) is None
    if site.kind == "s3":
        client = _client(site)
        assert (
            client.list_multipart_uploads(Bucket=site.host.backup.offsite_s3_bucket).get(
                "Uploads", []
            )
            == []
        )


# -- S3 faults ------------------------------------------------------------------------------


def _client(site: Site):
    return boto3.session.Session().client(
        "s3", endpoint_url=site.host.backup.offsite_s3_endpoint, region_name="us-east-1"
    )


@pytest.fixture
def s3_site(host, s3_env) -> Site:  # noqa: F811
    settings = replace(
        host.backup, offsite_host=None, offsite_s3_endpoint=s3_env.endpoint,
        offsite_s3_bucket=s3_env.bucket,
    )  # fmt: skip
    return Site("s3", replace(host, backup=settings), None, s3_env.root / s3_env.bucket)


@pytest.mark.fault(
    "s3 credentials", checked="wrong or no keys: one-line usage error, nothing sent, retry works"
)
def test_wrong_credentials_are_one_clear_error(s3_site, s3_env, monkeypatch, tmp_path):
    wrong = tmp_path / "credentials"
    wrong.write_text(
        f"[{s3server.PROFILE}]\naws_access_key_id = ZKNOPE\naws_secret_access_key = x\n"
    )
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(wrong))
    with pytest.raises(UsageError, match="credentials were refused") as caught, s3_site.open():
        pass
    assert "\n" not in caught.value.message and "ZKNOPE" not in caught.value.message
    monkeypatch.delenv("AWS_SHARED_CREDENTIALS_FILE")
    monkeypatch.delenv("AWS_PROFILE")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    with (
        pytest.raises(UsageError, match="no S3 credentials; set AWS_ACCESS_KEY_ID"),
        s3_site.open(),
    ):
        pass
    backup(s3_site.host, ["units"])
    [outcome] = offsite.replicate_hosts([s3_site.host], s3_site.find)
    assert not outcome.ok and "no S3 credentials" in outcome.detail and "\n" not in outcome.detail
    assert not s3_site.stored().exists()  # nothing sent
    for name, value in s3_env.env().items():  # the keys put right: a retry completes
        monkeypatch.setenv(name, value)
    assert all(r.ok for r in replicate(s3_site))


@pytest.mark.fault(
    "s3 bucket", checked="missing bucket: one-line usage error naming it, retry once it exists"
)
def test_missing_bucket_is_named(s3_site):
    name = f"nope-{secrets.token_hex(3)}"
    gone = replace(s3_site.host.backup, offsite_s3_bucket=name)
    site = replace(s3_site, host=replace(s3_site.host, backup=gone))
    backup(site.host, ["units"])
    with pytest.raises(UsageError, match=r"no bucket nope-\w+ at http") as caught, site.open():
        pass
    assert "\n" not in caught.value.message
    _client(site).create_bucket(Bucket=name)
    assert all(r.ok for r in replicate(site))


@pytest.fixture
def s3_link(s3_site) -> Iterator[tuple[Site, Link]]:
    """s3_site reached through a TCP link the test can cut (a real dropped connection)."""
    link = Link(("127.0.0.1", int(s3_site.host.backup.offsite_s3_endpoint.rsplit(":", 1)[1])))
    settings = replace(s3_site.host.backup, offsite_s3_endpoint=link.endpoint)
    yield replace(s3_site, host=replace(s3_site.host, backup=settings)), link
    link.close()


@pytest.mark.fault(
    "s3 endpoint dies",
    checked="TCP link cut mid-PUT, endpoint gone: one-line FAILED row, no manifest, retry works",
)
def test_endpoint_dies_mid_upload_then_a_retry_completes(s3_link):
    site, link = s3_link
    backup(site.host, ["env", "units"])
    link.cut_at(b"PUT ", nth=2, after=300)  # the env manifest's upload, half sent
    rows = replicate(site)
    assert not rows[0].ok and "cannot reach" in rows[0].detail and "\n" not in rows[0].detail
    assert rows[1].result == "not tried"  # the link is gone: no more tries
    assert not list(site.stored().rglob(MANIFEST_NAME))
    link.up()
    assert all(r.ok for r in replicate(site))
    assert all(s.ok for s in status(site))


@pytest.mark.fault(
    "s3 multipart drop",
    checked="TCP link cut mid-part, abort unreachable: nothing under the key, retry aborts it",
)
def test_network_drop_mid_multipart_leaves_nothing(s3_link, monkeypatch, tmp_path):
    site, link = s3_link
    monkeypatch.setattr(offsite_s3, "PART", 5 << 20)
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(11 << 20))
    item = offsite_backend.Upload(
        "big.bin", big, 11 << 20, hashlib.sha256(big.read_bytes()).hexdigest()
    )
    directory = f"{site.host.backup.offsite_dir}/{site.host.name}/logs/y"
    with site.open() as backend:
        link.cut_at(b"partNumber=2", after=3 << 20)  # 3 MiB into the second part
        with pytest.raises(TransferError, match="cannot reach") as caught:
            backend.upload(item, directory, "t")
    assert "\n" not in caught.value.message
    link.up()
    client, bucket = _client(site), site.host.backup.offsite_s3_bucket

    def unfinished() -> list[str]:
        found = client.list_multipart_uploads(Bucket=bucket, Prefix=directory)
        return [u["Key"] for u in found.get("Uploads", [])]

    assert unfinished() == [f"{directory}/big.bin"]  # its abort could not reach the server
    assert not (site.files / directory / "big.bin").exists()
    with site.open() as backend:
        backend.upload(item, directory, "t")
        assert backend.probe(directory).files == {"big.bin": 11 << 20}
    assert unfinished() == []  # the retry aborted the one the cut left


def test_fetch_rebuilds_a_lost_store_verified_and_resumable(site, monkeypatch):
    backup(site.host, ["env", "units"])
    backup(site.host, ["env"], at=DAY + timedelta(days=1))  # refers to the first env's bytes
    replicate(site)
    store = Store(site.host.store.path)
    plaintext = crypto.open_backup_file(
        store, store.latest("local", "env"), "zachot.env", site.host
    )
    shutil.rmtree(site.host.store.path)  # the laptop is gone
    with site.open() as backend:
        real_get = type(backend).get
        calls = []

        def dies_on_third(self, path, dest, size, label):
            calls.append(path)
            if len(calls) == 3:
                raise TransferError(f"{self.name}: {path}: connection lost")
            return real_get(self, path, dest, size, label)

        monkeypatch.setattr(type(backend), "get", dies_on_third)
        rows = offsite_fetch.fetch(site.host, backend)
        monkeypatch.setattr(type(backend), "get", real_get)
        assert [r.ok for r in rows].count(False) == 1, rows
        assert len(Store(site.host.store.path).list()) == 2  # nothing half-fetched listed
        again = offsite_fetch.fetch(site.host, backend)
    assert sorted(r.result for r in again) == ["fetched", "present", "present"]
    assert Store(site.host.store.path).problems() == []
    refs = Store(site.host.store.path).list()
    assert [(r.kind, r.id) for r in refs] == [(r.kind, r.id) for r in rows]
    fetched = store.latest("local", "env")
    assert crypto.open_backup_file(store, fetched, "zachot.env", site.host) == plaintext


@pytest.mark.fault("s3 clock skew", checked="client clock 2 h off: one-line error, retry completes")
def test_clock_skew_is_one_clear_error_then_a_retry_completes(s3_site, monkeypatch):
    import botocore.auth

    backup(s3_site.host, ["units"])
    real_now = botocore.auth.get_current_datetime
    monkeypatch.setattr(
        botocore.auth, "get_current_datetime", lambda **kw: real_now(**kw) - timedelta(hours=2)
    )
    with pytest.raises(TransferError, match=r"refused the request's time .* clock right"):
        replicate(s3_site)
    monkeypatch.setattr(botocore.auth, "get_current_datetime", real_now)
    assert not list(s3_site.stored().rglob("*.age"))
    assert all(r.ok for r in replicate(s3_site))


def test_a_routine_s3_run_with_nothing_new_makes_two_requests(s3_site, monkeypatch):
    for day in range(3):
        backup(s3_site.host, ["env", "units"], at=DAY + timedelta(days=day))
    replicate(s3_site)
    calls: list[str] = []
    on_s3_event(monkeypatch, "before-call.s3", lambda model, **_: calls.append(model.name))
    assert {r.result for r in replicate(s3_site)} == {"present"}
    assert calls == ["GetObject"]  # the index; HeadBucket came before counting
    calls.clear()
    assert all(s.ok for s in status(s3_site, deep=False)) and calls == ["GetObject"]


def test_restore_takes_the_off_site_copy_when_the_store_lacks_it(site):
    backup(site.host, ["env"])
    replicate(site)
    shutil.rmtree(site.host.store.path)
    plan = offsite_fetch.fetch_for_restore(site.host, site.find, kinds=["env"], dry_run=True)
    assert plan is not None and plan.step().actions  # the plan lists it, as a command
    assert not Path(site.host.store.path).exists()  # a dry run changes nothing
    fetched = offsite_fetch.fetch_for_restore(site.host, site.find, kinds=["env"])
    assert fetched is not None and fetched.backups == plan.backups
    assert len(Store(site.host.store.path).list("local", "env")) == 1
    note = f"from off-site ({_name(site)}): 1 env backups of local the store lacked"
    assert (plan.note, fetched.note) == (f"would fetch {note}", f"fetched {note}")
    modes = {p.stat().st_mode & 0o777 for p in Path(site.host.store.path).rglob("*")}
    assert modes == {0o700, 0o600}  # the host's directory too, created by the fetch
    assert offsite_fetch.fetch_for_restore(site.host, site.find, kinds=["env"]) is None


def _name(site: Site) -> str:
    return "vault" if site.kind == "sftp" else f"s3://{site.host.backup.offsite_s3_bucket}"


def test_cli_replicate_and_fetch_on_s3(s3_site, tmp_path):
    inventory = write_inventory(s3_site.host, tmp_path / "inv.yml")
    env = {**os.environ, "ZACHOT_INVENTORY": str(inventory)}
    fab = Path(sys.executable).parent / "fab"

    def run(*args: str) -> subprocess.CompletedProcess:
        done = subprocess.run(
            [fab, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
        )
        assert CANARY not in done.stdout + done.stderr
        assert s3_site_secret(s3_site) not in done.stdout + done.stderr
        return done

    assert run("-H", "local", "backup.all", "--no-offsite").returncode == 0
    sent = run("backup.replicate", "--json")
    assert sent.returncode == 0, sent.stderr
    assert {r["result"] for r in json.loads(sent.stdout)} == {"sent+verified"}
    shutil.rmtree(s3_site.host.store.path)
    some = run("-H", "local", "backup.fetch", "--kind", "env")
    assert some.returncode == 0, some.stderr
    assert [r.kind for r in Store(s3_site.host.store.path).list()] == ["env"]
    rest = run("backup.fetch", "--json")
    assert rest.returncode == 0, rest.stderr
    assert sorted(r["result"] for r in json.loads(rest.stdout)) == ["fetched", "present"]
    assert Store(s3_site.host.store.path).problems() == []


def s3_site_secret(site: Site) -> str:
    text = Path(os.environ["AWS_SHARED_CREDENTIALS_FILE"]).read_text()
    return text.split("aws_secret_access_key = ")[1].strip()
