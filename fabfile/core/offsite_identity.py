"""backup.verify's check of the age identity against the off-site copy (it warns): without
the identity that copy is useless, and that must not be found out on the day the laptop is
lost too.

Per host with an off-site copy and age recipients: the identity file is set, readable,
and decrypts a file of the newest off-site backup that holds one (its smallest file: the
index, one manifest and one file read per host, however many backups are stored), in the
session, and from the index, offsite.newest_offsite already has.
"""

from __future__ import annotations

import io
import posixpath

from . import crypto
from .errors import ZachotError
from .manifest import MANIFEST_NAME, Manifest, id_sort_key
from .model import Host
from .offsite import MAX_REMOTE_MANIFEST, Index, backup_dir
from .offsite_backend import Backend

MAX_TRIED = 5  # newest backups looked at for a file of their own (unchanged ones hold none)
MAX_FILE = 16 << 20  # the identity is proven on a small file, not a large dump
KEEP = "keep a copy of it off this machine (see the README: lost laptop)"


def identity_problem(backend: Backend, host: Host, index: Index) -> str | None:
    """Why this machine's identity cannot read `host`'s off-site copy (`index`: what is
    there, as read_index gave it), or None (also when nothing there is encrypted yet)."""
    if not host.backup.age_recipients:
        return None
    try:
        crypto.load_identities(host.backup.age_identity, what=f"{host.name}'s off-site copy")
    except ZachotError as exc:
        return f"{exc.message}; {KEEP}"
    return _newest_decrypts(backend, host, index)


def _newest_decrypts(backend: Backend, host: Host, index: Index) -> str | None:
    """None if the identity opens a file of the newest off-site backup, else why not."""
    what = f"{host.name}: the age identity {host.backup.age_identity}"
    try:
        newest = sorted(index.backups, key=lambda key: id_sort_key(key[1]), reverse=True)
        for kind, backup_id in newest[:MAX_TRIED]:
            directory = backup_dir(host, kind, backup_id)
            path = posixpath.join(directory, MANIFEST_NAME)
            text = backend.read_small(path, MAX_REMOTE_MANIFEST).decode("utf-8", "replace")
            records = [
                r
                for r in Manifest.from_json(text, where=path).files
                if r.stored_in is None and crypto.is_encrypted(r) and r.size <= MAX_FILE
            ]
            if not records:
                continue
            record = min(records, key=lambda r: r.size)
            data = io.BytesIO()
            backend.get(posixpath.join(directory, record.name), data, record.size, "identity")
            crypto.decrypt(data.getvalue(), host.backup.age_identity, what=f"{kind}/{backup_id}")
            return None
    except ZachotError as exc:
        return f"{what} does not read the off-site copy on {backend.name}: {exc.message}"
    return None  # nothing encrypted off-site yet: nothing to prove
