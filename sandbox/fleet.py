"""Bring the whole fleet up, reset a box, take everything down."""

from __future__ import annotations

import functools
import json
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from sandbox import box, gitrepo, keys, layers, load, network, preflight, serve, wan, wheelhouse
from sandbox import s3 as s3server
from sandbox.config import API_PORT, INVENTORY, SERVE_PORT, BoxSpec, Paths, fleet_specs
from sandbox.image import ensure_base_image
from sandbox.inventory import write_inventory
from sandbox.mounts import is_mounted, wipe
from sandbox.state import fleet_lock, load_state, recorded_specs, save_state

Log = Callable[[str], None]
PROD_UNITS = ("zachot-api", "zachot-worker", "redis-server")


def serve_urls(specs: list[BoxSpec]) -> tuple[str, str]:
    """Every box reaches the first box's host-side address (route to the sandbox /16)."""
    base = f"http://{specs[0].host_ip}:{SERVE_PORT}"
    return f"{base}/zachot.git", f"{base}/wheels/"


def _prepare(paths: Paths, specs: list[BoxSpec], log: Log) -> dict[str, list[Path]]:
    """Image, repo, wheels, networks, server and layers: everything a box boots from."""
    keys.ensure_operator_key(paths)
    keys.write_known_hosts(paths, specs)
    base = ensure_base_image(paths, log)
    gitrepo.ensure_repo(paths)
    wheels = wheelhouse.ensure_wheelhouse(paths)
    for spec in specs:
        if not network.network_ok(spec):
            box.stop_box(paths, spec)  # a box without its network is useless: reboot it
            network.create_network(spec)
    serve.start_server(paths, SERVE_PORT, [s.host_ip for s in specs])
    repo_url, wheels_url = serve_urls(specs)
    lowers: dict[str, list[Path]] = {}
    for spec in specs:
        if spec.role not in lowers:
            env = layers.layer_env(spec, repo_url, wheels_url)
            lowers[spec.role] = [layers.ensure_layer(paths, base, spec, env, wheels, log), base]
    return {s.name: lowers[s.role] for s in specs}


def up(extra_prod: int = 0, paths: Paths | None = None, log: Log = print) -> Path:
    """Idempotent: keeps boxes that run from the current layers, (re)boots the rest."""
    paths = paths or Paths()
    specs = fleet_specs(extra_prod)
    if blockers := preflight.problems():
        raise RuntimeError("sandbox cannot run here: " + "; ".join(blockers))
    with fleet_lock(paths):
        # Boxes a previous run made that this request drops (fewer extras): remove them.
        for old in recorded_specs(paths):
            if old.name not in {s.name for s in specs}:
                _remove_box(paths, old)
        save_state(paths, extra_prod)  # before booting, so a crash mid-way is still cleaned up
        lowers = _prepare(paths, specs, log)
        started = []
        for spec in specs:
            want = ":".join(map(str, lowers[spec.name]))
            if box.is_running(paths, spec) and box.running_lowers(paths, spec) == want:
                continue
            log(f"booting {spec.name} ({spec.address})")
            box.start_box(paths, spec, lowers[spec.name])
            started.append(spec)
        for spec in specs:
            # A box that was already running may be mid-drill (services stopped on purpose):
            # only check it is reachable; freshly booted boxes must be fully ready.
            wait_ready(paths, spec, services=spec in started)
        _start_load(paths, specs)
        # The S3 server for trying the S3 back end by hand (sandbox/s3.py); no host uses it
        # by default, so every task's off-site copy stays on the vault unless a test says so.
        s3server.restart(paths.root / "s3")
        write_inventory(paths, specs, serve_urls(specs)[0])
        _drop_unused_images(paths, lowers)
    return INVENTORY


def _drop_unused_images(paths: Paths, lowers: dict[str, list[Path]]) -> None:
    """Old layers and base images (the recipe or the app changed) are no longer booted."""
    keep = {p.name for chain in lowers.values() for p in chain}
    for entry in paths.images.iterdir():
        name = entry.name.removesuffix(".complete")
        if name not in keep:
            if entry.is_dir() and not is_mounted(entry / "root"):
                shutil.rmtree(entry)
            elif entry.is_file():
                entry.unlink()


