"""The code item: which ref is deployed, and does it match the last recorded deploy?

The record is the host's deploy history (/var/lib/zachot-ops/revisions.log, written by the
deploy tasks); without one, the ref the newest local backup recorded as deployed.
"""

from __future__ import annotations

from ..deploys.history import History
from ..model import Host
from .model import FAIL, NA, OK, Fix, HostFacts, Row


def _short(commit: str | None, describe: str | None) -> str:
    if not commit:
        return describe or "?"
    return f"{describe} ({commit[:12]})" if describe and describe != commit else commit[:12]


def _backup_said(facts: HostFacts) -> tuple[str | None, str]:
    """The commit the newest backup recorded as deployed, and how to say it."""
    newest = max(
        (b for b in facts.backups.values() if b.deployed and b.deployed.get("commit")),
        key=lambda b: b.created,
        default=None,
    )
    if newest is None or newest.deployed is None:
        return None, "no backup records a deployed ref"
    commit = newest.deployed.get("commit")
    said = _short(commit, newest.deployed.get("describe"))
    return commit, f"newest backup ({newest.kind} {newest.id}) recorded {said}"


def rollback(host: Host, to: str | None = None) -> Fix:
    where = f" --to {to}" if to else ""
    return Fix(f"fab -H {host.name} deploy.rollback{where}", f"deploy.rollback:{to or ''}")


def _against_history(host: Host, head: str, history: History, said: str, backup: str) -> Row | None:
    item = f"code in {host.layout.repo_dir}"
    flight = history.in_flight(head)
    if flight:
        why = f"{said}; the last deploy failed and is still checked out: {flight.describe()}"
        why += f"; {backup}"
        return Row("code", item, FAIL, why, rollback(host))
    bad = history.bad().get(head)
    if bad:
        why = f"{said}; marked bad by: {bad.describe()}; {backup}"
        return Row("code", item, FAIL, why, rollback(host))
    last = next((e for e in reversed(history.entries) if e.result == "ok"), None)
    if last is None:
        return None
    said = f"{said}; last recorded deploy: {last.describe()}; {backup}"
    if last.commit == head:
        return Row("code", item, OK, said)
    return Row("code", item, FAIL, said, rollback(host, last.commit[:12]))


def row(host: Host, facts: HostFacts) -> Row:
    code, item = facts.code, f"code in {host.layout.repo_dir}"
    if not code.commit:
        return Row("code", item, FAIL, "no git checkout", Fix(f"fab -H {host.name} restore.server"))
    said = f"deployed {_short(code.commit, code.describe)}"
    said += f" ({code.dirty} tracked file(s) changed)" if code.dirty else ""
    backup_commit, backup_said = _backup_said(facts)
    if code.history is not None:
        judged = _against_history(host, code.commit, code.history, said, backup_said)
        if judged is not None:
            return judged
    said += f"; no deploy recorded on the host; {backup_said}"
    if backup_commit and code.commit.startswith(backup_commit):
        return Row("code", item, OK, said)
    return Row("code", item, NA, said)
