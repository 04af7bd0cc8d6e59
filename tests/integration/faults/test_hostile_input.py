"""Hostile and odd input through the real `fab` CLI against prod11: handled correctly or
one clear line (never a traceback), and never a command run on anyone's behalf: a canary
file that an injected command would create appears neither here nor in the box.

Covered: --from (and deploy's --to) values; inventory values; env files with quotes, '=',
multi-line values, `export `, CRLF, a BOM, 10 MB, binary bytes; unit files with
non-UTF-8 bytes; log files with odd names and symlinks that lead out of the logs.
"""

from __future__ import annotations

import base64
import io
import os
import secrets
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from fabfile.core.backups.units import DROP_IN_SEPARATOR
from fabfile.core.crypto import open_backup_file
from sandbox.box import box_exec

from . import inject
from .lab import ENV, Lab, prod11_lab  # noqa: F401  (fixture)

pytestmark = pytest.mark.integration

UNIT_DIR = "/etc/systemd/system"
API_UNIT = f"{UNIT_DIR}/zachot-api.service"
LOGS = "/opt/zachot/logs"
REQUIRED = b"REDIS_URL=redis://127.0.0.1:6379/0\nWORKER_CONCURRENCY=2\n"


def canary() -> str:
    return f"/tmp/zachot-injected-{secrets.token_hex(6)}"


def no_canary(lab: Lab, path: str) -> None:
    assert not Path(path).exists(), f"{path} appeared on this machine"
    assert lab.fleet.exec(lab.box, ["test", "-e", path]).returncode != 0, f"{path} in the box"


def one_error_line(run: subprocess.CompletedProcess[str], code: int) -> str:
    said = (run.stdout + run.stderr)[-2000:]  # a 10 KB value must not flood the report
    assert run.returncode == code, said
    assert "Traceback" not in run.stdout + run.stderr, said
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), said
    return lines[0]


def put_file(lab: Lab, path: str, data: bytes, *, owner: str, mode: str) -> None:
    """Write exact bytes into the box (base64 on the way: any byte survives)."""
    script = 'base64 -d > "$1" && chown "$2" "$1" && chmod "$3" "$1"'
    text = base64.b64encode(data).decode()
    said = box_exec(lab.box, ["sh", "-c", script, "sh", path, owner, mode], 300, input=text)
    assert said.returncode == 0, said.stderr


def box_bytes(lab: Lab, path: str) -> bytes:
    said = lab.fleet.exec(lab.box, ["base64", "-w0", path], timeout=300)
    assert said.returncode == 0, said.stderr
    return base64.b64decode(said.stdout)


def box_meta(lab: Lab, path: str) -> str:
    return lab.fleet.exec(lab.box, ["stat", "-c", "%a %U:%G", path]).stdout.strip()


# -- --from and --to ----------------------------------------------------------------------

SELECTORS = {
    "path traversal": lambda c: "../../etc/shadow",
    "a command after ;": lambda c: f"latest;id;touch {c}",
    "$(command)": lambda c: f"$(touch {c})",
    "backticks": lambda c: f"`touch {c}`",
    "empty": lambda c: "",
    "10 KB": lambda c: f"$(touch {c})" + "A" * 10240,
}
FROM_TASKS = (
    ("restore.env", "--yes"),
    ("restore.units", "--yes"),
    ("restore.redis", "--yes"),
    ("restore.server", "--yes"),
)


