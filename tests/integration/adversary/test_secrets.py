"""Secrets and terminal escapes (issue 10, holes 10-13) on prod13, with the shared vault.

- unit `Environment=` values never reach the terminal (restore.units --dry-run's diff) or
  the off-site box in clear;
- off-site manifests hold neither the env file's plaintext sha256 nor its key names;
- ESC sequences the app writes into its logs (and into a log file's name) never reach the
  operator's terminal raw;
- `fab -H prod13 -- cat <env file>` masks the values of the host's env backup; `--raw`
  is the explicit way to see them.
"""

from __future__ import annotations

import json
import secrets
import shlex

import pytest

from tests.integration.faults.lab import ENV, VAULT, VAULT_ROOT, Lab

from .hostile import (
    LOGS,
    assert_no_secret,
    attacker,
    env_secrets,
    prod13_lab,  # noqa: F401  (fixture)
)

pytestmark = pytest.mark.integration

DROP_IN_DIR = "/etc/systemd/system/zachot-api.service.d"
DROP_IN = f"{DROP_IN_DIR}/secret.conf"
ESC = "\x1b"


def _canary(tag: str) -> str:
    return f"{tag}-{secrets.token_hex(8)}"


def _drop_in(lab: Lab, password: str, token: str, extra: str) -> None:
    """Three forms systemd accepts: plain, quoted with two assignments, and a continuation."""
    text = (
        "[Service]\n"
        f"Environment=DB_PASSWORD={password}\n"
        f'Environment="API_TOKEN={token}" "GREETING=hello world"\n'
        f"Environment=LOG_LEVEL=info \\\n  EXTRA_SECRET={extra}\n"
    )
    lab.sh(f"mkdir -p {DROP_IN_DIR} && printf '%s' {shlex.quote(text)} > {DROP_IN}")


def _vault_grep(lab: Lab, needle: str) -> str:
    said = lab.fleet.exec(VAULT, ["grep", "-rlF", "--", needle, f"{VAULT_ROOT}/{lab.offsite_dir}"])
    return said.stdout


