"""Printing text that came from a server: masked, and no control character reaches the terminal."""

from __future__ import annotations

import json

import pytest

from fabfile.core import output, secrets

pytestmark = pytest.mark.unit

HOSTILE = "ERROR boom \x1b]0;pwned\x07 \x1b[2J \x9b31m\x7f"


def test_clean_escapes_c0_c1_and_del_but_keeps_newlines_and_tabs():
    said = output.clean(HOSTILE + "\n\tnext")
    assert not any(ch in said for ch in "\x1b\x07\x9b\x7f")
    assert "\\x1b]0;pwned\\x07" in said and "\\x9b" in said and "\n\tnext" in said


def test_every_printer_escapes_server_text(capsys):
    output.info(HOSTILE)
    output.warn(HOSTILE)
    output.error(HOSTILE)
    output.table(HOSTILE, ["a"], [[HOSTILE]])
    output.info_unmasked(HOSTILE)
    output.emit_json({"line": HOSTILE})
    said = capsys.readouterr()
    assert "\x1b" not in said.out + said.err and "\x07" not in said.out + said.err
    assert json.loads(said.out[said.out.index("{") :])["line"] == HOSTILE  # escaped, not lost


def test_info_unmasked_shows_values_info_masks(capsys):
    secrets.register(["unmasked-canary"])
    output.info("v=unmasked-canary")
    output.info_unmasked("v=unmasked-canary")
    lines = capsys.readouterr().out.splitlines()
    assert lines == [f"v={secrets.MASK}", "v=unmasked-canary"]