@pytest.mark.fault("hostile input: --from", checked="exit 2, one line, no injection, box untouched")
@pytest.mark.parametrize("value", list(SELECTORS))
def test_from_values_are_refused_for_every_task(prod11, value):
    assert prod11.fab("backup.all", "--redis", "--yes").returncode == 0
    prod11.fleet.exec(prod11.box, ["redis-cli", "SET", "zachot:fault-marker", "kept"])
    before = (prod11.sha256(ENV), prod11.sha256(API_UNIT), prod11.active())
    path = canary()
    hostile = SELECTORS[value](path)
    for task, *flags in FROM_TASKS:
        line = one_error_line(prod11.fab(task, "--from", hostile, *flags), 2)
        assert "bad backup selector" in line and len(line) < 400, (task, line[:400])
    for task in ("deploy.rollback", "deploy.release"):
        line = one_error_line(prod11.fab(task, "--to", hostile, "--yes"), 2)
        # A 10 KB value is not echoed whole.
        assert "is not a tag, branch or commit name" in line and len(line) < 400, line[:400]
    no_canary(prod11, path)
    assert (prod11.sha256(ENV), prod11.sha256(API_UNIT), prod11.active()) == before
    marker = prod11.fleet.exec(prod11.box, ["redis-cli", "GET", "zachot:fault-marker"]).stdout
    assert marker.strip() == "kept"  # no clean or dump restore of Redis happened


# -- inventory values ---------------------------------------------------------------------

BOMB = """all:
  vars:
    a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]
    b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
    c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
    d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
    e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]
    f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]
  hosts:
    prod11: {}
"""


def layout_value(value: str):
    return lambda data: data["all"]["vars"]["layout"].update(logs_dir=value)


def host_value(**changes):
    return lambda data: data["all"]["hosts"]["prod11"].update(changes)


INVENTORIES = {
    # case: (what changes in the lab's inventory, text the error line names)
    "path with ;": (lambda c: layout_value(f"/opt/zachot/logs;touch {c}"), "layout.logs_dir"),
    "path with $()": (lambda c: layout_value(f"/opt/$(touch {c})/logs"), "layout.logs_dir"),
    "path with backticks": (lambda c: layout_value(f"/opt/`touch {c}`/logs"), "layout.logs_dir"),
    "path with spaces": (lambda c: layout_value("/opt/zachot/my logs"), "layout.logs_dir"),
    "path with unicode": (lambda c: layout_value("/opt/zachot/lögs"), "layout.logs_dir"),
    "path with a newline": (lambda c: layout_value(f"/opt/zachot/logs\ntouch {c}"), "newline"),
    "port 0": (lambda c: host_value(port=0), "port"),
    "port 70000": (lambda c: host_value(port=70000), "port"),
    "a duplicate host": (lambda c: "duplicate", "duplicate key 'prod11'"),
    "a YAML anchor bomb": (lambda c: "bomb", "YAML aliases"),
}


def write_inventory(lab: Lab, change) -> None:
    if change == "bomb":
        lab.inventory.write_text(BOMB)
        return
    data = yaml.safe_load(lab.inventory.read_text())
    if change == "duplicate":
        text = yaml.safe_dump(data, sort_keys=False)
        entry = "\n    prod11:\n"  # the host's own entry under all.hosts (4 spaces in)
        assert entry in text
        lab.inventory.write_text(text.replace(entry, entry + "      port: 22" + entry, 1))
        return
    change(data)
    lab.inventory.write_text(yaml.safe_dump(data, sort_keys=False))


@pytest.mark.fault("hostile input: inventory", checked="exit 2, one line naming file and key")
@pytest.mark.parametrize("case", list(INVENTORIES))
def test_bad_inventory_values_give_one_line_and_exit_2(prod11, case):
    path = canary()
    make, names = INVENTORIES[case]
    write_inventory(prod11, make(path))
    for args in (("backup.all", "--logs"), ("restore.env", "--yes"), ("hosts.list",)):
        line = one_error_line(prod11.fab(*args), 2)
        assert str(prod11.inventory) in line and names in line, (args, line)
    no_canary(prod11, path)
    assert not prod11.store.root.exists() or prod11.store.list() == []


