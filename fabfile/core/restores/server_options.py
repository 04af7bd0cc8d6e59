"""restore.server's inputs: where pip finds packages, and which commit to deploy."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from .. import output
from ..errors import UsageError
from ..manifest import short_repr
from ..model import Host
from ..store import BackupRef

_REF_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/+-]{0,199}", re.ASCII)
_COMMIT_RE = re.compile(r"[0-9a-f]{7,64}", re.ASCII)


@dataclass(frozen=True)
class PipSource:
    """Where pip finds packages: PyPI (default), a pushed wheelhouse, or a URL the box reaches."""

    wheelhouse: Path | None = None
    find_links: str | None = None
    index_url: str | None = None

    @classmethod
    def parse(
        cls, wheelhouse: str | None, find_links: str | None, index_url: str | None
    ) -> PipSource:
        flags = {"--wheelhouse": wheelhouse, "--find-links": find_links, "--index-url": index_url}
        given = [flag for flag, value in flags.items() if value]
        if len(given) > 1:
            raise UsageError(f"give at most one of {', '.join(given)}")
        for flag, url in (("--find-links", find_links), ("--index-url", index_url)):
            if url and urlsplit(url).scheme not in ("http", "https"):
                raise UsageError(f"{flag} {url!r} is not an http(s) URL")
        if not wheelhouse:
            return cls(find_links=find_links, index_url=index_url)
        path = Path(wheelhouse).expanduser()
        if not path.is_dir():
            raise UsageError(f"--wheelhouse {wheelhouse}: no such directory")
        if not any(path.glob("*.whl")):
            raise UsageError(
                f"--wheelhouse {wheelhouse} holds no *.whl; build one with: pip download "
                "--only-binary=:all: --python-version <box's python3> -d DIR -r requirements.txt"
            )
        return cls(wheelhouse=path)

    @classmethod
    def for_host(
        cls, host: Host, wheelhouse: str | None, find_links: str | None, index_url: str | None
    ) -> PipSource:
        """The flags when any is given, else the host's inventory restore.* defaults."""
        if not (wheelhouse or find_links or index_url):
            said = host.restore
            wheelhouse = str(said.wheelhouse) if said.wheelhouse else None
            find_links, index_url = said.find_links, said.index_url
        return cls.parse(wheelhouse, find_links, index_url)

    def describe(self) -> str:
        if self.wheelhouse:
            return f"wheels pushed from {self.wheelhouse} (no index)"
        if self.find_links:
            return f"wheels from {self.find_links} (no index)"
        return f"index {self.index_url}" if self.index_url else "PyPI (the box needs internet)"

    def pip_args(self, remote_wheelhouse: str) -> list[str]:
        if self.wheelhouse:
            return ["--no-index", "--find-links", remote_wheelhouse]
        if self.find_links:
            return ["--no-index", "--find-links", self.find_links, *_trusted(self.find_links)]
        if self.index_url:
            return ["--index-url", self.index_url, *_trusted(self.index_url)]
        return []


def _trusted(url: str) -> list[str]:
    # pip ignores plain-http sources unless their host is trusted.
    parts = urlsplit(url)
    return ["--trusted-host", parts.hostname or ""] if parts.scheme == "http" else []


@dataclass(frozen=True)
class Options:
    selector: str = "latest"
    ref: str | None = None
    pip: PipSource = PipSource()
    force: bool = False
    dry_run: bool = False


@dataclass(frozen=True)
class Wanted:
    ref: str  # a commit or tag to check out
    why: str  # where it came from, for the plan


def check_ref(ref: str) -> str:
    if not _REF_RE.fullmatch(ref) or ".." in ref:
        raise UsageError(f"--ref {short_repr(ref)} is not a tag, branch or commit name")
    return ref


def wanted_ref(ref: str | None, backups: Sequence[BackupRef]) -> Wanted:
    """--ref when given, else the commit the newest of the backups recorded as deployed."""
    if ref is not None:
        return Wanted(check_ref(ref), "given with --ref")
    recorded = [
        (b, b.manifest.meta.get("deployed") or {})
        for b in sorted(backups, key=lambda b: b.created, reverse=True)
    ]
    recorded = [(b, d) for b, d in recorded if isinstance(d, dict) and d.get("commit")]
    if not recorded:
        names = ", ".join(f"{b.kind} {b.id}" for b in backups)
        raise UsageError(
            f"the backups of {backups[0].host} ({names}) record no deployed commit; "
            "name the code to deploy with --ref <tag|commit>"
        )
    newest, deployed = recorded[0]
    commit = str(deployed["commit"])
    if not _COMMIT_RE.fullmatch(commit):
        raise UsageError(
            f"{newest.kind} backup {newest.id} records {commit[:40]!r} as the deployed commit, "
            "which is not a commit id; name the code to deploy with --ref <tag|commit>"
        )
    if len({str(d["commit"]) for _, d in recorded}) > 1:
        output.warn(f"the backups record different commits; using {newest.kind} {newest.id}'s")
    tag = f" ({deployed['describe']})" if deployed.get("describe") else ""
    return Wanted(commit, f"deployed{tag} at {newest.host}'s {newest.kind} backup {newest.id}")
