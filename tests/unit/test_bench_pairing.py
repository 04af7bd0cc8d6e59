"""The bench's pairing: sides alternate, and no trial starts with dirty pages it did not make."""

from __future__ import annotations

import pytest

from bench import measure

pytestmark = pytest.mark.unit


def test_every_trial_starts_after_a_writeback(monkeypatch):
    said: list[str] = []
    monkeypatch.setattr(measure.os, "sync", lambda: said.append("sync"))

    def trial(name: str):
        def run() -> float:
            said.append(name)
            return 1.0

        return run

    ours, base = measure.paired(
        2, trial("ours"), trial("base"), before=lambda: said.append("new log")
    )
    assert (ours, base) == ([1.0, 1.0], [1.0, 1.0])
    # The new log `before` writes on a box is on disk before either side runs.
    assert said == [
        "new log", "sync", "base", "sync", "ours", "sync",
        "new log", "sync", "ours", "sync", "base", "sync",
    ]  # fmt: skip
