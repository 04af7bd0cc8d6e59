"""Build the stand-in app's git history (three releases and a bad commit) as a served repo.

Commits use fixed dates and author, so the same app source always gives the same commit ids.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from sandbox.config import SANDBOX_PKG, Paths

APP_SRC = SANDBOX_PKG / "app"
RELEASES = (
    ("v1.0.0", "First release: API health check and job worker."),
    ("v1.1.0", "Add GET /jobs/<id> to see whether a job is done."),
    ("v1.2.0", "Report the deployed release in /health."),
)
DEPLOYED = "v1.2.0"  # what prod runs; `bad` (== main) sits on top of it for rollback tests
BAD_TAG = "bad"
# The bad commit reads a setting no env file has, so the API dies at import.
BAD_LINE = '\nFEATURE_FLAGS = os.environ["ZACHOT_FEATURE_FLAGS"]  # new in this commit\n'


def app_files() -> list[Path]:
    return sorted(p for p in APP_SRC.rglob("*") if p.is_file() and "__pycache__" not in p.parts)


def source_hash() -> str:
    h = hashlib.sha256()
    for p in app_files():
        h.update(str(p.relative_to(APP_SRC)).encode() + b"\0" + p.read_bytes() + b"\0")
    h.update(repr((RELEASES, BAD_LINE)).encode())
    return h.hexdigest()[:16]


def _git(cwd: Path, *args: str, when: int = 0) -> str:
    stamp = f"{1735732800 + when * 86400} +0000"  # 2025-01-01 plus a day per commit
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "zachot dev",
        "GIT_AUTHOR_EMAIL": "dev@zachot.invalid",
        "GIT_COMMITTER_NAME": "zachot dev",
        "GIT_COMMITTER_EMAIL": "dev@zachot.invalid",
        "GIT_AUTHOR_DATE": stamp,
        "GIT_COMMITTER_DATE": stamp,
        "GIT_CONFIG_NOSYSTEM": "1",
        "HOME": str(cwd),  # ignore the operator's ~/.gitconfig
    }
    out = subprocess.run(
        ["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True
    )
    return out.stdout.strip()


def _commit_release(work: Path, tag: str, note: str, day: int, changelog: list[str]) -> None:
    version = tag.removeprefix("v")
    init = work / "zachot" / "__init__.py"
    init.write_text(init.read_text().replace('"1.2.0"', f'"{version}"'))
    changelog.insert(0, f"## {version}\n\n- {note}\n")
    (work / "CHANGELOG.md").write_text("# Changelog\n\n" + "\n".join(changelog))
    _git(work, "add", "-A", when=day)
    _git(work, "commit", "-q", "-m", f"Release {version}", when=day)
    _git(work, "tag", "-a", tag, "-m", f"zachot {version}", when=day)
    init.write_text(init.read_text().replace(f'"{version}"', '"1.2.0"'))


def ensure_repo(paths: Paths) -> Path:
    """Build <state>/serve/zachot.git (bare, dumb-HTTP ready) unless the source is unchanged."""
    stamp = paths.repo / "sandbox-source-hash"
    if stamp.exists() and stamp.read_text().strip() == source_hash():
        return paths.repo
    with tempfile.TemporaryDirectory(prefix="zt-app-") as tmp:
        work = Path(tmp) / "zachot"
        shutil.copytree(APP_SRC, work, ignore=shutil.ignore_patterns("__pycache__"))
        _git(work, "init", "-q", "-b", "main")
        changelog: list[str] = []
        for day, (tag, note) in enumerate(RELEASES):
            _commit_release(work, tag, note, day, changelog)
        settings = work / "zachot" / "settings.py"
        settings.write_text(settings.read_text() + BAD_LINE)
        _git(work, "commit", "-q", "-am", "Read feature flags from the environment", when=9)
        _git(work, "tag", BAD_TAG, when=9)
        if paths.repo.exists():
            shutil.rmtree(paths.repo)
        paths.repo.parent.mkdir(parents=True, exist_ok=True)
        _git(Path(tmp), "clone", "-q", "--bare", str(work), str(paths.repo))
    # Served over plain HTTP (the "dumb" protocol), which needs these index files.
    _git(paths.repo, "update-server-info")
    stamp.write_text(source_hash() + "\n")
    return paths.repo


def repo_commits(paths: Paths) -> str:
    """Tag -> commit map; part of the prod layer's cache key."""
    return _git(paths.repo, "show-ref", "--tags")
