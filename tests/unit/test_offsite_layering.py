"""One layer does the remote I/O: paramiko and boto3 are imported only by the transport
layer (transport.py, the off-site back ends offsite_sftp.py and offsite_s3.py, and
hostkeys.py, its host-key policies), and only transport.py and the back ends open a
connection, an SSH channel, an SFTP session or an S3 client."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2] / "fabfile"
OPENERS = {"core/transport.py", "core/offsite_sftp.py", "core/offsite_s3.py"}
TRANSPORT_LAYER = OPENERS | {"core/hostkeys.py"}  # policies and known_hosts: no connection
REMOTE_LIBRARIES = {"paramiko", "boto3", "botocore"}
# Calls that open a link: module functions (by dotted name) and methods (by name).
OPENING_CALLS = {
    "paramiko.Transport",
    "paramiko.SSHClient",
    "socket.create_connection",
    "boto3.client",
    "boto3.Session",
    "boto3.session.Session",
    "botocore.session.Session",
    "Connection",
}
OPENING_METHODS = {
    "client",
    "create_client",
    "create_connection",
    "get_transport",
    "open_channel",
    "open_session",
    "open_sftp",
    "sftp",
    "start_client",
}


def imported(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module.split(".")[0])
    return found


def test_only_the_transport_layer_imports_paramiko_or_boto3():
    offenders = {
        str(path.relative_to(ROOT)): sorted(imported(path) & REMOTE_LIBRARIES)
        for path in ROOT.rglob("*.py")
        if str(path.relative_to(ROOT)) not in TRANSPORT_LAYER and imported(path) & REMOTE_LIBRARIES
    }
    assert offenders == {}


def _dotted(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return "?"


def opened(source: str) -> set[str]:
    """The calls in `source` that open a connection, a channel, an SFTP session or a client."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call):
            name = _dotted(node.func)
            method = node.func.attr if isinstance(node.func, ast.Attribute) else None
            if name in OPENING_CALLS or method in OPENING_METHODS:
                found.add(name)
    return found


def test_only_the_transport_layer_opens_connections_channels_or_clients():
    offenders = {
        str(path.relative_to(ROOT)): sorted(opened(path.read_text()))
        for path in ROOT.rglob("*.py")
        if str(path.relative_to(ROOT)) not in OPENERS and opened(path.read_text())
    }
    assert offenders == {}


def test_the_check_catches_the_old_host_key_scan():
    """What hostkeys.py did before the scan moved into transport.py."""
    old_scan = (
        "sock = socket.create_connection((address, port), timeout=timeout)\n"
        "transport = paramiko.Transport(sock)\ntransport.start_client(timeout=timeout)\n"
        "sftp = connection.sftp()\nclient = session.client('s3')\n"
    )
    assert opened(old_scan) == {
        "socket.create_connection", "paramiko.Transport", "transport.start_client",
        "connection.sftp", "session.client",
    }  # fmt: skip
