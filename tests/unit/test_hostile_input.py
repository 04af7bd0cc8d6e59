"""Hostile and odd input where no box is needed: env-file parsing and masking, what
systemd makes of an env file, non-UTF-8 unit files and log names, hostile selectors, and
the restore gate on a damaged backup (--force). The CLI cases run in
tests/integration/faults/test_hostile_input.py."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pyrage import x25519

from fabfile.core import crypto, output, secrets
from fabfile.core.deploys.plan import check_to
from fabfile.core.errors import BadSelectorError, UsageError
from fabfile.core.facts import parse_entries
from fabfile.core.manifest import MANIFEST_NAME
from fabfile.core.model import BackupSettings, Host, StoreSettings
from fabfile.core.restores import redis as redis_restore
from fabfile.core.restores.context import BackupDamagedError, RestoreContext
from fabfile.core.restores.diffs import env_key_diff
from fabfile.core.restores.server_options import check_ref
from fabfile.core.store import Store
from fabfile.core.verify import parse_unit_file, systemd_env_notes, verify_kind
from tests.unit.test_store import record
from tests.unit.test_verify import API_UNIT, ENV, WORKER_UNIT, flip_byte, put

pytestmark = [pytest.mark.unit, pytest.mark.fault("hostile input: parsing (unit tier)")]

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
LATER = datetime(2026, 11, 24, 13, 0, tzinfo=UTC)
PEM_BODY = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7"


# -- env files: what is listed, what is masked --------------------------------------------


@pytest.mark.parametrize(
    "data, keys, secret",
    [
        (b'A="say \\"hush-quoted\\" now"\n', ("A",), 'say "hush-quoted" now'),
        (b"DSN=pg://u:hush-equals@h/db?a=b==c\n", ("DSN",), "pg://u:hush-equals@h/db?a=b==c"),
        (b'CERT="line one\nhush-multi\nline 3"\n', ("CERT",), "hush-multi"),
        (b"export TOKEN=hush-export\n", ("TOKEN",), "hush-export"),
        (b"TOKEN=hush-crlf\r\nB=2\r\n", ("TOKEN", "B"), "hush-crlf"),
        (b"\xef\xbb\xbfTOKEN=hush-bom\n", ("TOKEN",), "hush-bom"),
        (b"# caf\xe9 \xff\nTOKEN=hush-binary\n", ("TOKEN",), "hush-binary"),
    ],
    ids=["quotes", "= inside", "quoted multi-line", "export", "CRLF", "BOM", "binary comment"],
)
def test_env_values_are_registered_and_only_key_names_listed(data, keys, secret):
    summary = secrets.parse_env(data)
    assert summary.keys == keys
    assert secrets.mask(f"value: {secret}") == f"value: {secrets.MASK}"


def test_an_unquoted_multi_line_value_never_becomes_a_listed_key():
    # python-dotenv returns the body line as a key without a value: it is the secret.
    data = f"REDIS_URL=redis://r\nPRIVATE_KEY=-----BEGIN KEY-----\n{PEM_BODY}\n-----END KEY-----\n"
    summary = secrets.parse_env(data.encode())
    assert summary.keys == ("REDIS_URL", "PRIVATE_KEY")
    assert PEM_BODY not in secrets.mask(f"printed {PEM_BODY}")
    diff = env_key_diff(b"REDIS_URL=redis://r\n", data.encode())
    assert all(PEM_BODY not in line for line in diff), diff


def test_a_huge_env_file_parses(tmp_path):
    data = b"TOKEN=hush-huge-value\n" + (b"# " + b"p" * 97 + b"\n") * 105_000
    assert len(data) > 10_000_000
    assert secrets.parse_env(data).keys == ("TOKEN",)


def test_output_never_prints_a_registered_value(capsys):
    secrets.parse_env(b"API_KEY=hush-printed-value\n")
    output.info("the key is hush-printed-value")
    output.error("failed with hush-printed-value")
    output.emit_json({"detail": "hush-printed-value"})
    said = capsys.readouterr()
    assert "hush-printed-value" not in said.out + said.err


# -- env files: what systemd's EnvironmentFile= makes of them -----------------------------


def test_systemd_env_notes_name_lines_never_their_text():
    data = (
        b"\xef\xbb\xbfREDIS_URL=r\n"  # 1: systemd ignores it (BOM)
        b"export TOKEN=hush-notes\n"  # 2: systemd ignores it
        b"# caf\xe9 comment\n"  # 3: fine in a comment
        b"BLOB=\xc3\x28hush-notes\n"  # 4: systemd refuses the file
        b"# nul \x00 here\n"  # 5: so it does for a NUL, even in a comment
    )
    problems, warnings = systemd_env_notes(data)
    assert problems == [
        "line 4 is not UTF-8 text: systemd refuses the whole file",
        "line 5 holds a NUL byte: systemd refuses the whole file",
    ]
    assert warnings == [
        "starts with a UTF-8 BOM: systemd ignores its first assignment",
        "line 2: systemd ignores an assignment starting 'export '",
    ]
    assert systemd_env_notes(b"A=1\r\nB=2\r\n") == ([], [])


# -- unit files and log names -------------------------------------------------------------


def test_unit_files_with_latin1_comments_parse_and_bad_assignments_do_not():
    good = b"[Unit]\n# versi\xf3n \xe9t\xe9\nDescription=api\n[Service]\nExecStart=/bin/true\n"
    assert parse_unit_file(good, "a.service") == ([], [])
    bad = b"[Unit]\nDescription=caf\xe9\n[Service]\nExecStart=/bin/true\n"
    assert parse_unit_file(bad, "a.service")[0] == ["a.service:2: not UTF-8 text"]


def test_log_names_keep_their_exact_bytes():
    names = [b"caf\xe9.log", b"a new\nline.log", b"-v", b"--checkpoint=1"]
    raw = b"".join(n + b"\0" + b"12\0" + b"1764000000.5\0" for n in names)
    entries = parse_entries(raw.decode("utf-8", "surrogateescape"))
    assert sorted(e.name.encode("utf-8", "surrogateescape") for e in entries) == sorted(names)


# -- hostile selectors --------------------------------------------------------------------

HOSTILE = ["../../etc/shadow", "latest;id", "$(touch /tmp/x)", "`id`", "", "A" * 10240, "\n"]


@pytest.mark.parametrize("selector", HOSTILE, ids=repr)
def test_hostile_selectors_are_refused_before_the_filesystem(tmp_path, selector):
    store = Store(tmp_path / "store")
    with pytest.raises(BadSelectorError) as caught:
        store.resolve("web1", "env", selector)
    assert len(caught.value.message) < 300 and "\n" not in caught.value.message
    assert not (tmp_path / "store").exists()


def test_an_empty_redis_selector_is_a_selector_not_a_clean_restore():
    # `--from ""` once meant "no dump": a clean restore that drops every queued task.
    with pytest.raises(UsageError, match="needs --yes"):
        redis_restore.require_yes_for_dump("", yes=False)


@pytest.mark.parametrize("check", [check_to, check_ref])
def test_a_huge_ref_is_not_echoed_whole(check):
    with pytest.raises(UsageError) as caught:
        check("$(touch /tmp/x)" + "A" * 10240)
    assert len(caught.value.message) < 200


# -- the restore gate ---------------------------------------------------------------------


@pytest.fixture
def host(tmp_path: Path) -> Host:
    return Host(name="web1", store=StoreSettings(path=tmp_path / "store"))


def context(host: Host, *, force: bool = False) -> RestoreContext:
    # backup() and plaintext() read only the local store: no connection is needed.
    store = Store(host.store.path)
    return RestoreContext(host, None, store, host.name, origin=host, force=force)  # type: ignore[arg-type]


def units(store: Store, at: datetime = NOW, api: bytes = API_UNIT):
    files = {"zachot-api.service": api, "zachot-worker.service": WORKER_UNIT}
    return put(store, "units", files, at=at)


def test_restore_refuses_a_backup_that_fails_verification(host):
    ref = units(Store(host.store.path))
    flip_byte(ref.path / "zachot-api.service")
    with pytest.raises(BackupDamagedError) as caught:
        context(host).backup("units", "latest")
    said = caught.value.message
    assert f"refusing web1/units/{ref.id}" in said and "zachot-api.service" in said
    assert "--force" in said and "\n" not in said


def test_force_uses_the_damaged_bytes_and_says_so(host, capsys):
    ref = units(Store(host.store.path))
    flip_byte(ref.path / "zachot-api.service")
    ctx = context(host, force=True)
    try:
        assert ctx.backup("units", "latest").id == ref.id
        record = ref.manifest.file("zachot-api.service")
        local = ctx.plaintext(ref, record)
        assert local.read_bytes() == (ref.path / "zachot-api.service").read_bytes() != API_UNIT
    finally:
        ctx.close()
    assert "--force: using web1/units/" in capsys.readouterr().err


def test_force_cannot_open_a_damaged_encrypted_file(tmp_path):
    key = x25519.Identity.generate()
    identity = tmp_path / "identity.txt"
    identity.write_text(f"{key}\n")
    store = Store(tmp_path / "store")
    with store.begin("web1", "env", now=NOW) as staged:
        size, digest = crypto.write_encrypted(
            staged.target("zachot.env.age"), ENV, [str(key.to_public())]
        )
        staged.add(replace(record("zachot.env.age", ENV), size=size, ciphertext_sha256=digest))
        ref = staged.commit()
    path = ref.path / "zachot.env.age"
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x01
    path.write_bytes(bytes(data))
    host = Host(name="web1", backup=BackupSettings(age_identity=identity))
    with pytest.raises(crypto.CryptoError, match="damaged age file"):
        crypto.open_backup_file(store, ref, "zachot.env", host, checked=False)


def test_a_backup_without_a_readable_manifest_is_named_not_missing(host, capsys):
    store = Store(host.store.path)
    older = units(store)
    newer = units(store, at=LATER, api=API_UNIT + b"# changed\n")
    (newer.path / MANIFEST_NAME).write_text('{"format": 1, "id": ')
    with pytest.raises(BackupDamagedError, match="even --force cannot use it"):
        context(host, force=True).backup("units", newer.id)
    # latest skips it, and says so.
    assert context(host).backup("units", "latest").id == older.id
    assert f"skipping the newer web1/units/{newer.id}" in capsys.readouterr().err


def test_verify_fails_a_kind_whose_only_backup_lost_its_manifest(host):
    store = Store(host.store.path)
    ref = put(store, "logs", {"logs.tar": b"x" * 10}, at=NOW, meta={"index": []})
    (ref.path / MANIFEST_NAME).unlink()
    report = verify_kind(store, host, "logs", LATER)
    assert report.status == "failed" and report.failed
    assert any("incomplete backup" in str(p) for p in report.problems)