@pytest.mark.attack(
    "unit Environment= secrets",
    checked="plain, quoted and continued Environment= values: masked in restore.units "
    "--dry-run's diff, never in clear on the vault",
)
def test_unit_environment_values_are_masked_and_leave_only_encrypted(prod13: Lab):
    prod13.configure(offsite=True)
    old = [_canary("pw"), _canary("tok"), _canary("extra")]
    _drop_in(prod13, *old)
    backup = prod13.fab("backup.units")
    assert backup.returncode == 0, backup.stderr
    sent = prod13.fab("backup.replicate")
    assert sent.returncode == 0, sent.stdout + sent.stderr
    new = [_canary("pw"), _canary("tok"), _canary("extra")]
    _drop_in(prod13, *new)
    dry = prod13.fab("restore.units", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "diff:" in dry.stdout, dry.stdout
    assert_no_secret([dry.stdout, dry.stderr, backup.stdout, backup.stderr], old + new)
    for value in old:
        assert not _vault_grep(prod13, value), f"{value[:4]}… is on the vault in clear"


@pytest.mark.attack(
    "off-site manifests",
    checked="the vault's env manifest has no plaintext sha256 and no key names; "
    "backup.verify still checks the off-site copy",
)
def test_offsite_manifest_is_no_guessing_oracle(prod13: Lab):
    prod13.configure(offsite=True)
    backup = prod13.fab("backup.all", "--offsite")
    assert backup.returncode == 0, backup.stderr
    plain_sha = prod13.sha256(ENV)
    keys = [ln.split("=", 1)[0] for ln in prod13.sh(f"cat {ENV}").splitlines() if "=" in ln]
    ref = prod13.store.latest(prod13.box, "env")
    remote = f"{VAULT_ROOT}/{prod13.offsite_dir}/{prod13.box}/env/{ref.id}/manifest.json"
    text = prod13.sh(f"cat {remote}", box=VAULT)
    assert plain_sha not in text, "the env file's plaintext sha256 is off-site"
    found = [k for k in keys if k and not k.startswith("#") and f'"{k}"' in text]
    assert not found, f"key names off-site: {found}"
    manifest = json.loads(text)
    assert all(f["ciphertext_sha256"] for f in manifest["files"])
    verify = prod13.fab("backup.verify")
    assert verify.returncode == 0, verify.stdout + verify.stderr


@pytest.mark.attack(
    "terminal escapes",
    checked="OSC/CSI sequences in .err and .log lines and in a log file's name: no raw ESC "
    "in checklist or backup.logs output",
)
def test_escape_sequences_from_the_app_never_reach_the_terminal(prod13: Lab):
    evil = "\\033]0;pwned\\007 \\033[2J"
    attacker(
        prod13,
        f"printf 'ERROR boom {evil}\\n' >> {LOGS}/api.err; "
        f"printf 'ERROR worker {evil}\\n' >> {LOGS}/worker.log; "
        f"printf 'ERROR named\\n' > \"$(printf '{LOGS}/x\\033[2Jy.log')\"",
    )
    checklist = prod13.fab("checklist")
    assert "pwned" in checklist.stdout + checklist.stderr, checklist.stdout  # it was shown
    logs = prod13.fab("backup.logs", "--full")
    assert logs.returncode == 0, logs.stderr
    for said in (checklist, logs):
        assert ESC not in said.stdout + said.stderr, (said.stdout + said.stderr)[-2000:]
    json_out = prod13.fab("checklist", "--json")
    assert ESC not in json.dumps(json.loads(json_out.stdout), ensure_ascii=False)


@pytest.mark.attack(
    "ad-hoc command output",
    checked="fab -- cat <env file> masks the values of the host's env backup; --raw shows them",
)
def test_adhoc_cat_of_the_env_file_is_masked_unless_raw(prod13: Lab):
    found = env_secrets(prod13)
    assert found
    assert prod13.fab("backup.env").returncode == 0
    masked = prod13.fab("--", "sudo", "cat", ENV)
    assert masked.returncode == 0, masked.stderr
    assert "********" in masked.stdout, masked.stdout
    assert_no_secret([masked.stdout, masked.stderr], found)
    raw = prod13.fab("hosts.exec", "--raw", "--command", f"sudo cat {ENV}")
    assert raw.returncode == 0, raw.stderr
    assert all(value in raw.stdout for value in found), raw.stdout


@pytest.mark.attack(
    "unit Environment= secrets",
    checked="units and logs are stored age-encrypted; restore.units, backup.verify and "
    "backup.replicate still work",
)
def test_units_and_logs_are_stored_encrypted_and_still_restore(prod13: Lab):
    prod13.configure(offsite=True)
    password = _canary("pw")
    _drop_in(prod13, password, _canary("tok"), _canary("extra"))
    backup = prod13.fab("backup.all", "--logs", "--offsite")
    assert backup.returncode == 0, backup.stdout + backup.stderr
    for kind in ("units", "logs"):
        ref = prod13.store.latest(prod13.box, kind)
        assert ref.manifest.files and all(f.name.endswith(".age") for f in ref.manifest.files)
    stored = b"".join(p.read_bytes() for p in prod13.store.root.rglob("*") if p.is_file())
    assert password.encode() not in stored
    prod13.sh(f"printf 'garbage\\n' > {DROP_IN}")
    restore = prod13.fab("restore.units", "--yes")
    assert restore.returncode == 0, restore.stdout + restore.stderr
    assert password in prod13.sh(f"cat {DROP_IN}")
    assert_no_secret([restore.stdout, restore.stderr], [password])
    verify = prod13.fab("backup.verify")
    assert verify.returncode == 0, verify.stdout + verify.stderr