@pytest.mark.fault(
    "hostile input: inventory", checked="a store path full of shell syntax just works"
)
def test_a_store_path_full_of_shell_syntax_just_works(prod11):
    path = canary()
    odd = prod11.tmp / f"st; $(touch {path}) `touch {path}` 'q' \"dq\" ü"
    prod11.configure(hosts={prod11.box: {"store": {"path": str(odd)}}})
    for args in (("backup.all", "--logs"), ("backup.list",), ("backup.verify",)):
        run = prod11.fab(*args)
        assert run.returncode == 0 and "Traceback" not in run.stderr, run.stdout + run.stderr
    prod11.sh(f"printf 'EXTRA=1\\n' >> {ENV}")
    restored = prod11.fab("restore.env", "--yes")
    assert restored.returncode == 0, restored.stdout + restored.stderr
    no_canary(prod11, path)
    assert [p.name for p in odd.iterdir()] == [prod11.box]
    assert b"EXTRA=1" not in box_bytes(prod11, ENV)


# -- env files ----------------------------------------------------------------------------


@dataclass(frozen=True)
class EnvFile:
    data: bytes
    clean: bool = True  # backup.verify passes it (else restore needs --force)
    loads: bool = True  # systemd's EnvironmentFile= takes it (else the services cannot start)


def env_variants(secret: str) -> dict[str, EnvFile]:
    s = secret.encode()
    pem = b"-----BEGIN KEY-----\n" + s + b"\n-----END KEY-----"
    return {
        "quotes": EnvFile(REQUIRED + b'Q1="say \\"' + s + b'\\" twice"\nQ2=\'' + s + b"'\n"),
        "= inside values": EnvFile(REQUIRED + b"DSN=pg://u:" + s + b"@h/db?a=b==c\n"),
        "a quoted multi-line value": EnvFile(REQUIRED + b'CERT="line 1\n' + s + b'\nline 3"\n'),
        # python-dotenv cannot parse the last line; the body must not become a "key".
        "an unquoted multi-line value": EnvFile(
            REQUIRED + b"PRIVATE_KEY=" + pem + b"\n", clean=False
        ),
        "export prefix": EnvFile(REQUIRED + b"export TOKEN=" + s + b"\n"),
        "CRLF line ends": EnvFile((REQUIRED + b"TOKEN=" + s + b"\n").replace(b"\n", b"\r\n")),
        "a UTF-8 BOM": EnvFile(b"\xef\xbb\xbf" + REQUIRED + b"TOKEN=" + s + b"\n"),
        "10 MB": EnvFile(REQUIRED + b"TOKEN=" + s + b"\n" + (b"# " + b"p" * 97 + b"\n") * 105_000),
        "binary bytes in a comment": EnvFile(
            REQUIRED + b"TOKEN=" + s + b"\n# \xff\xfe\x01\x9c latin-1 caf\xe9\n"
        ),
        # systemd refuses an env file with these: verify says so before a restore.
        "binary bytes in a value": EnvFile(
            REQUIRED + b"BLOB=\xc3\x28\xa0\xa1" + s + b"\n", clean=False, loads=False
        ),
        "a NUL byte": EnvFile(REQUIRED + b"TOKEN=" + s + b"\n# \x00\n", clean=False, loads=False),
    }


def serves(lab: Lab) -> bool:
    """Every service active and a job processed (enqueued without sourcing the env file,
    which a shell cannot always do: the app's defaults reach the same Redis)."""
    job = f"hostile-{secrets.token_hex(4)}"
    enqueue = (
        "cd /opt/zachot/repo && PYTHONDONTWRITEBYTECODE=1 runuser -u zachot -- "
        "/opt/zachot/envs/prod/bin/python -c "
        f"\"from zachot.tasks import record_job; record_job.send('{job}')\""
    )
    if lab.active() != ["active"] * 3 or lab.fleet.sh(lab.box, enqueue).returncode != 0:
        return False
    check = ["redis-cli", "SISMEMBER", "zachot:done", job]
    try:
        inject.wait_until(lambda: lab.fleet.exec(lab.box, check).stdout.strip() == "1", job)
    except AssertionError:
        return False
    return True


