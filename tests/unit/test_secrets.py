import pytest

from fabfile.core import secrets

pytestmark = pytest.mark.unit

ENV = b"""\xef\xbb\xbfREDIS_URL=redis://:hunter2-canary@127.0.0.1:6379/0
export WORKER_CONCURRENCY=4
API_SECRET_KEY="s3cr3t=with=equals"
MULTI="line one
line two canary"\r
"""


def test_parse_env_returns_names_only_and_flags_missing_keys():
    summary = secrets.parse_env(ENV, required=("REDIS_URL", "WORKER_CONCURRENCY", "SENTRY_DSN"))
    assert summary.keys == ("REDIS_URL", "WORKER_CONCURRENCY", "API_SECRET_KEY", "MULTI")
    assert summary.missing == ("SENTRY_DSN",)


def test_parsed_values_are_masked_everywhere_after_parsing():
    secrets.parse_env(ENV)
    text = "url redis://:hunter2-canary@127.0.0.1:6379/0 key s3cr3t=with=equals and line two canary"
    masked = secrets.mask(text)
    assert "hunter2" not in masked and "s3cr3t" not in masked and "line two canary" not in masked
    assert masked.count(secrets.MASK) == 3


def test_short_values_are_not_treated_as_secrets():
    secrets.parse_env(b"WORKER_CONCURRENCY=4\nDEBUG=no\n")
    assert secrets.mask("4 workers, no debug") == "4 workers, no debug"


def test_base64_lines_of_an_unquoted_multi_line_value_are_never_key_names():
    env = (
        b"REDIS_URL=redis://127.0.0.1/0\nCERT=MIIBfragment\n"
        b"dGhpcyBpcyBzZWNyZXQ==\nQUJDRA+/xyzzy\nWORKER_CONCURRENCY=2\nEMPTY=\n"
    )
    summary = secrets.parse_env(env)
    assert summary.keys == ("REDIS_URL", "CERT", "WORKER_CONCURRENCY", "EMPTY")
    for piece in ("dGhpcyBpcyBzZWNyZXQ", "QUJDRA+/xyzzy"):
        assert secrets.mask(f"line {piece} here") == f"line {secrets.MASK} here"


UNIT = b"""[Service]
Environment=DB_PASSWORD=unit-canary-1
Environment="API_TOKEN=unit-canary-2" "GREETING=hello there"
Environment=LOG_LEVEL=info \\
  EXTRA_SECRET=unit-canary-3
Environment="BROKEN=unit-canary-4
ExecStart=/usr/bin/true
"""


def test_unit_environment_values_are_registered_in_every_form():
    found = secrets.unit_env_values(UNIT)
    for n in range(1, 5):
        assert f"unit-canary-{n}" in found
    assert "info" not in found  # short values are not secrets
    for line in UNIT.decode().splitlines():
        assert "unit-canary" not in secrets.mask(line), line
    assert secrets.unit_env_values(b"[Service]\nExecStart=/bin/x A=verysecretish\n") == []