def wait_ready(paths: Paths, spec: BoxSpec, timeout: float = 120, services: bool = True) -> None:
    """Booted, SSH answers with the recorded host key, and (if asked) prod's services are up."""
    box.wait_booted(paths, spec, timeout)
    end = time.monotonic() + timeout
    while not ssh_ok(paths, spec):
        if time.monotonic() > end:
            raise TimeoutError(f"{spec.name}: ssh as {box.LOGIN_USER[spec.role]} does not work")
        time.sleep(0.5)
    if services and spec.role == "prod":
        while not (services_active(paths, spec) and health(spec) is not None):
            if time.monotonic() > end:
                raise TimeoutError(f"{spec.name}: zachot services did not come up")
            time.sleep(0.5)


def ssh_base(paths: Paths, port: int = 22) -> list[str]:
    return [
        "-i",
        str(paths.key),
        "-o",
        f"UserKnownHostsFile={paths.known_hosts}",
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        "BatchMode=yes",
        "-o",
        "ConnectTimeout=5",
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        f"Port={port}",
        "-F",
        "/dev/null",
    ]


def ssh_ok(paths: Paths, spec: BoxSpec) -> bool:
    """Log in the way operators will; vault only speaks SFTP."""
    user = box.LOGIN_USER[spec.role]
    if spec.role == "vault":
        argv = ["sftp", *ssh_base(paths), "-b", "-", f"{user}@{spec.address}"]
        stdin = "pwd\n"
    else:
        argv = ["ssh", *ssh_base(paths), f"{user}@{spec.address}", "sudo -n true"]
        stdin = ""
    r = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=30)
    return r.returncode == 0


def services_active(paths: Paths, spec: BoxSpec, units: tuple[str, ...] = PROD_UNITS) -> bool:
    r = box.exec_in(paths, spec, ["systemctl", "is-active", *units], timeout=15)
    return r.returncode == 0


def health(spec: BoxSpec, timeout: float = 3) -> dict | None:
    """GET /health from the operator side; None unless it answers 200."""
    try:
        with urllib.request.urlopen(
            f"http://{spec.address}:{API_PORT}/health", timeout=timeout
        ) as r:
            return json.loads(r.read()) if r.status == 200 else None
    except (OSError, ValueError):
        return None


def reset(name: str, paths: Paths | None = None, log: Log = print) -> None:
    """Back to the box's initial state: drop its upper layer and boot again (no debootstrap)."""
    paths = paths or Paths()
    with fleet_lock(paths):
        specs = recorded_specs(paths)
        spec = next((s for s in specs if s.name == name), None)
        if spec is None:
            raise KeyError(f"no box {name!r}; boxes: {', '.join(s.name for s in specs)}")
        lowers = _prepare(paths, specs, log)[name]
        box.stop_box(paths, spec, graceful=False)  # its state is thrown away anyway
        box.start_box(paths, spec, lowers)
        wait_ready(paths, spec)
        _start_load(paths, [spec])


def _start_load(paths: Paths, specs: list[BoxSpec]) -> None:
    """A live prod (sandbox/load.py) on every prod box, unless ZACHOT_SANDBOX_LOAD=0."""
    if load.wanted():
        for spec in specs:
            if spec.role == "prod":
                load.start(functools.partial(box.exec_in, paths, spec))


def _remove_box(paths: Paths, spec: BoxSpec) -> None:
    box.stop_box(paths, spec)
    network.remove_network(spec)
    d = paths.box_dir(spec.name)
    wipe(d / "upper", d / "work")
    if d.exists():
        for leftover in ("root", "nspawn.pid", "lowers", "nspawn.lock"):
            p = d / leftover
            if p.is_dir():
                p.rmdir()
            else:
                p.unlink(missing_ok=True)


def down(paths: Paths | None = None, log: Log = print) -> None:
    """Stop and remove every box, netns, veth, mount and process the sandbox made.
    Cached images, layers and keys stay, so the next up is quick."""
    paths = paths or Paths()
    with fleet_lock(paths):
        specs = recorded_specs(paths)
        for spec in specs:  # SIGTERM all first: they power off in parallel
            pid = box.nspawn_pid(paths, spec)
            if pid is not None:
                box.procs.kill(pid)
        for spec in specs:
            log(f"removing {spec.name}")
            _remove_box(paths, spec)
        serve.stop_server(paths)
        wan.stop(paths)  # WAN mode's proxy, if on (sandbox/wan.py)
        s3server.stop(paths.root / "s3")
        box.remove_nspawn_run_dirs()
        paths.fleet_file.unlink(missing_ok=True)
        INVENTORY.unlink(missing_ok=True)


def is_up(paths: Paths | None = None) -> bool:
    paths = paths or Paths()
    if not load_state(paths):
        return False
    return all(box.is_running(paths, s) for s in recorded_specs(paths))