@pytest.mark.fault(
    "hostile input: env files", checked="backup.env + restore.env round-trip byte for byte, no leak"
)
@pytest.mark.parametrize("variant", list(env_variants("x")))
def test_env_files_round_trip_byte_for_byte_and_nothing_leaks(prod11, variant):
    secret = f"hostile-{secrets.token_hex(8)}"
    env = env_variants(secret)[variant]
    put_file(prod11, ENV, env.data, owner="zachot:zachot", mode="600")
    said = [prod11.fab("backup.env")]
    assert said[0].returncode == 0, said[0].stdout + said[0].stderr
    verify = prod11.fab("backup.verify", "--kind", "env")
    said.append(verify)
    put_file(prod11, ENV, REQUIRED, owner="root:root", mode="644")  # damaged and loose
    if env.clean:
        assert verify.returncode == 0, verify.stdout + verify.stderr
        force: tuple[str, ...] = ()
    else:
        # What is wrong is named by line number, never by its text; restore refuses it.
        assert (
            verify.returncode == 1 and f"{prod11.box}/env: env: zachot.env: line " in verify.stderr
        )
        refused = prod11.fab("restore.env", "--yes")
        said.append(refused)
        assert "refusing" in one_error_line(refused, 1)
        assert box_bytes(prod11, ENV) == REQUIRED
        force = ("--force",)
    said.append(prod11.fab("restore.env", "--dry-run", *force))
    restore = prod11.fab("restore.env", "--yes", *force)
    said += [restore, prod11.fab("backup.list", "--json"), prod11.fab("backup.verify", "--json")]
    assert box_bytes(prod11, ENV) == env.data
    assert box_meta(prod11, ENV) == "600 zachot:zachot"
    if env.loads:
        assert restore.returncode == 0, restore.stdout + restore.stderr
        assert serves(prod11)
    else:
        # The bytes went back as they were, and the health gate says what then failed.
        line = restore.stderr.strip().splitlines()[-1]
        assert restore.returncode == 1 and "step 4 'start Redis and worker and API" in line
    for run in said:
        assert secret not in run.stdout + run.stderr
        assert "Traceback" not in run.stdout + run.stderr
    for stored in prod11.store.root.rglob("*"):
        if stored.is_file():
            assert secret.encode() not in stored.read_bytes(), stored


# -- unit files ---------------------------------------------------------------------------


@pytest.mark.fault("hostile input: unit files", checked="non-UTF-8 bytes round-trip; verify copes")
def test_unit_files_with_non_utf8_bytes_round_trip(prod11):
    unit = box_bytes(prod11, API_UNIT)
    latin1 = unit.replace(b"[Service]", b"# Servicio de la API, versi\xf3n \xe9t\xe9\n[Service]")
    drop_in_dir = f"{API_UNIT}.d"
    drop_in = b"# r\xe9glages locaux \xff\xfe\n[Service]\nNice=5\n"
    prod11.sh(f"mkdir -p {drop_in_dir}")
    put_file(prod11, API_UNIT, latin1, owner="root:root", mode="644")
    put_file(prod11, f"{drop_in_dir}/local.conf", drop_in, owner="root:root", mode="644")
    prod11.sh("systemctl daemon-reload && systemctl restart zachot-api")
    assert prod11.fab("backup.units").returncode == 0
    ref = prod11.store.latest(prod11.box, "units")
    host = prod11.host()  # units are stored age-encrypted: read them back decrypted
    assert open_backup_file(prod11.store, ref, "zachot-api.service", host) == latin1
    drop_in_name = f"zachot-api.service.d{DROP_IN_SEPARATOR}local.conf"
    assert open_backup_file(prod11.store, ref, drop_in_name, host) == drop_in
    verify = prod11.fab("backup.verify", "--kind", "units")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    prod11.sh(f"printf 'garbage\\n' > {API_UNIT} && rm {drop_in_dir}/local.conf")
    dry = prod11.fab("restore.units", "--dry-run")
    assert dry.returncode == 0 and "Traceback" not in dry.stderr, dry.stdout + dry.stderr
    restore = prod11.fab("restore.units", "--yes")
    assert restore.returncode == 0, restore.stdout + restore.stderr
    assert box_bytes(prod11, API_UNIT) == latin1
    assert box_bytes(prod11, f"{drop_in_dir}/local.conf") == drop_in
    assert serves(prod11)


