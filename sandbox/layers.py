"""Role layers (prod, new-box, vault): the base image plus provisioning, built once per recipe.

A layer is the upper dir of an overlay over the base image after its script ran. Boxes boot
with it as a read-only lower layer, so `reset` only drops the box's own upper dir.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from pathlib import Path

from sandbox import gitrepo, nspawn
from sandbox.config import SANDBOX_PKG, BoxSpec, Paths
from sandbox.mounts import mount_overlay, unmount

SCRIPTS = SANDBOX_PKG / "provision"
ROLE_SCRIPTS = {
    "prod": ["ops.sh", "prod.sh"],
    "new-box": ["ops.sh", "new-box.sh"],
    "vault": ["vault.sh"],
}


def role_script(role: str) -> str:
    parts = ["#!/bin/bash\nset -euo pipefail\n"]
    parts += [(SCRIPTS / name).read_text() for name in ROLE_SCRIPTS[role]]
    return "\n".join(parts)


def layer_env(spec: BoxSpec, repo_url: str, wheels_url: str) -> dict[str, str]:
    return {"REPO_URL": repo_url, "WHEELS_URL": wheels_url, "RELEASE": gitrepo.DEPLOYED}


def layer_key(base: Path, role: str, env: dict[str, str], paths: Paths, wheels: list[str]) -> str:
    h = hashlib.sha256()
    extra = [gitrepo.repo_commits(paths), *wheels] if role == "prod" else []
    for part in (base.name, role_script(role), repr(sorted(env.items())), *extra):
        h.update(part.encode() + b"\0")
    return h.hexdigest()[:16]


def ensure_layer(
    paths: Paths, base: Path, spec: BoxSpec, env: dict[str, str], wheels: list[str], log=print
) -> Path:
    """Return the role's layer dir, building it in the box's netns if missing."""
    final = paths.images / f"layer-{spec.role}-{layer_key(base, spec.role, env, paths, wheels)}"
    done = final.with_name(final.name + ".complete")
    if done.exists():
        return final
    log(f"provisioning layer {final.name}")
    build = final.with_name(final.name + ".build")
    if build.exists():
        unmount(build / "root")
        shutil.rmtree(build)
    mount_overlay([base], build / "upper", build / "work", build / "root")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            script = Path(tmp) / f"provision-{spec.role}.sh"
            script.write_text(role_script(spec.role))
            nspawn.run_in_root(build / "root", f"{spec.machine}-build", spec.netns, script, env)
    finally:
        unmount(build / "root")
    if final.exists():
        shutil.rmtree(final)
    (build / "upper").rename(final)
    shutil.rmtree(build)
    done.write_text(spec.role + "\n")
    return final
