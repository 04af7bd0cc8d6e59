"""Watch what our S3 back end sends: a botocore event handler on every S3Backend opened
from here on (registered after open's own HeadBucket)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import pytest

from fabfile.core import offsite_s3


def on_s3_event(monkeypatch: pytest.MonkeyPatch, event: str, handler: Callable[..., None]) -> None:
    real_open = offsite_s3.S3Backend.open.__wrapped__

    @contextlib.contextmanager
    def hooked(settings):
        gen = real_open(offsite_s3.S3Backend, settings)
        backend = next(gen)
        backend.client.meta.events.register(event, handler)
        try:
            yield backend
        finally:
            gen.close()

    monkeypatch.setattr(offsite_s3.S3Backend, "open", staticmethod(hooked))