# -- log files ----------------------------------------------------------------------------

ODD_NAMES = (
    b"with spaces.log",
    b"a new\nline.log",
    b"caf\xe9 latin-1.log",
    b"--checkpoint-action=exec=touch INJECTED",
    b"-v",
    b"$(touch INJECTED).log",
)


@pytest.mark.fault(
    "hostile input: log files", checked="odd names archived and listed; symlinks not followed"
)
def test_log_files_with_odd_names_and_symlinks_out(prod11):
    outside = f"secret-outside-{secrets.token_hex(6)}"
    prod11.sh(
        f"mkdir -p /root/outdir && echo {outside} > /root/outside.txt && "
        f"echo {outside} > /root/outdir/inner.log && "
        f"ln -s /root/outside.txt {LOGS}/link.log && ln -s /root/outdir {LOGS}/linkdir"
    )
    for i, name in enumerate(ODD_NAMES):
        # fsdecode: the exact bytes of the name reach the box (a Latin-1 é stays one byte).
        put_file(prod11, f"{LOGS}/{os.fsdecode(name)}", b"line %d\n" % i, owner="zachot:zachot",
                 mode="644")  # fmt: skip
    run = prod11.fab("backup.logs")
    assert run.returncode == 0, run.stdout + run.stderr
    ref = prod11.store.latest(prod11.box, "logs")
    # The archive is stored age-encrypted: decrypt it beside the test's files.
    name = ref.manifest.meta["archive"]
    archive = prod11.tmp / name.removesuffix(".age")
    archive.write_bytes(open_backup_file(prod11.store, ref, name, prod11.host()))
    on_box = set(box_listing(prod11))
    members = archive_members(archive)
    assert set(members) == on_box and set(ODD_NAMES) <= on_box
    assert all(outside.encode() not in data for data in members.values())
    assert not {b"link.log", b"linkdir", b"linkdir/inner.log"} & set(members)
    indexed = {e["path"].encode("utf-8", "surrogateescape") for e in ref.manifest.meta["index"]}
    assert indexed == on_box
    verify = prod11.fab("backup.verify", "--kind", "logs")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert (
        f"{len(on_box)} files in 1 archives listed"
        in prod11.fab("backup.verify", "--kind", "logs", "--json").stdout
    )
    injected = prod11.fleet.exec(prod11.box, ["sh", "-c", "find / -xdev -name INJECTED | grep ."])
    assert injected.returncode == 1, injected.stdout  # tar took no name for an option


def box_listing(lab: Lab) -> list[bytes]:
    """Regular files under the logs dir, exact bytes, as the box itself sees them."""
    script = f"cd {LOGS} && find . -type f -print0 | base64 -w0"
    raw = base64.b64decode(lab.fleet.exec(lab.box, ["sh", "-c", script]).stdout)
    return [name.removeprefix(b"./") for name in raw.split(b"\0") if name]


def archive_members(path: Path) -> dict[bytes, bytes]:
    data = path.read_bytes()
    if path.name.endswith(".zst"):
        data = subprocess.run(["zstd", "-dc"], input=data, capture_output=True, check=True).stdout
    members = {}
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tar:
        for member in tar:
            content = tar.extractfile(member).read() if member.isfile() else b""
            members[member.name.encode("utf-8", "surrogateescape")] = content
    return members
